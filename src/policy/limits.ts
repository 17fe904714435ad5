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
export const NEVER_RELEASED = ['task_closed', 'quota_exceeded', 'task_lease_limit', 'role_conflict', 'registry_changed', 'policy_refused'] as const;
export type NeverReleased = (typeof NEVER_RELEASED)[number];

export type LimitRefusal = { code: 'quota_exceeded'; reason: string; retryAfterSeconds: number } | { code: 'task_lease_limit'; reason: string };

/** What a refusal tells the caller and the audit trail besides its code and reason. */
export function refusalExtra(refusal: LimitRefusal): Record<string, unknown> {
  if (refusal.code === 'quota_exceeded') return { retry_after: refusal.retryAfterSeconds };
  return {};
}

/**
 * The roles held now, each with its oldest held lease: in the task, and by the agent across all its tasks.
 * Cedar policies see the names (context.task_roles, context.agent_roles); a conflict names the lease.
 */
export interface Held {
  task: Map<string, string>;
  agent: Map<string, string>;
}

/**
 * "Held" is what may still work: active leases, leases whose revocation is not yet confirmed, and
 * credentials the backend cannot cut off early (a jwt whose relying parties only check its signature),
 * until their backend expiry. Releasing must not free a slot early (test/policy/held.test.ts).
 */
function heldAt(now: Date) {
  return or(
    and(eq(leases.status, 'active'), gt(leases.expiresAt, now)),
    and(
      gt(leases.backendExpiresAt, now),
      or(inArray(leases.status, ['revoking', 'revoke_failed']), eq(leases.revocable, false)),
      // ...except credentials refused at commit: minted, but never handed to anyone.
      or(isNull(leases.reason), notInArray(leases.reason, [...NEVER_RELEASED])),
    ),
  );
}

/** Whose held roles to read: an agent (its issuer and subject) and the task it asks in. */
export interface HeldAsk {
  identity: Pick<Identity, 'issuer' | 'subject'>;
  taskId: string;
}

/**
 * The roles held in each ask's task and by its agent across its tasks, for every ask in one statement
 * (whose text never varies: the asks travel as one JSON parameter), as held at `now`.
 */
export async function heldRoles(db: Db, asks: HeldAsk[], now: Date): Promise<Held[]> {
  const agents = JSON.stringify(asks.map((a) => [a.identity.issuer, a.identity.subject]));
  const taskIds = JSON.stringify(asks.map((a) => a.taskId));
  const rows = await db
    .select({ role: leases.role, taskId: leases.taskId, issuer: leases.issuer, subject: leases.subject, id: sql<string>`min(${leases.id}::text)` })
    .from(leases)
    .where(
      and(
        heldAt(now),
        // `= any(array(...))`: each side an index scan (leases_task_idx, leases_subject_idx); the issuer is matched below.
        or(
          sql`${leases.taskId} = any(array(select jsonb_array_elements_text(${taskIds}::jsonb)))`,
          sql`${leases.subject} = any(array(select a->>1 from jsonb_array_elements(${agents}::jsonb) a))`,
        ),
      ),
    )
    .groupBy(leases.role, leases.taskId, leases.issuer, leases.subject);
  return asks.map((ask) => {
    const held: Held = { task: new Map(), agent: new Map() };
    for (const r of rows) {
      if (r.taskId === ask.taskId) keepOldest(held.task, r.role, String(r.id));
      if (r.issuer === ask.identity.issuer && r.subject === ask.identity.subject) keepOldest(held.agent, r.role, String(r.id));
    }
    return held;
  });
}

/** Records `role` as held by lease `id`, unless an older lease already holds it. */
export function keepOldest(held: Map<string, string>, role: string, id: string): void {
  const before = held.get(role);
  if (before === undefined || id < before) held.set(role, id);
}

export interface LimitRequest {
  identity: Identity;
  task: Pick<Task, 'id' | 'maxLeases'>;
  role: RoleConfig;
  now: Date;
}

/**
 * Counts what is already held: quotas on active leases and the task's lease
 * budget (conflicting roles are policy: policy/cedar/compile.ts). Read-only;
 * run before minting (cheap refusal) and again inside the commit under
 * advisory locks (the answer that counts, so concurrent requests cannot all
 * slip through).
 */
export function createLimits(policy: PolicyConfig) {
  /** True when the request can be affected by what others hold, so its commit must lock and re-check. */
  function constrained(role: RoleConfig, task: Pick<Task, 'maxLeases'>): boolean {
    const q = policy.quotas;
    return !!(q.max_active_per_agent || q.max_active_per_task || role.max_active || task.maxLeases !== null);
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
    const active = heldAt(now);
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
    return (
      (await quota(byAgent, policy.quotas.max_active_per_agent, 'the agent')) ??
      (await quota(eq(leases.taskId, task.id), policy.quotas.max_active_per_task, 'the task')) ??
      (await quota(eq(leases.role, role.name), role.max_active, `role ${role.name}`))
    );
  }

  return { check, constrained, lockKeys };
}
export type Limits = ReturnType<typeof createLimits>;
