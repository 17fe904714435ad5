import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Resolution } from '../../src/agents/registry.js';
import { PolicySchema } from '../../src/config/policy.js';
import { RoleSchema, type RoleConfig } from '../../src/config/schema.js';
import type { Task } from '../../src/db/schema.js';
import type { Identity } from '../../src/identity/types.js';
import { createPolicy } from '../../src/policy/decide.js';
import { conflictOf } from '../support/conflict-oracle.js';
import { createYamlPolicy } from '../support/yaml-policy-oracle.js';

// Small alphabets, so that rules, labels and identities often meet.
const subjects = ['agent-1', 'agent-2', 'ci-bot', 'ci-deploy'];
const roleNames = ['reports', 'deploy', 'billing'];
const labelKeys = ['environment', 'team'];
const labelValues = ['production', 'staging', 'a'];
const labels = fc.dictionary(fc.constantFrom(...labelKeys), fc.constantFrom(...labelValues), { maxKeys: 2 });
const ruleLabel = fc.dictionary(fc.constantFrom(...labelKeys), fc.constantFrom(...labelValues), { minKeys: 1, maxKeys: 1 });

const rule = fc.oneof(
  fc.record({ issuer: fc.constant('dev'), subject_pattern: fc.constant('.*') }),
  fc.record({ issuer: fc.constantFrom('dev', 'gh'), subject: fc.constantFrom(...subjects) }),
  fc.record({ issuer: fc.constantFrom('dev', 'gh'), subject_pattern: fc.constantFrom('ci-.*', 'agent-[12]', 'agent|ci') }),
  fc.record({ issuer: fc.constantFrom('dev', 'gh'), claims: fc.dictionary(fc.constantFrom('repo', 'tier'), fc.constantFrom('x', 'y'), { minKeys: 1, maxKeys: 2 }) }),
  fc.record({ issuer: fc.constantFrom('dev', 'gh'), claim_patterns: fc.constant({ repo: 'x|y' }), audience: fc.constantFrom('a', 'b') }),
);

const config = fc.record({
  roles: fc.uniqueArray(
    fc.record({ name: fc.constantFrom(...roleNames), requires_approval: fc.constantFrom(false, false, true), allow: fc.oneof(fc.array(rule, { minLength: 1, maxLength: 3 }), fc.array(rule, { maxLength: 2 }).map((a) => [{ issuer: 'dev', subject_pattern: '.*' }, ...a])), ttl: fc.constantFrom(60, 900), max_ttl: fc.constantFrom(900, 3600) }),
    { selector: (r) => r.name, minLength: 1, maxLength: 3 },
  ),
  rules: fc.uniqueArray(
    fc.record({
      name: fc.constantFrom('prod', 'team', 'restricted'),
      labels: fc.oneof(ruleLabel, fc.constant({})),
      agent_labels: fc.oneof(fc.constant({}), fc.constant({}), ruleLabel),
      roles: fc.option(fc.subarray(roleNames, { minLength: 1 }), { nil: undefined }),
    }),
    { selector: (r) => r.name, maxLength: 3 },
  ).map((rs) => rs.filter((r) => Object.keys(r.labels).length + Object.keys(r.agent_labels).length > 0)),
  conflicts: fc.uniqueArray(
    fc.record({ name: fc.constantFrom('exfil', 'toxic', 'trio'), roles: fc.uniqueArray(fc.constantFrom(...roleNames, 'unknown'), { minLength: 2, maxLength: 3 }), scope: fc.constantFrom('task' as const, 'agent' as const) }),
    { selector: (c) => c.name, maxLength: 2 },
  ),
});

/** Roles held, each with a lease id: in the task, and by the agent in its other tasks. */
const heldRoles = fc.record({ task: fc.subarray([...roleNames, 'unknown']), other: fc.subarray([...roleNames, 'unknown']) });

const identity = fc.record({
  issuer: fc.constantFrom('dev', 'dev', 'gh'),
  subject: fc.constantFrom(...subjects),
  claims: fc.record({ repo: fc.constantFrom('x', 'y', 'z'), tier: fc.constantFrom('x', 1, true), aud: fc.constantFrom('a', 'b', ['a', 'c']) }, { requiredKeys: [] }),
});

