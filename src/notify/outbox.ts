import { and, asc, desc, eq, gt, inArray, isNull, lt, lte, or, sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import type { ApprovalOutbox } from '../approvals/service.js';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { outbox, OUTBOX_KINDS, type Approval, type OutboxRow } from '../db/schema.js';
import { firstIdAt, newId } from '../ids.js';

export const APPROVAL_REQUESTED = OUTBOX_KINDS.approvalRequested;

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
 * Claims up to `limit` due rows of one kind, for the destinations given, for
 * `claimer` until `claimUntil`. SKIP LOCKED
 * lets replicas claim side by side; the claim is a committed stamp (no
 * transaction is held across a POST), so rows a dead replica held become due
 * again when the stamp runs out: delivery is at least once.
 */
export async function claimDue(
  db: Db,
  claimer: string,
  now: Date,
  claimUntil: Date,
  limit: number,
  scope: { kind: string; destinations: string[] },
): Promise<OutboxRow[]> {
  const due = db
    .select({ id: outbox.id })
    .from(outbox)
    .where(
      and(
        inArray(outbox.status, ['pending', 'failed']),
        lte(outbox.nextAttemptAt, now),
        or(isNull(outbox.claimUntil), lte(outbox.claimUntil, now)),
        eq(outbox.kind, scope.kind),
        inArray(outbox.destination, scope.destinations),
      ),
    )
    .orderBy(asc(outbox.nextAttemptAt))
    .limit(limit)
    .for('update', { skipLocked: true });
  return db.update(outbox).set({ claimedBy: claimer, claimUntil }).where(inAnyOf(due)).returning();
}

const heldBy = (claimer: string, id: string) => and(eq(outbox.id, id), eq(outbox.claimedBy, claimer));

/** Hands claimed rows back untried: due again at once for any replica (their attempts unchanged). */
export async function releaseClaims(db: Db, claimer: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .update(outbox)
    .set({ claimedBy: null, claimUntil: null })
    .where(and(inArray(outbox.id, ids), eq(outbox.claimedBy, claimer)));
}

/** Marks claimed rows delivered; the ids recorded (not those another replica took over meanwhile). */
export async function markDelivered(db: Db, claimer: string, ids: string[], now: Date): Promise<string[]> {
  if (ids.length === 0) return [];
  const done = await db
    .update(outbox)
    .set({ status: 'delivered', deliveredAt: now, attempts: sql`${outbox.attempts} + 1`, lastError: null, claimedBy: null, claimUntil: null })
    .where(and(inArray(outbox.id, ids), eq(outbox.claimedBy, claimer)))
    .returning({ id: outbox.id });
  return done.map((r) => r.id);
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

/**
 * Deletes up to `limit` delivered rows of `kind` written before `before`
 * (ids are UUIDv7, so this walks the primary key's oldest end, no extra
 * index); the number deleted. Undelivered rows are never pruned.
 */
export async function pruneDelivered(db: Db, kind: string, before: Date, limit = 5000): Promise<number> {
  const old = db
    .select({ id: outbox.id })
    .from(outbox)
    .where(and(lt(outbox.id, firstIdAt(before)), eq(outbox.kind, kind), eq(outbox.status, 'delivered')))
    .orderBy(asc(outbox.id))
    .limit(limit);
  const gone = await db.delete(outbox).where(inAnyOf(old)).returning({ id: outbox.id });
  return gone.length;
}

/**
 * One outbox row as the console shows it: the webhook's name and the approval
 * it is about (or the SSF receiver and the lease), never the payload or the claim. `lastError` is what post.ts
 * wrote (a status, a socket code, a timeout: never a URL); URLs are cut from
 * it anyway, so a row written by another version cannot show one.
 */
export interface OutboxEntry {
  id: string;
  kind: string;
  destination: string;
  approvalId: string | null;
  /** A security event's lease. */
  leaseId: string | null;
  role: string | null;
  status: OutboxRow['status'];
  attempts: number;
  createdAt: Date;
  nextAttemptAt: Date;
  deliveredAt: Date | null;
  lastError: string | null;
}

const URL_IN_TEXT = /[a-z][a-z0-9+.-]*:\/\/[^\s)"'<>]*/gi;
export const scrubUrls = (text: string | null) => (text === null ? null : text.replace(URL_IN_TEXT, '[url]'));

const entryColumns = {
  id: outbox.id,
  kind: outbox.kind,
  destination: outbox.destination,
  approvalId: sql<string | null>`${outbox.payload}->'approval'->>'id'`,
  leaseId: sql<string | null>`${outbox.payload}->>'lease'`,
  role: sql<string | null>`coalesce(${outbox.payload}->'approval'->>'role', ${outbox.payload}->>'role')`,
  status: outbox.status,
  attempts: outbox.attempts,
  createdAt: outbox.createdAt,
  nextAttemptAt: outbox.nextAttemptAt,
  deliveredAt: outbox.deliveredAt,
  lastError: outbox.lastError,
};
const undelivered = inArray(outbox.status, ['pending', 'failed']);
const failing = and(undelivered, gt(outbox.attempts, 0));

/** For the console: the failing rows (tried at least once, not delivered) and the recent delivered ones, newest first, `limit` of each. */
export async function listOutbox(db: Db, limit: number): Promise<{ failing: OutboxEntry[]; delivered: OutboxEntry[] }> {
  const [failingRows, deliveredRows] = await Promise.all([
    db.select(entryColumns).from(outbox).where(failing).orderBy(desc(outbox.id)).limit(limit),
    db.select(entryColumns).from(outbox).where(eq(outbox.status, 'delivered')).orderBy(desc(outbox.id)).limit(limit),
  ]);
  const scrub = (rows: OutboxEntry[]) => rows.map((r) => ({ ...r, lastError: scrubUrls(r.lastError) }));
  return { failing: scrub(failingRows), delivered: scrub(deliveredRows) };
}

export interface OutboxSummary {
  /** Not delivered yet (pending or failed). */
  undelivered: number;
  /** Not delivered and tried at least once. */
  failing: number;
  /** Past `max_attempts`: retried every `failed_retry_interval`. */
  failed: number;
  oldestUndeliveredAt: Date | undefined;
  oldestFailingAt: Date | undefined;
}

/** How the undelivered rows stand, in one aggregate query over the due index's rows (the overview and the notifications page). */
export async function summarizeOutbox(db: Db): Promise<OutboxSummary> {
  const counted = (where: SQL) => sql<number>`count(*) filter (where ${where})`.mapWith(Number);
  const oldest = (where: SQL | undefined) => (where ? sql<Date | null>`min(${outbox.createdAt}) filter (where ${where})` : sql<Date | null>`min(${outbox.createdAt})`).mapWith(outbox.createdAt);
  const [row] = await db
    .select({
      undelivered: sql<number>`count(*)`.mapWith(Number),
      failing: counted(sql`${outbox.attempts} > 0`),
      failed: counted(sql`${outbox.status} = 'failed'`),
      oldestUndeliveredAt: oldest(undefined),
      oldestFailingAt: oldest(sql`${outbox.attempts} > 0`),
    })
    .from(outbox)
    .where(undelivered);
  return {
    undelivered: row?.undelivered ?? 0,
    failing: row?.failing ?? 0,
    failed: row?.failed ?? 0,
    oldestUndeliveredAt: row?.oldestUndeliveredAt ?? undefined,
    oldestFailingAt: row?.oldestFailingAt ?? undefined,
  };
}

/**
 * An admin's "Retry now" (the console): a failing row becomes due at once, in
 * one transaction with its `notification.retry_requested` audit event. Its
 * status and attempts stay as they are, so the next failure counts on from
 * there. A row being delivered right now keeps its claim: that attempt's
 * outcome then sets the next one. `not_failing`: delivered, or not yet tried.
 */
export async function retryNow(db: Db, id: string, by: { actor: string } & RequestRef, now: Date): Promise<'scheduled' | 'not_failing' | 'not_found'> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(outbox)
      .set({ nextAttemptAt: now })
      .where(and(eq(outbox.id, id), failing))
      .returning({ destination: outbox.destination, status: outbox.status, attempts: outbox.attempts, approvalId: entryColumns.approvalId });
    if (!row) {
      const [exists] = await tx.select({ id: outbox.id }).from(outbox).where(eq(outbox.id, id));
      return exists ? 'not_failing' : 'not_found';
    }
    await appendAudit(tx, [
      {
        at: now,
        actor: by.actor,
        action: 'notification.retry_requested',
        target: `notification:${id}`,
        decision: 'allow',
        details: { destination: row.destination, approval: row.approvalId, status: row.status, attempts: row.attempts },
        ...requestRef(by),
      },
    ]);
    return 'scheduled';
  });
}
