import { and, asc, count, eq, gte, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { approvals, auditEvents, leases, type Lease } from '../db/schema.js';
import { summarizeOutbox, type OutboxSummary } from '../notify/outbox.js';

/** The overview's window and its buckets: the last hour, in 5-minute steps. */
export const WINDOW_MS = 60 * 60_000;
export const BUCKET_MS = 5 * 60_000;

export interface Bucket {
  start: Date;
  issued: number;
  refused: number;
}

export interface Overview {
  active: { backend: string; role: string; n: number }[];
  buckets: Bucket[];
  oldestRevokeFailed: Lease | undefined;
  revokeFailed: number;
  pendingApprovals: number;
  /** Notification deliveries not delivered yet (src/notify/): one aggregate query. */
  notifications: OutboxSummary;
}

/**
 * What the overview page shows, read in a few aggregate queries (never a row per lease): a display, never a
 * decision. Issued credentials come from leases.issued_at; refusals from the credential.denied audit events, where
 * a summary of repeated refusals (src/audit/refusals.ts) counts for the repeats it stands for.
 */
export async function readOverview(db: Db, now: Date): Promise<Overview> {
  // Buckets aligned to the clock's 5-minute marks, the current one last.
  const last = Math.floor(now.getTime() / BUCKET_MS) * BUCKET_MS;
  const first = last - (WINDOW_MS / BUCKET_MS - 1) * BUCKET_MS;
  const from = new Date(first);
  const bucketOf = (column: typeof leases.issuedAt | typeof auditEvents.at) => sql<string>`floor(extract(epoch from ${column}) * 1000 / ${sql.raw(String(BUCKET_MS))})::bigint`;
  // Grouped by the first column: the same expression written twice would not compare equal in every query plan.
  const byFirst = sql`1`;
  const [active, issued, refused, [oldest], [failed], [pending], notifications] = await Promise.all([
    db
      .select({ backend: leases.backend, role: leases.role, n: count() })
      .from(leases)
      .where(eq(leases.status, 'active'))
      .groupBy(leases.backend, leases.role)
      .orderBy(asc(leases.backend), asc(leases.role)),
    db
      .select({ bucket: bucketOf(leases.issuedAt), n: count() })
      .from(leases)
      .where(gte(leases.issuedAt, from))
      .groupBy(byFirst),
    db
      .select({ bucket: bucketOf(auditEvents.at), n: sql<string>`sum(coalesce((${auditEvents.details}->>'count')::bigint, 1))` })
      .from(auditEvents)
      .where(and(eq(auditEvents.action, 'credential.denied'), gte(auditEvents.at, from)))
      .groupBy(byFirst),
    db.select().from(leases).where(eq(leases.status, 'revoke_failed')).orderBy(asc(leases.issuedAt)).limit(1),
    db.select({ n: count() }).from(leases).where(eq(leases.status, 'revoke_failed')),
    db.select({ n: count() }).from(approvals).where(eq(approvals.status, 'pending')),
    summarizeOutbox(db),
  ]);
  const byBucket = (rows: { bucket: string; n: number | string }[]) => new Map(rows.map((r) => [Number(r.bucket) * BUCKET_MS, Number(r.n)]));
  const issuedBy = byBucket(issued);
  const refusedBy = byBucket(refused);
  const buckets: Bucket[] = [];
  for (let t = first; t <= last; t += BUCKET_MS) buckets.push({ start: new Date(t), issued: issuedBy.get(t) ?? 0, refused: refusedBy.get(t) ?? 0 });
  return {
    active: active.map((r) => ({ ...r, n: Number(r.n) })),
    buckets,
    oldestRevokeFailed: oldest,
    revokeFailed: Number(failed?.n ?? 0),
    pendingApprovals: Number(pending?.n ?? 0),
    notifications,
  };
}
