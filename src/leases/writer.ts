import { sql } from 'drizzle-orm';
import { appended, chainAppend, MAX_EVENTS_PER_APPEND, type AuditInput } from '../audit/append.js';
import type { RoleConfig } from '../config/schema.js';
import type { Db } from '../db/client.js';
import type { CommitLane } from '../db/lane.js';
import { sendOne } from '../db/send.js';
import { TimeoutError, withTimeout } from '../concurrency.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Lease } from '../db/schema.js';
import type { Identity } from '../identity/types.js';
import type { AgentDenyCode } from '../policy/decide.js';
import { refusalExtra, type LimitRefusal, type Limits, type NeverReleased } from '../policy/limits.js';
import { generationOf, inserted, leaseInsert, REGISTRY_FOR_SHARE, stored, taskStates, tasksForShare, type LeaseRow, type TaskState } from './insert.js';
import { recordIssued, type RecordResult } from './record.js';

const COMMIT_TIMEOUT_MS = 10_000;
const TXID = sql`select txid_current()::text as txid`;

/** Why a minted credential was refused at commit; its lease is recorded as `revoking`. */
export interface CommitRefusal {
  code: CommitRefusalCode;
  reason: string;
  extra: Record<string, unknown>;
}

export interface Recorded {
  lease: Lease;
  refusal?: CommitRefusal;
}

/** The codes a credential can be refused with at commit: the task closed, a limit, or the registry's second decision. */
export type CommitRefusalCode = 'task_not_open' | LimitRefusal['code'] | AgentDenyCode | 'role_denied';

/**
 * The lease's revocation reason for each code a credential is refused with at commit: one of NEVER_RELEASED
 * (policy/limits.ts), so it never counts as held. A new code does not compile until it is given one.
 */
const LEASE_REASON: Record<CommitRefusalCode, NeverReleased> = {
  task_not_open: 'task_closed',
  quota_exceeded: 'quota_exceeded',
  task_lease_limit: 'task_lease_limit',
  role_conflict: 'role_conflict',
  // The registry's second decision (a suspension, a narrowed ceiling): the audit event has the code.
  agent_suspended: 'registry_changed',
  agent_not_registered: 'registry_changed',
  policy_error: 'registry_changed',
  role_denied: 'registry_changed',
};
const leaseReason = (refusal: CommitRefusal): NeverReleased => LEASE_REASON[refusal.code];

/**
 * Who asked; `constrained` when a limit applies to the request (quotas, conflicts, the task's lease limit).
 * `generation` is the agent registry's the decision was made on; when the commit finds another, `recheck`
 * decides again on the registry at that generation, read through the commit's transaction.
 */
export interface Who {
  identity: Identity;
  role: RoleConfig;
  constrained: boolean;
  generation: number;
  recheck: (generation: number, through: Db) => Promise<{ refusal: CommitRefusal } | { agent: string | null; agentOwner: string | null }>;
}

interface LeaseItem {
  kind: 'lease';
  row: LeaseRow;
  event: AuditInput;
  who: Who;
  resolve: (r: Recorded) => void;
  reject: (err: unknown) => void;
}
type Pending = LeaseItem | { kind: 'audit'; events: AuditInput[]; resolve: () => void; reject: (err: unknown) => void };

/**
 * Group commit for the issuance path. Requests that arrive while a commit is
 * in flight are written together in the next one (at most one per lane in
 * flight). A batch in which no limit applies to any request is recorded by
 * one statement (leases/record.ts): one round trip, atomic without BEGIN. A
 * batch with a constrained request, or one whose task closed while its
 * credential was minted (that statement then writes nothing), commits on a
 * commit lane (db/lane.ts), in two round trips around its checks: BEGIN with
 * the batch's tasks read FOR SHARE; then the lease rows, their audit events
 * and COMMIT. Either way the
 * audit chain's head, which every append in every replica waits for, is
 * locked last and held only while the server writes the events and commits.
 * Statement texts do not vary with the batch size: each is a prepared
 * statement, prepared once per connection.
 *
 * The commit is where limits hold: requests whose role has quotas or
 * conflicts take advisory locks on their agent, task (and role), always after
 * the task rows and before the chain's head (one order, no deadlock), and are
 * re-checked one by one, each seeing the leases committed before it and those
 * inserted ahead of it in the batch. Every commit also reads the agent
 * registry's generation FOR SHARE, after the task rows: a request decided on
 * another generation (a suspension, a narrowed ceiling) is decided again
 * there, on the registry read through the transaction
 * (test/agents/registry.test.ts, test/reliability/agent-suspend.test.ts).
 * A credential refused here (the task closed, a concurrent request took the
 * last slot, the agent was suspended) is still recorded, as
 * `revoking` with a denial in the audit trail, so the sweeper revokes it
 * durably and every credential that ever existed has a row.
 */
