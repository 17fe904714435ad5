import { sql } from 'drizzle-orm';
import { chainedInsert, headOf, LOCK_HEAD, type AuditInput } from '../audit/append.js';
import type { RoleConfig } from '../config/schema.js';
import type { Db } from '../db/client.js';
import { TimeoutError, withTimeout } from '../concurrency.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Lease } from '../db/schema.js';
import type { ErrorCode } from '../errors.js';
import type { Identity } from '../identity/types.js';
import type { Limits } from '../policy/limits.js';
import { sendAll } from '../db/send.js';
import { insertLeases, leaseInsert, stored, taskStates, tasksForShare, type LeaseRow, type TaskState } from './insert.js';

const COMMIT_TIMEOUT_MS = 10_000;

/** Why a minted credential was refused at commit; its lease is recorded as `revoking`. */
export interface CommitRefusal {
  code: ErrorCode;
  reason: string;
  extra: Record<string, unknown>;
}

export interface Recorded {
  lease: Lease;
  refusal?: CommitRefusal;
}

/** The lease's revocation reason for a credential refused at commit. */
const leaseReason = (refusal: CommitRefusal) => (refusal.code === 'task_not_open' ? 'task_closed' : refusal.code);

interface LeaseItem {
  kind: 'lease';
  row: LeaseRow;
  event: AuditInput;
  who: { identity: Identity; role: RoleConfig };
  resolve: (r: Recorded) => void;
  reject: (err: unknown) => void;
}
type Pending = LeaseItem | { kind: 'audit'; events: AuditInput[]; resolve: () => void; reject: (err: unknown) => void };

/**
 * Group commit for the issuance path. Requests that arrive while a commit is
 * in flight are written together in the next transaction, in four round
 * trips: BEGIN; the batch's tasks FOR SHARE and the audit chain's head,
 * locked, sent together (the server runs them in that order); the lease rows
 * and their audit events (one append to the hash chain), sent together;
 * COMMIT. Statement texts do not vary with the batch size, so each is a
 * prepared statement, prepared once per connection (db/send.ts).
 *
 * The commit is where limits hold: requests whose role has quotas or
 * conflicts take advisory locks on their agent, task (and role), always after
 * the chain's head (one order, no deadlock), and are
 * re-checked one by one, each seeing the leases committed before it and those
 * inserted ahead of it in the batch. A credential refused here (the task
 * closed, or a concurrent request took the last slot) is still recorded, as
 * `revoking` with a denial in the audit trail, so the sweeper revokes it
 * durably and every credential that ever existed has a row.
 */
