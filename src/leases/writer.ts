import { and, eq, inArray } from 'drizzle-orm';
import { appendAudit, type AuditInput } from '../audit/append.js';
import type { Db } from '../db/client.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import { leases, tasks, type Lease } from '../db/schema.js';

type LeaseRow = typeof leases.$inferInsert;

type Pending =
  | { kind: 'lease'; row: LeaseRow; event: AuditInput; resolve: (lease: Lease) => void; reject: (err: unknown) => void }
  | { kind: 'audit'; events: AuditInput[]; resolve: () => void; reject: (err: unknown) => void };

/**
 * Group commit for the issuance path. Requests that arrive while a commit is
 * in flight are written together in the next transaction: their lease rows,
 * then their audit events (one append to the hash chain). Each request still
 * gets its row committed with its audit event before it is answered, and the
 * chain lock is taken once per batch rather than once per request.
 *
 * A credential minted for a task that closed meanwhile is still recorded, as
 * `revoking`, with a denial in the audit trail: the sweeper then revokes it
 * durably, and every credential that ever existed has a row.
 */
export function createLeaseWriter(db: Db, onRevokeRequested: () => void, maxBatch = 256) {
  let queue: Pending[] = [];
  let draining = false;

  async function write(batch: Pending[]): Promise<Map<string, Lease>> {
    return db.transaction(async (tx) => {
      const leaseItems = batch.filter((p): p is Extract<Pending, { kind: 'lease' }> => p.kind === 'lease');
      const open = new Set<string>();
      if (leaseItems.length > 0) {
        // FOR SHARE orders these inserts against a concurrent completion of the task:
        // either the completion sees the lease and revokes it, or this sees the task closed.
        const rows = await tx
          .select({ id: tasks.id })
          .from(tasks)
          .where(and(inArray(tasks.id, [...new Set(leaseItems.map((p) => p.row.taskId))]), eq(tasks.status, 'open')))
          .for('share');
        for (const r of rows) open.add(r.id);
      }
      const rows = leaseItems.map((p) =>
        open.has(p.row.taskId)
          ? p.row
          : { ...p.row, status: 'revoking' as const, reason: 'task_closed', revokeRequestedAt: p.row.issuedAt, nextAttemptAt: p.row.issuedAt },
      );
      const inserted = rows.length > 0 ? await tx.insert(leases).values(rows).returning() : [];
      const events = batch.flatMap((p) => {
        if (p.kind === 'audit') return p.events;
        if (open.has(p.row.taskId)) return [p.event];
        return [{ ...p.event, action: 'credential.denied', decision: 'deny' as const, reason: 'task closed while the credential was minted; revoking it' }];
      });
      await appendAudit(tx, events);
      return new Map(inserted.map((l) => [l.id, l]));
    });
  }

  async function flush(batch: Pending[]): Promise<void> {
    let inserted: Map<string, Lease>;
    try {
      inserted = await write(batch);
    } catch (err) {
      // One request's bad value must not fail its neighbours: retry them one by one.
      if (batch.length > 1 && !isDatabaseUnavailable(err)) {
        for (const p of batch) await flush([p]);
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    let closed = false;
    for (const p of batch) {
      if (p.kind === 'audit') {
        p.resolve();
        continue;
      }
      const lease = inserted.get(p.row.id!)!;
      closed ||= lease.status !== 'active';
      p.resolve(lease);
    }
    if (closed) onRevokeRequested();
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
    /** Commits the lease with its audit event. A lease whose task closed meanwhile comes back `revoking`. */
    recordLease(row: LeaseRow, event: AuditInput): Promise<Lease> {
      return new Promise((resolve, reject) => enqueue({ kind: 'lease', row, event, resolve, reject }));
    },
    /** Commits audit events that record a decision with no state change (a denial). */
    audit(events: AuditInput[]): Promise<void> {
      return new Promise((resolve, reject) => enqueue({ kind: 'audit', events, resolve, reject }));
    },
  };
}
export type LeaseWriter = ReturnType<typeof createLeaseWriter>;