export interface LeaseWriterDeps {
  db: Db;
  /** One per group commit in flight; a batch with a constrained request commits on one. */
  lanes: CommitLane[];
  limits: Limits;
  onRevokeRequested: () => void;
  maxBatch?: number;
}

const TASK_CLOSED: CommitRefusal = { code: 'task_not_open', reason: 'task closed while the credential was minted', extra: {} };

/** The audit event of a credential refused at commit. */
const refusedEvent = (event: AuditInput, refusal: CommitRefusal): AuditInput => ({
  ...event,
  action: 'credential.denied',
  decision: 'deny',
  reason: `${refusal.reason}; revoking it`,
  details: { ...event.details, code: refusal.code, ...refusal.extra },
});

export function createLeaseWriter({ db, lanes, limits, onRevokeRequested, maxBatch = 256 }: LeaseWriterDeps) {
  const queue: Pending[] = [];
  const free = [...lanes];
  let scheduled = false;

  /**
   * No limit applies to any request of the batch: one statement records it all (leases/record.ts).
   * Undefined when a task of the batch closed meanwhile: nothing was written.
   */
  async function writeFree(batch: Pending[]): Promise<Map<string, Recorded> | undefined> {
    const items = batch.filter((p): p is LeaseItem => p.kind === 'lease');
    const events = batch.flatMap((p) => (p.kind === 'audit' ? p.events : []));
    const [result] = await sendOne<RecordResult>(db, items.length > 0 ? recordIssued(items, events) : chainAppend(events)!);
    if (items.length > 0 && (result!.closed > 0 || result!.stale)) return undefined;
    appended([result], items.length + events.length);
    if (items.length > 0 && result!.inserted !== items.length) throw new Error('the commit recorded an unexpected number of leases');
    return new Map(items.map(({ row }) => [row.id!, { lease: stored(row) }]));
  }

  async function write(batch: Pending[], lane: CommitLane): Promise<Map<string, Recorded>> {
    if (!batch.some((p) => p.kind === 'lease' && p.who.constrained)) {
      const recorded = await writeFree(batch);
      if (recorded) return recorded;
    }
    // Limits to check under lock, or a task that closed while its credential was minted (recorded as revoking).
    return lane.run(async (tx) => {
      const items = batch.filter((p): p is LeaseItem => p.kind === 'lease');
      const out = new Map<string, Recorded>();
      const refused = new Map<string, CommitRefusal>();
      // Task rows now, the chain's head at the end (in chainAppend), as every transaction that appends
      // takes them: one lock order, so a completion (task row, then head) and this batch cannot deadlock.
      // Then the registry's row: a suspension waits for this commit, or this commit decides again after it.
      const ids = [...new Set(items.map((p) => p.row.taskId))];
      const locked = ids.length > 0 ? await tx.send([tasksForShare(ids), REGISTRY_FOR_SHARE, TXID]) : undefined;
      const taskOf = locked ? taskStates(locked[0]!) : new Map<string, TaskState>();
      const generation = locked ? generationOf(locked[1]!) : 0;
      const txid = locked ? (locked[2] as { txid: string }[])[0]!.txid : undefined;
      const constrained: LeaseItem[] = [];
      const unconstrained: LeaseItem[] = [];
      for (const p of items) {
        const task = taskOf.get(p.row.taskId);
        if (!task || task.status !== 'open') {
          refused.set(p.row.id!, TASK_CLOSED);
          continue;
        }
        if (p.who.generation !== generation) {
          const again = await p.who.recheck(generation, tx.db);
          if ('refusal' in again) {
            refused.set(p.row.id!, again.refusal);
            continue;
          }
          p.row = { ...p.row, ...again };
          p.event = { ...p.event, details: { ...p.event.details, agent: again.agent, owner: again.agentOwner } };
        }
        (limits.constrained(p.who.role, task) ? constrained : unconstrained).push(p);
      }
      if (constrained.length > 0) {
        const keys = [...new Set(constrained.flatMap((p) => limits.lockKeys({ ...p.who, task: taskOf.get(p.row.taskId)!, now: p.row.issuedAt })))].sort();
        for (const key of keys) await tx.db.execute(sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`);
        for (const p of constrained) {
          const refusal = await limits.check(tx.db, { ...p.who, task: taskOf.get(p.row.taskId)!, now: p.row.issuedAt });
          if (refusal) {
            refused.set(p.row.id!, { code: refusal.code, reason: refusal.reason, extra: refusalExtra(refusal) });
          } else {
            const [rows] = await tx.send([leaseInsert([p.row], txid!)!]);
            inserted(rows!, 1);
            out.set(p.row.id!, { lease: stored(p.row) });
          }
        }
      }
      const rows = [
        ...unconstrained.map((p) => p.row),
        ...items
          .filter((p) => refused.has(p.row.id!))
          .map((p) => ({ ...p.row, status: 'revoking' as const, reason: leaseReason(refused.get(p.row.id!)!), revokeRequestedAt: p.row.issuedAt, nextAttemptAt: p.row.issuedAt })),
      ];
      const events = batch.flatMap((p) => {
        if (p.kind === 'audit') return p.events;
        const refusal = refused.get(p.row.id!);
        return [refusal ? refusedEvent(p.event, refusal) : p.event];
      });
      // Together with COMMIT, one round trip: the lease rows and their audit events, each writing only in
      // the transaction that locked the tasks.
      const leaseStatement = txid ? leaseInsert(rows, txid) : undefined;
      const results = await tx.commit([...(leaseStatement ? [leaseStatement] : []), chainAppend(events, txid)!]);
      if (leaseStatement) inserted(results[0]!, rows.length);
      appended(results.at(-1)!, events.length);
      for (const row of rows) out.set(row.id!, { lease: stored(row), ...(refused.has(row.id!) ? { refusal: refused.get(row.id!)! } : {}) });
      return out;
    });
  }

  async function flush(batch: Pending[], lane: CommitLane): Promise<void> {
    let recorded: Map<string, Recorded>;
    try {
      // A commit that never answers (a connection lost mid-flight) must not hold up every request queued behind it.
      recorded = await withTimeout(write(batch, lane), COMMIT_TIMEOUT_MS, 'commit timed out');
    } catch (caught) {
      // The lane's connection is stuck: drop it, which ends the transaction, and give the lane a new one.
      if (caught instanceof TimeoutError) lane.reset();
      const err = caught instanceof TimeoutError ? Object.assign(new Error('the database did not answer'), { code: 'CONNECT_TIMEOUT' }) : caught;
      // One request's bad value must not fail its neighbours: retry them one by one.
      if (batch.length > 1 && !isDatabaseUnavailable(err)) {
        for (const p of batch) await flush([p], lane);
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

  /** The next batch: at most `maxBatch` leases and events together, so one commit's chain append stays linear (audit/append.ts). */
  function nextBatch(): Pending[] {
    let weight = 0;
    let take = 0;
    while (take < queue.length) {
      const p = queue[take]!;
      weight += p.kind === 'lease' ? 1 : p.events.length;
      if (take > 0 && weight > maxBatch) break;
      take++;
    }
    return queue.splice(0, take);
  }

  function pump(): void {
    while (free.length > 0 && queue.length > 0) {
      const batch = nextBatch();
      const lane = free.pop()!;
      void flush(batch, lane).finally(() => {
        free.push(lane);
        pump();
      });
    }
  }

  function enqueue(p: Pending): void {
    queue.push(p);
    if (!scheduled && free.length > 0) {
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
    recordLease(row: LeaseRow, event: AuditInput, who: Who): Promise<Recorded> {
      return new Promise((resolve, reject) => enqueue({ kind: 'lease', row, event, who, resolve, reject }));
    },
    /** Commits audit events that record a decision with no state change (a denial); many go in several commits. */
    async audit(events: AuditInput[]): Promise<void> {
      const chunks: Promise<void>[] = [];
      for (let i = 0; i < events.length; i += MAX_EVENTS_PER_APPEND) {
        const chunk = events.slice(i, i + MAX_EVENTS_PER_APPEND);
        chunks.push(new Promise((resolve, reject) => enqueue({ kind: 'audit', events: chunk, resolve, reject })));
      }
      await Promise.all(chunks);
    },
  };
}
export type LeaseWriter = ReturnType<typeof createLeaseWriter>;
