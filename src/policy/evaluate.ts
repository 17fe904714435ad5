import { eq } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { tasks } from '../db/schema.js';
import type { Resolution } from '../agents/registry.js';
import type { Identity } from '../identity/types.js';
import type { Policy } from './decide.js';
import { heldRoles, type Limits } from './limits.js';

export interface Explanation {
  decision: 'allow' | 'deny' | 'approval_required';
  code?: string;
  reason: string;
  ttl_seconds?: number;
  required_by?: string;
  conflicts_with?: string;
  /** The registered agent the identity is. */
  agent?: string;
  /** The Cedar policies that determined the decision (none on a refusal made before policy: task, registry). */
  policies?: string[];
  policy_set: string;
}

/**
 * The dry run behind POST /v1/policy/evaluate: the same decision and limit
 * checks a credential request gets, for an identity the admin describes,
 * without minting or writing anything. Unlike the agent, the admin sees the
 * real reason (which rule, which limit, which conflicting lease).
 */
export async function explain(
  deps: { db: Db; policy: Policy; limits: Limits; agents: { resolve(identity: Identity): Promise<Resolution> } },
  input: { identity: Identity; taskId: string; roleName: string; ttlSeconds?: number; now: Date },
): Promise<Explanation> {
  const [task] = await deps.db.select().from(tasks).where(eq(tasks.id, input.taskId));
  const agent = await deps.agents.resolve(input.identity);
  const held = task && deps.policy.heldMatters(input.roleName) ? (await heldRoles(deps.db, [{ identity: input.identity, taskId: task.id }], input.now))[0] : undefined;
  const decision = deps.policy.decide({ identity: input.identity, task, roleName: input.roleName, requestedTtl: input.ttlSeconds, now: input.now, agent, ...(held ? { held } : {}) });
  const who = {
    ...(agent.kind === 'agent' ? { agent: agent.agent.name } : {}),
    ...(decision.policies ? { policies: decision.policies } : {}),
    policy_set: deps.policy.cedar.hash.slice(0, 16),
  };
  if (!decision.allow) return { decision: 'deny', code: decision.code, reason: decision.reason, ...(decision.conflict?.with ? { conflicts_with: decision.conflict.with } : {}), ...who };
  const refusal = await deps.limits.check(deps.db, { identity: input.identity, task: task!, role: decision.role, now: input.now });
  if (refusal) return { decision: 'deny', code: refusal.code, reason: refusal.reason, ...who };
  if (decision.approvalRequiredBy) {
    return { decision: 'approval_required', reason: 'an approver must decide first', required_by: decision.approvalRequiredBy, ttl_seconds: decision.ttlSeconds, ...who };
  }
  return { decision: 'allow', reason: 'all checks passed', ttl_seconds: decision.ttlSeconds, ...who };
}
