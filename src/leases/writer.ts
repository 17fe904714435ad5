import { sql } from 'drizzle-orm';
import { appended, chainAppend, MAX_EVENTS_PER_APPEND, type AuditInput } from '../audit/append.js';
import type { RoleConfig } from '../config/schema.js';
import { TimeoutError, withTimeout } from '../concurrency.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Lease } from '../db/schema.js';
import type { Writes, WriteTx } from '../db/transact.js';
import type { Db } from '../db/types.js';
import type { Identity } from '../identity/types.js';
import type { DenyCode } from '../policy/decide.js';
import { heldRoles, keepOldest, refusalExtra, type Held, type LimitRefusal, type Limits, type NeverReleased } from '../policy/limits.js';
import { inserted, leaseInsert, stored, type LeaseRow } from './insert.js';
import { generationOf, recordIssued, taskStates, type RecordResult } from './record.js';

const COMMIT_TIMEOUT_MS = 10_000;

/** Why a minted credential was refused at commit; its lease is recorded as `revoking`. */
export interface CommitRefusal {
  code: CommitRefusalCode;
  reason: string;
  extra: Record<string, unknown>;
  /** The lease's reason, when the code alone does not say (the code's otherwise: LEASE_REASON). */
  leaseReason?: NeverReleased;
}

export interface Recorded {
  lease: Lease;
  refusal?: CommitRefusal;
}

/** The codes a credential can be refused with at commit: the task closed, a limit, the registry's or policy's second decision. */
export type CommitRefusalCode = 'task_not_open' | LimitRefusal['code'] | DenyCode;

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
  // Policy's second decision, on what is held under the commit's locks, says `policy_refused` (leaseReason).
  task_not_found: 'policy_refused',
  task_expired: 'policy_refused',
};
const leaseReason = (refusal: CommitRefusal): NeverReleased => refusal.leaseReason ?? LEASE_REASON[refusal.code];

/**
 * Who asked; `constrained` when a limit applies to the request (quotas, the task's lease limit) or a policy
 * reads what is held. `generation` is the agent registry's the decision was made on; when the commit finds
 * another, `recheck` decides again on the registry at that generation, read through the commit's
 * transaction. `decideHeld`, present when a policy reads what is held, decides again on what is held
 * under the commit's locks.
 */
export interface Who {
  identity: Identity;
  role: RoleConfig;
  constrained: boolean;
  generation: number;
  recheck: (generation: number, through: Db) => Promise<{ refusal: CommitRefusal } | { agent: string | null; agentOwner: string | null }>;
  decideHeld?: (held: Held) => CommitRefusal | undefined;
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
 * Group commit for the issuance path: the one place a credential's lease and
 * its audit event are written. Read it top to bottom with leases/record.ts.
 *
 * Requests that arrive while commits are in flight (at most `maxInFlight`)
 * are written together in the next one, with one audit append. Every batch
 * begins with the record statement (leases/record.ts), which takes the
 * commit's locks in their one order: the batch's task rows, then the agent
 * registry's row, both FOR SHARE.
 *
 * - **The short way.** When no limit applies to any request, that statement
 *   is sent alone (db/transact.ts: a statement is a transaction by itself):
 *   if every task is still open and every decision was made on the
 *   registry's generation, it writes the leases and appends their events,
 *   the chain's head locked last. One round trip and one write to the socket;
 *   a transaction's BEGIN and COMMIT would be two more of each, which cost
 *   this path a tenth of its throughput (BENCHMARKS.md).
 * - **The long way**, when a limit applies or the short way wrote nothing: one
 *   transaction, the driver's own, whose first statement is the same record
 *   statement, told only to lock. Under those locks:
 *   - a request whose task closed while its credential was minted is refused;
 *   - a request decided on another generation of the registry (a suspension,
 *     a narrowed ceiling) is decided again on the registry read through the
 *     transaction (test/agents/registry.test.ts, test/reliability/agent-suspend.test.ts);
 *   - requests whose role has quotas, or a policy that reads what is held (a
 *     conflict), take advisory locks on their agent, task (and role), after
 *     the task rows and before the chain's head (one order, no deadlock:
 *     test/leases/race.test.ts), and are re-checked one by one, each seeing
 *     the leases committed before it and those inserted ahead of it
 *     (test/policy/limits.test.ts, test/policy/cedar-held.test.ts);
 *   - then the remaining leases and every event, the chain's head last, held
 *     only while the server writes the events and commits.
 *
 * A credential refused at commit is still recorded, as `revoking` with a
 * denial in the audit trail, so the sweeper revokes it durably and every
 * credential that ever existed has a row. Statement texts do not vary with
 * the batch: each is prepared once per connection.
 */