export function createLeaseWriter(db: Db, limits: Limits, onRevokeRequested: () => void, maxBatch = 256, maxInFlight = 2) {
  const queue: Pending[] = [];
  let inFlight = 0;
  let scheduled = false;

  async function write(batch: Pending[]): Promise<Map<string, Recorded>> {
    return db.transaction(async (tx) => {
      const items = batch.filter((p): p is LeaseItem => p.kind === 'lease');
      const out = new Map<string, Recorded>();
      const refused = new Map<string, CommitRefusal>();
      // Task rows first, the chain's head last, as every transaction that appends takes them: one lock
      // order, so a completion (task row, then head) and this batch cannot deadlock. Sent together, they
      // still run in this order: the head is locked once the task rows are.
      const ids = [...new Set(items.map((p) => p.row.taskId))];
      const locked = await sendAll(tx, ids.length > 0 ? [tasksForShare(ids), LOCK_HEAD] : [LOCK_HEAD]);
      const taskOf = ids.length > 0 ? taskStates(locked[0]!) : new Map<string, TaskState>();
      const head = headOf(locked.at(-1)!);
      const constrained: LeaseItem[] = [];
      const free: LeaseItem[] = [];
      for (const p of items) {
        const task = taskOf.get(p.row.taskId);
        if (!task || task.status !== 'open') refused.set(p.row.id!, { code: 'task_not_open', reason: 'task closed while the credential was minted', extra: {} });
        else (limits.constrained(p.who.role, task) ? constrained : free).push(p);
      }
      if (constrained.length > 0) {
        const keys = [...new Set(constrained.flatMap((p) => limits.lockKeys({ ...p.who, task: taskOf.get(p.row.taskId)!, now: p.row.issuedAt })))].sort();
        for (const key of keys) await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`);
        for (const p of constrained) {
          const refusal = await limits.check(tx, { ...p.who, task: taskOf.get(p.row.taskId)!, now: p.row.issuedAt });
          if (refusal) {
            const { code, reason, ...rest } = refusal;
            refused.set(p.row.id!, { code, reason, extra: 'retryAfterSeconds' in rest ? { retry_after: rest.retryAfterSeconds } : 'conflictsWith' in rest ? { conflicts_with: rest.conflictsWith, conflict: rest.conflict } : {} });
          } else {
            const [lease] = await insertLeases(tx, [p.row]);
            out.set(lease!.id, { lease: lease! });
          }
        }
      }
      const rows = [
        ...free.map((p) => p.row),
        ...items
          .filter((p) => refused.has(p.row.id!))
          .map((p) => ({ ...p.row, status: 'revoking' as const, reason: leaseReason(refused.get(p.row.id!)!), revokeRequestedAt: p.row.issuedAt, nextAttemptAt: p.row.issuedAt })),
      ];
      const events = batch.flatMap((p) => {
        if (p.kind === 'audit') return p.events;
        const refusal = refused.get(p.row.id!);
        if (!refusal) return [p.event];
        return [{ ...p.event, action: 'credential.denied', decision: 'deny' as const, reason: `${refusal.reason}; revoking it`, details: { ...p.event.details, code: refusal.code, ...refusal.extra } }];
      });
      // Together, one round trip: the lease rows and their audit events.
      await sendAll(tx, [leaseInsert(rows), chainedInsert(head, events)].filter((s) => s !== undefined));
      for (const lease of rows.map(stored)) out.set(lease.id, { lease, ...(refused.has(lease.id) ? { refusal: refused.get(lease.id)! } : {}) });
      return out;
    });
  }

  async function flush(batch: Pending[]): Promise<void> {
    let recorded: Map<string, Recorded>;
    try {
      // A commit that never answers (a connection lost mid-flight) must not hold up every request queued behind it.
      recorded = await withTimeout(write(batch), COMMIT_TIMEOUT_MS, 'commit timed out');
    } catch (caught) {
      const err = caught instanceof TimeoutError ? Object.assign(new Error('the database did not answer'), { code: 'CONNECT_TIMEOUT' }) : caught;
      // One request's bad value must not fail its neighbours: retry them one by one.
      if (batch.length > 1 && !isDatabaseUnavailable(err)) {
        for (const p of batch) await flush([p]);
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    let refusedAny = false;
    for (const p of batch) {
      if (p.kind === 'audit') {
        p.resolve();
        continue;
      }
      const r = recorded.get(p.row.id!)!;
      refusedAny ||= r.refusal !== undefined;
      p.resolve(r);
    }
    if (refusedAny) onRevokeRequested();
  }

  function pump(): void {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      inFlight++;
      void flush(batch).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  function enqueue(p: Pending): void {
    queue.push(p);
    if (!scheduled && inFlight < maxInFlight) {
      scheduled = true;
      // Let the requests of this turn of the event loop join the batch.
      setImmediate(() => {
        scheduled = false;
        pump();
      });
    }
  }

  return {
    /** Commits the lease with its audit event; a lease refused at commit comes back `revoking` with the refusal. */
    recordLease(row: LeaseRow, event: AuditInput, who: { identity: Identity; role: RoleConfig }): Promise<Recorded> {
      return new Promise((resolve, reject) => enqueue({ kind: 'lease', row, event, who, resolve, reject }));
    },
    /** Commits audit events that record a decision with no state change (a denial). */
    audit(events: AuditInput[]): Promise<void> {
      return new Promise((resolve, reject) => enqueue({ kind: 'audit', events, resolve, reject }));
    },
  };
}
export type LeaseWriter = ReturnType<typeof createLeaseWriter>;
