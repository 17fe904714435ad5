import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Resolution } from '../agents/registry.js';
import type { Task } from '../db/schema.js';
import type { Policy } from '../policy/decide.js';
import type { CommandResult } from './command.js';
import { CliError } from './command.js';

const Labels = z.record(z.string(), z.string());

/** One case of a `tasklease policy test` file: who asks for what, on which task, when; and what must be decided. */
const CaseSchema = z.strictObject({
  name: z.string().min(1),
  identity: z.strictObject({ issuer: z.string().min(1), subject: z.string().min(1), claims: z.record(z.string(), z.unknown()).default({}) }),
  /** The registered agent the identity is (its labels, its ceiling); absent, an unregistered identity. */
  agent: z.strictObject({ name: z.string().default('agent'), labels: Labels.default({}), roles: z.array(z.string()).optional() }).optional(),
  role: z.string().min(1),
  /** The task: its labels, and the roles it lists (default: the role asked for). */
  task: z.strictObject({ labels: Labels.default({}), roles: z.array(z.string()).optional() }).default({ labels: {} }),
  /** The roles held now: in this task, and in the agent's other tasks (it holds this task's too). */
  holds: z.strictObject({ task: z.array(z.string()).default([]), other_tasks: z.array(z.string()).default([]) }).default({ task: [], other_tasks: [] }),
  ttl_seconds: z.number().int().positive().optional(),
  /** A delegated request: the person it is for, `issuer/subject` (context.on_behalf_of). */
  on_behalf_of: z.string().min(1).optional(),
  at: z.iso.datetime({ offset: true }).optional(),
  expect: z.union([z.enum(['allow', 'deny']), z.string().regex(/^approval(:.+)?$/)]),
  /** The decision must name exactly these policies, in any order. */
  policies: z.array(z.string()).optional(),
});
const FileSchema = z.strictObject({ cases: z.array(CaseSchema).min(1) });

/**
 * `tasklease policy test FILE`: each case decided by `policy` (the config's),
 * as the broker would decide it, with no broker and no database. Exits 1
 * when a decision differs from the one expected, 2 when the file is invalid.
 */
export function runPolicyTest(policy: Policy, file: string): CommandResult {
  let parsed;
  try {
    parsed = FileSchema.safeParse(parseYaml(readFileSync(file, 'utf8')));
  } catch (err) {
    throw new CliError(`${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!parsed.success) throw new CliError(`${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const lines: string[] = [];
  let failed = 0;
  for (const c of parsed.data.cases) {
    const now = new Date(c.at ?? Date.now());
    const task = {
      id: 'policy-test',
      agentSubject: c.identity.subject,
      agentIssuer: c.identity.issuer,
      roles: c.task.roles ?? [c.role],
      labels: c.task.labels,
      status: 'open',
      createdBy: 'policy-test',
      createdAt: now,
      deadline: new Date(now.getTime() + 86_400_000),
    } as unknown as Task;
    const agent: Resolution | undefined = c.agent
      ? { generation: 0, kind: 'agent', agent: { name: c.agent.name, labels: c.agent.labels, roles: c.agent.roles ?? policy.roleNames(), owner: { name: 'policy-test', contact: '', principals: [] } } as never }
      : undefined;
    const identity = { ...c.identity, tokenSha256: '', expiresAt: now };
    const leaseOf = (roles: string[]) => new Map(roles.map((r) => [r, `held:${r}`]));
    const held = { task: leaseOf(c.holds.task), agent: leaseOf([...c.holds.task, ...c.holds.other_tasks]) };
    const d = policy.decide({ identity, task, roleName: c.role, requestedTtl: c.ttl_seconds, now, agent, held, ...(c.on_behalf_of ? { onBehalfOf: c.on_behalf_of } : {}) });
    const got = d.allow ? (d.approvalRequiredBy ? `approval:${d.approvalRequiredBy}` : 'allow') : 'deny';
    const policies = d.policies ?? [];
    const ok =
      (c.expect === 'approval' ? got.startsWith('approval:') : got === c.expect) &&
      (!c.policies || [...c.policies].sort().join('\n') === [...policies].sort().join('\n'));
    if (!ok) failed++;
    const why = d.allow ? `by ${policies.join(', ')}` : `${d.code}: ${d.reason}`;
    lines.push(`${ok ? 'ok  ' : 'FAIL'} ${c.name}: ${got} (${why})${ok ? '' : `; expected ${c.expect}${c.policies ? ` by ${c.policies.join(', ')}` : ''}`}`);
  }
  lines.push(`${parsed.data.cases.length - failed} of ${parsed.data.cases.length} cases as expected; policy set ${policy.cedar.hash.slice(0, 16)}`);
  return { code: failed > 0 ? 1 : 0, stdout: lines.join('\n') };
}
