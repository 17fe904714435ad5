import { and, eq, inArray } from 'drizzle-orm';
import { appendAudit, type AuditInput } from '../audit/append.js';
import type { Db } from '../db/client.js';
import { leases, tasks, type Lease } from '../db/schema.js';

type LeaseRow = typeof leases.$inferInsert;

type Pending =
  | { kind: 'lease'; row: LeaseRow; event: AuditInput; resolve: (lease: Lease | undefined) => void; reject: (err: unknown) => void }
  | { kind: 'audit'; events: AuditInput[]; resolve: () => void; reject: (err: unknown) => void };

/**
 * Group commit for the issuance path. Requests that arrive while a commit is
 * in flight are written together in the next transaction: their lease rows,
 * then their audit events (one append to the hash chain). Each request still
 * gets its row committed with its audit event before it is answered, and the
 * chain lock is taken once per batch rather than once per request, so commits
 * no longer queue one fsync at a time behind it.
 */
export function createLeaseWriter(db: Db, maxBatch = 256) {
  let queue: Pending[] = [];
  let draining = false;

  async function flush(batch: Pending[]): Promise<void> {
    const leaseItems = batch.filter((p): p is Extract<Pending, { kind: 'lease' }> => p.kind === 'lease');
    let result: { open: Set<string>; inserted: Map<string, Lease> };
    try {
      result = await db.transaction(async (tx) => {
        const open = new Set<string>();
        if (leaseItems.length > 0) {
          // FOR SHARE orders these inserts against a concurrent completion of the task:
          // either the completion sees the lease and revokes it, or this sees the task closed.
          const ids = [...new Set(leaseItems.map((p) => p.row.taskId))].sort();
          const rows = await tx
            .select({ id: tasks.id })
            .from(tasks)
            .where(and(inArray(tasks.id, ids), eq(tasks.status, 'open')))
            .for('share');
          for (const r of rows) open.add(r.id);
        }
        const accepted = leaseItems.filter((p) => open.has(p.row.taskId));
        const inserted = accepted.length > 0 ? await tx.insert(leases).values(accepted.map((p) => p.row)).returning() : [];
        const events = batch.flatMap((p) => (p.kind === 'audit' ? p.events : open.has(p.row.taskId) ? [p.event] : []));
        await appendAudit(tx, events);
        return { open, inserted: new Map(inserted.map((l) => [l.id, l])) };
      });
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    for (const p of batch) {
      if (p.kind === 'audit') p.resolve();
      else p.resolve(result.inserted.get(p.row.id!));
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      await flush(batch);
    }
    draining = false;
  }

  function enqueue(p: Pending): void {
    queue.push(p);
    if (!draining) {
      draining = true;
      // Let the requests of this turn of the event loop join the first batch.
      setImmediate(() => void drain());
    }
  }

  return {
    /** Commits the lease with its audit event; resolves undefined when the task is no longer open (nothing written). */
    recordLease(row: LeaseRow, event: AuditInput): Promise<Lease | undefined> {
      return new Promise((resolve, reject) => enqueue({ kind: 'lease', row, event, resolve, reject }));
    },
    /** Commits audit events that record a decision with no state change (a denial). */
    audit(events: AuditInput[]): Promise<void> {
      return new Promise((resolve, reject) => enqueue({ kind: 'audit', events, resolve, reject }));
    },
  };
}
export type LeaseWriter = ReturnType<typeof createLeaseWriter>;
