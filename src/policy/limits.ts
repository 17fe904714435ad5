import { and, count, eq, gt, inArray, isNull, min, notInArray, or, sql } from 'drizzle-orm';
import type { PolicyConfig } from '../config/policy.js';
import type { RoleConfig } from '../config/schema.js';
import type { Db } from '../db/client.js';
import { leases, type Task } from '../db/schema.js';
import { actorOf, type Identity } from '../identity/types.js';

/**
 * Lease reasons of credentials refused at commit (see leases/writer.ts): they never reached a caller.
 * The writer's `leaseReason` is typed against this list, so a new commit refusal must be added here.
 * No lease a caller did receive may ever carry one of these reasons (a suspension revokes with
 * `agent_suspended`; a credential the registry refused at commit is `registry_changed`), or it would
 * stop counting as held while it may still work.
 */
export const NEVER_RELEASED = ['task_closed', 'quota_exceeded', 'task_lease_limit', 'role_conflict', 'registry_changed'] as const;
export type NeverReleased = (typeof NEVER_RELEASED)[number];

export type LimitRefusal =
  | { code: 'quota_exceeded'; reason: string; retryAfterSeconds: number }
  | { code: 'task_lease_limit'; reason: string }
  | { code: 'role_conflict'; reason: string; conflictsWith: string; conflict: string };

/** What a refusal tells the caller and the audit trail besides its code and reason. */
export function refusalExtra(refusal: LimitRefusal): Record<string, unknown> {
  if (refusal.code === 'quota_exceeded') return { retry_after: refusal.retryAfterSeconds };
  if (refusal.code === 'role_conflict') return { conflicts_with: refusal.conflictsWith, conflict: refusal.conflict };
  return {};
}

export interface LimitRequest {
  identity: Identity;
  task: Pick<Task, 'id' | 'maxLeases'>;
  role: RoleConfig;
  now: Date;
}

/**
 * Checks what depends on what is already held: quotas on active leases, the
 * task's lease budget, and conflicting roles. Read-only; run before minting
 * (cheap refusal) and again inside the commit under advisory locks (the
 * answer that counts, so concurrent requests cannot all slip through).
 */
export function createLimits(policy: PolicyConfig) {
  const conflictsOf = (role: string) => policy.conflicts.filter((c) => c.roles.includes(role));

  /** True when the request can be affected by what others hold, so its commit must lock and re-check. */
  function constrained(role: RoleConfig, task: Pick<Task, 'maxLeases'>): boolean {
    const q = policy.quotas;
    return !!(q.max_active_per_agent || q.max_active_per_task || role.max_active || task.maxLeases !== null || conflictsOf(role.name).length);
  }

  /** Advisory-lock keys that serialize requests which could together break a limit (sorted by the caller). */
  function lockKeys({ identity, task, role }: LimitRequest): string[] {
    const agent = `tl:agent:${actorOf(identity)}`;
    const keys = [`tl:task:${task.id}`, agent];
    if (role.max_active) keys.push(`tl:role:${role.name}`);
    return keys;
  }

  async function check(db: Db, { identity, task, role, now }: LimitRequest): Promise<LimitRefusal | undefined> {
    if (!constrained(role, task)) return undefined;
    // "Held" is what may still work: active leases, leases whose revocation is not yet confirmed, and
    // credentials the backend cannot cut off early (a jwt whose relying parties only check its signature),
    // until their backend expiry. Releasing must not free a slot early (test/policy/held.test.ts).
    const active = or(
      and(eq(leases.status, 'active'), gt(leases.expiresAt, now)),
      and(
        gt(leases.backendExpiresAt, now),
        or(inArray(leases.status, ['revoking', 'revoke_failed']), eq(leases.revocable, false)),
        // ...except credentials refused at commit: minted, but never handed to anyone.
        or(isNull(leases.reason), notInArray(leases.reason, [...NEVER_RELEASED])),
      ),
    );
    const byAgent = and(eq(leases.issuer, identity.issuer), eq(leases.subject, identity.subject));
    const quota = async (where: ReturnType<typeof and>, limit: number | undefined | null, what: string) => {
      if (!limit) return undefined;
      const [row] = await db.select({ n: count(), soonest: min(leases.expiresAt) }).from(leases).where(and(active, where));
      if ((row?.n ?? 0) < limit) return undefined;
      const soonest = row?.soonest ? new Date(row.soonest) : now;
      const retryAfterSeconds = Math.max(1, Math.ceil((soonest.getTime() - now.getTime()) / 1000));
      return { code: 'quota_exceeded' as const, reason: `${what} holds ${limit} active leases`, retryAfterSeconds };
    };
    if (task.maxLeases !== null) {
      const [row] = await db.select({ n: count() }).from(leases).where(eq(leases.taskId, task.id));
      if ((row?.n ?? 0) >= task.maxLeases) return { code: 'task_lease_limit', reason: `task may be issued ${task.maxLeases} credentials` };
    }
    const over =
      (await quota(byAgent, policy.quotas.max_active_per_agent, 'the agent')) ??
      (await quota(eq(leases.taskId, task.id), policy.quotas.max_active_per_task, 'the task')) ??
      (await quota(eq(leases.role, role.name), role.max_active, `role ${role.name}`));
    if (over) return over;
    for (const conflict of conflictsOf(role.name)) {
      const others = conflict.roles.filter((r) => r !== role.name);
      const scope = conflict.scope === 'task' ? eq(leases.taskId, task.id) : byAgent;
      const held = await db
        .selectDistinctOn([leases.role], { role: leases.role, id: leases.id })
        .from(leases)
        .where(and(active, scope, inArray(leases.role, others)))
        .orderBy(leases.role, sql`${leases.id}`);
      if (held.length === others.length) {
        return {
          code: 'role_conflict',
          reason: `holding ${others.join(', ')} and ${role.name} together is not allowed (${conflict.name})`,
          conflictsWith: held[0]!.id,
          conflict: conflict.name,
        };
      }
    }
    return undefined;
  }

  return { check, constrained, lockKeys };
}
export type Limits = ReturnType<typeof createLimits>;