export interface LeaseWriterDeps {
  writes: Writes;
  limits: Limits;
  onRevokeRequested: () => void;
  maxBatch?: number;
  /** Commits in flight at once, each a transaction on a connection of its own. */
  maxInFlight?: number;
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

export function createLeaseWriter({ writes, limits, onRevokeRequested, maxBatch = 256, maxInFlight = 2 }: LeaseWriterDeps) {
  const queue: Pending[] = [];
  let inFlight = 0;
  let scheduled = false;

  /** A batch's events, a refused credential's as its denial. */
  const eventsOf = (batch: Pending[], refused: Map<string, CommitRefusal>) =>
    batch.flatMap((p) => {
      if (p.kind === 'audit') return p.events;
      const refusal = refused.get(p.row.id!);
      return [refusal ? refusedEvent(p.event, refusal) : p.event];
    });
  const leasesOf = (batch: Pending[]) => batch.filter((p): p is LeaseItem => p.kind === 'lease');

  /**
   * The short way: no limit applies to any request of the batch, so the record statement alone writes it all,
   * unless a task closed or the registry changed meanwhile (then it writes nothing: undefined).
   */
  async function writeAlone(batch: Pending[]): Promise<Map<string, Recorded> | undefined> {
    const items = leasesOf(batch);
    const events = eventsOf(batch, new Map());
    const [result] = await writes.alone<RecordResult>(recordIssued(items, events, true));
    if (result!.moved !== 1) return undefined;
    appended([result], events.length);
    inserted([result], items.length);
    return new Map(items.map(({ row }) => [row.id!, { lease: stored(row) }]));
  }

  /** The long way: in one transaction, whose first statement is the same record statement, told only to lock. */
  async function writeLocked(batch: Pending[], tx: WriteTx): Promise<Map<string, Recorded>> {
    const items = leasesOf(batch);
    const [[result]] = (await tx.run([recordIssued(items, [], false)])) as [[RecordResult]];
    const out = new Map<string, Recorded>();
    // Under the locks the statement took (tasks, then the registry): decide again what changed, take the
    // limits' locks and check them, then write, the chain's head last.
    const taskOf = taskStates(result!);
    const generation = generationOf(result!);
    const refused = new Map<string, CommitRefusal>();
    const constrained: LeaseItem[] = [];
    const unconstrained: LeaseItem[] = [];
    const accepted: LeaseItem[] = [];
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
      (p.who.decideHeld || limits.constrained(p.who.role, task) ? constrained : unconstrained).push(p);
    }
    if (constrained.length > 0) {
      const keys = [...new Set(constrained.flatMap((p) => limits.lockKeys({ ...p.who, task: taskOf.get(p.row.taskId)!, now: p.row.issuedAt })))].sort();
      // The locks in their one order, sent together: one round trip.
      await tx.run(keys.map((key) => sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`));
      // What is held, for every request a policy on it applies to, in one statement; then kept up to date
      // here as requests are accepted (nothing else can change it for these agents and tasks under the locks).
      const asking = constrained.filter((p) => p.who.decideHeld);
      const earliest = new Date(Math.min(...asking.map((p) => p.row.issuedAt!.getTime())));
      const heldNow = asking.length > 0 ? await heldRoles(tx.db, asking.map((p) => ({ identity: p.who.identity, taskId: p.row.taskId })), earliest) : [];
      const heldOf = new Map(asking.map((p, i) => [p, heldNow[i]!]));
      // One by one, each checked against the leases committed before it and those accepted ahead of it here.
      for (const p of constrained) {
        const task = taskOf.get(p.row.taskId)!;
        const limit = await limits.check(tx.db, { ...p.who, task, now: p.row.issuedAt });
        const refusal = limit ? { code: limit.code, reason: limit.reason, extra: refusalExtra(limit) } : p.who.decideHeld?.(heldOf.get(p)!);
        if (refusal) {
          refused.set(p.row.id!, refusal);
          continue;
        }
        for (const [q, held] of heldOf) {
          if (q.row.taskId === p.row.taskId) keepOldest(held.task, p.row.role, p.row.id!);
          if (q.row.issuer === p.row.issuer && q.row.subject === p.row.subject) keepOldest(held.agent, p.row.role, p.row.id!);
        }
        // A limit counts in SQL: a request it applies to is inserted now, for the next one's count. The others
        // no limit counts (policy/limits.ts constrained) go with the batch's remaining leases.
        if (limits.constrained(p.who.role, task)) {
          const [rows] = await tx.run([leaseInsert([p.row])]);
          inserted(rows!, 1);
          out.set(p.row.id!, { lease: stored(p.row) });
        } else {
          accepted.push(p);
        }
      }
    }
    const rows = [
      ...unconstrained.map((p) => p.row),
      ...accepted.map((p) => p.row),
      ...items
        .filter((p) => refused.has(p.row.id!))
        .map((p) => ({ ...p.row, status: 'revoking' as const, reason: leaseReason(refused.get(p.row.id!)!), revokeRequestedAt: p.row.issuedAt, nextAttemptAt: p.row.issuedAt })),
    ];
    const final = eventsOf(batch, refused);
    // One round trip: the remaining leases and every event of the batch.
    const results = await tx.run([...(rows.length > 0 ? [leaseInsert(rows)] : []), chainAppend(final)!]);
    if (rows.length > 0) inserted(results[0]!, rows.length);
    appended(results.at(-1)!, final.length);
    for (const row of rows) out.set(row.id!, { lease: stored(row), ...(refused.has(row.id!) ? { refusal: refused.get(row.id!)! } : {}) });
    return out;
  }

  async function write(batch: Pending[]): Promise<Map<string, Recorded>> {
    const free = !leasesOf(batch).some((p) => p.who.constrained);
    return (free ? await writeAlone(batch) : undefined) ?? (await writes.transact((tx) => writeLocked(batch, tx)));
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
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = nextBatch();
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