const request = fc.record({
  identity,
  roleName: fc.constantFrom(...roleNames, 'unknown'),
  taskRoles: fc.oneof(fc.constant([...roleNames, 'unknown']), fc.subarray([...roleNames, 'unknown'])),
  taskLabels: labels,
  boundToOther: fc.constantFrom(false, false, false, true),
  status: fc.constantFrom('open', 'open', 'open', 'completed'),
  deadlineIn: fc.constantFrom(-10, 30, 600, 7200, 7200),
  requestedTtl: fc.option(fc.constantFrom(1, 120, 5000), { nil: undefined }),
  agent: fc.option(fc.record({ labels, roles: fc.oneof(fc.constant(roleNames), fc.subarray(roleNames)) }), { nil: undefined }),
  held: heldRoles,
});

describe('the YAML rules compiled to Cedar', () => {
  it('decide every request as the YAML did: allow or the same refusal, the same approval and TTL', () => {
    const seen = new Map<string, number>();
    const KINDS = ['allow', 'approval role', 'approval rule', 'role_denied', 'role_conflict', 'task_not_found', 'task_not_open', 'task_expired'];
    const missing = () => KINDS.filter((kind) => !seen.has(kind));
    // More rounds of fresh random cases (rarely needed) until every outcome has been met: the comparison holds in every one.
    for (let round = 0; round === 0 || (round < 5 && missing().length > 0); round++) {
      fc.assert(
        fc.property(config, fc.array(request, { minLength: 1, maxLength: 15 }), (cfg, requests) => {
          const roles: RoleConfig[] = cfg.roles.map((r) => RoleSchema.parse({ ...r, backend: 'jwt' }));
          const policy = PolicySchema.parse({ approvals: { rules: cfg.rules }, conflicts: cfg.conflicts });
          const cedar = createPolicy(roles, policy, { requireRegistration: false });
          const yaml = createYamlPolicy(roles, policy, { requireRegistration: false });
          const now = new Date('2026-12-06T10:00:00Z');
          for (const r of requests) {
            const id: Identity = { issuer: r.identity.issuer, subject: r.identity.subject, claims: r.identity.claims, tokenSha256: 'h', expiresAt: new Date(now.getTime() + 600_000) };
            const task = {
              id: 't1',
              agentSubject: r.boundToOther ? 'someone-else' : id.subject,
              agentIssuer: null,
              roles: r.taskRoles,
              labels: r.taskLabels,
              status: r.status,
              createdBy: 'orch',
              createdAt: new Date(now.getTime() - 60_000),
              deadline: new Date(now.getTime() + r.deadlineIn * 1000),
            } as unknown as Task;
            const agent: Resolution | undefined = r.agent
              ? { generation: 1, kind: 'agent', agent: { name: 'a', labels: r.agent.labels, roles: r.agent.roles, owner: { name: 'o', contact: 'c', principals: [] }, purpose: 'p', match: { issuer: id.issuer, subject: id.subject }, source: 'config', createdBy: null, createdAt: null } as never }
              : undefined;
            const leases = (roles: string[], from: string) => roles.map((role, i) => [role, `${from}-${i}-${role}`] as const);
            const held = { task: new Map(leases(r.held.task, 'a')), agent: new Map([...leases(r.held.other, 'b'), ...leases(r.held.task, 'a')]) };
            const input = { identity: id, task, roleName: r.roleName, requestedTtl: r.requestedTtl, now, agent, held };
            // Before: the decision, then (when it allowed, approval or not) the conflict check on what is held.
            const decided = yaml.decide(input);
            const conflict = decided.allow ? conflictOf(policy, r.roleName, held) : undefined;
            const want = conflict ? { allow: false as const, code: 'role_conflict' as const, conflict: conflict.conflict, with: conflict.conflictsWith } : decided;
            const got = cedar.decide(input);
            const shape = (d: typeof want | typeof got) =>
              d.allow
                ? { allow: true, ttl: d.ttlSeconds, approval: d.approvalRequiredBy ?? null }
                : { allow: false, code: d.code, ...('conflict' in d && d.conflict ? { conflict: typeof d.conflict === 'string' ? d.conflict : d.conflict.name, with: 'with' in d ? d.with : d.conflict.with } : {}) };
            expect(shape(got)).toEqual(shape(want));
            const kind = want.allow ? (want.approvalRequiredBy ? `approval ${want.approvalRequiredBy.split(':')[0]}` : 'allow') : want.code;
            seen.set(kind, (seen.get(kind) ?? 0) + 1);
          }
        }),
        { numRuns: 300 },
      );
    }
    // The cases meet every outcome, or the comparison proves little.
    expect(missing()).toEqual([]);
  });
});
