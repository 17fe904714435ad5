import { and, asc, eq, inArray, isNull, lte, or, sql, type SQLWrapper } from 'drizzle-orm';
import type { ApprovalOutbox } from '../approvals/service.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { outbox, type Approval, type OutboxRow } from '../db/schema.js';
import { newId } from '../ids.js';

export const APPROVAL_REQUESTED = 'approval.requested';

/** What a notification says of an approval request: facts a person needs to decide, never its token's hash. */
export interface ApprovalFacts {
  id: string;
  task: string;
  role: string;
  requester: { issuer: string; subject: string };
  required_by: string;
  requested_ttl_seconds: number | null;
  expires_at: string;
}

export function approvalFacts(a: Approval): ApprovalFacts {
  return {
    id: a.id,
    task: a.taskId,
    role: a.role,
    requester: { issuer: a.issuer, subject: a.subject },
    required_by: a.requiredBy,
    requested_ttl_seconds: a.requestedTtl,
    expires_at: a.expiresAt.toISOString(),
  };
}

/**
 * The approvals service's outbox: one row per configured destination, in the
 * request's transaction (DESIGN.md promise 9), due at once; `appended` nudges
 * this replica's delivery worker once the rows have committed.
 */
export function createApprovalOutbox(deps: { clock: Clock; destinations: () => string[]; onAppended: () => void }): ApprovalOutbox {
  return {
    async append(tx, approval) {
      const destinations = deps.destinations();
      if (destinations.length === 0) return;
      const now = deps.clock.now();
      await tx.insert(outbox).values(
        destinations.map((destination) => ({
          id: newId(deps.clock),
          kind: APPROVAL_REQUESTED,
          destination,
          payload: { approval: approvalFacts(approval) } as Record<string, unknown>,
          status: 'pending' as const,
          createdAt: now,
          nextAttemptAt: now,
        })),
      );
    },
    appended: deps.onAppended,
  };
}

const inAnyOf = (ids: SQLWrapper) => sql`${outbox.id} = any(array(${ids}))`;

/**
 * Claims up to `limit` due rows for `claimer` until `claimUntil`. SKIP LOCKED
 * lets replicas claim side by side; the claim is a committed stamp (no
 * transaction is held across a POST), so rows a dead replica held become due
 * again when the stamp runs out: delivery is at least once.
 */
export async function claimDue(db: Db, claimer: string, now: Date, claimUntil: Date, limit: number): Promise<OutboxRow[]> {
  const due = db
    .select({ id: outbox.id })
    .from(outbox)
    .where(and(inArray(outbox.status, ['pending', 'failed']), lte(outbox.nextAttemptAt, now), or(isNull(outbox.claimUntil), lte(outbox.claimUntil, now))))
    .orderBy(asc(outbox.nextAttemptAt))
    .limit(limit)
    .for('update', { skipLocked: true });
  return db.update(outbox).set({ claimedBy: claimer, claimUntil }).where(inAnyOf(due)).returning();
}

const heldBy = (claimer: string, id: string) => and(eq(outbox.id, id), eq(outbox.claimedBy, claimer));

/** Marks a claimed row delivered; false when another replica took it over meanwhile. */
export async function markDelivered(db: Db, claimer: string, id: string, now: Date): Promise<boolean> {
  const done = await db
    .update(outbox)
    .set({ status: 'delivered', deliveredAt: now, attempts: sql`${outbox.attempts} + 1`, lastError: null, claimedBy: null, claimUntil: null })
    .where(heldBy(claimer, id))
    .returning({ id: outbox.id });
  return done.length > 0;
}

/**
 * Records a failed attempt: retried at `retryAt`, or, from the `maxAttempts`th
 * failure on, marked failed and retried at `parkUntil` (visible, still tried).
 * The status is decided in the UPDATE on the row's current attempts.
 */
export async function markFailed(
  db: Db,
  claimer: string,
  id: string,
  failure: { error: string; maxAttempts: number; retryAt: Date; parkUntil: Date },
): Promise<OutboxRow | undefined> {
  const parked = sql`${outbox.attempts} + 1 >= ${failure.maxAttempts}`;
  const [row] = await db
    .update(outbox)
    .set({
      attempts: sql`${outbox.attempts} + 1`,
      status: sql`case when ${parked} then 'failed' else 'pending' end`,
      nextAttemptAt: sql`case when ${parked} then ${failure.parkUntil.toISOString()}::timestamptz else ${failure.retryAt.toISOString()}::timestamptz end`,
      lastError: failure.error.slice(0, 500),
      claimedBy: null,
      claimUntil: null,
    })
    .where(heldBy(claimer, id))
    .returning();
  return row;
}
