import { sql } from 'drizzle-orm';
import { appendAudit, type AuditInput } from '../audit/append.js';
import { BackendError, type Backend } from '../backends/types.js';
import type { Clock } from '../clock.js';
import { agentOf } from '../leases/revoke.js';
import { mapLimit, TimeoutError, withTimeout } from '../concurrency.js';
import type { Config } from '../config/schema.js';
import { execRows, type Db } from '../db/client.js';
import { leases, type Lease } from '../db/schema.js';
import { actorOf } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { createPassLoop } from '../pass-loop.js';
import { backoffMs } from './backoff.js';
import { claimDue, heldBy, releaseClaim } from './claim.js';
import { createCommitPipeline, type CommitPipeline } from './commit-pipeline.js';

export interface SweeperDeps {
  db: Db;
  clock: Clock;
  backends: ReadonlyMap<string, Backend>;
  config: Config['sweeper'];
  log: Logger;
  /** Names this replica's claims. */
  id: string;
  random?: () => number;
  metrics?: Pick<Metrics, 'revocations'>;
  /** Other expiries to run at the start of each pass (approval requests). */
  housekeeping?: () => Promise<unknown>;
  /** Told of the leases each commit ends, in that commit's transaction (security events' outbox), and after it commits. */
  ended?: { append(tx: Db, ended: EndedLease[], now: Date): Promise<number>; appended(): void };
}

/** A lease a sweeper commit ended: what those told of it (security events) need. */
export interface EndedLease {
  id: string;
  role: string;
  backend: string;
  status: string;
  reason: string | null;
}

export interface SweepResult {
  revoked: number;
  expired: number;
  failed: number;
}

const ACTOR = 'system:sweeper';
const WAVE_FACTOR = 4;
/** Waves whose commits may run at once (disjoint leases; they queue only on the chain's head). */
const COMMITS_IN_FLIGHT = 4;

/** A revocation error as stored and shown: BackendError messages are written to be safe; anything else is not trusted. */
function describe(err: unknown): string {
  if (err instanceof BackendError) return `${err.code}: ${err.message}`.slice(0, 500);
  if (err instanceof TimeoutError) return err.message;
  return 'backend error';
}

export function createSweeper(deps: SweeperDeps) {
  const { db, clock, backends, config, log } = deps;
  const random = deps.random ?? Math.random;
  const claimMs = config.claim_timeout * 1000;
  // A wave of WAVE_FACTOR rounds of revocations fits in half a claim, so one extension per wave always suffices.
  const revokeTimeoutMs = claimMs / (2 * WAVE_FACTOR);
  let running: Promise<SweepResult> | undefined;

  async function revoke(lease: Lease): Promise<unknown> {
    const backend = backends.get(lease.backend);
    if (!backend) return new BackendError('backend_missing', `backend '${lease.backend}' is not configured`, true);
    try {
      await withTimeout(
        backend.revoke({ leaseId: lease.id, ref: lease.credentialRef, role: lease.role, agent: actorOf(lease), backendExpiresAt: lease.backendExpiresAt }),
        revokeTimeoutMs,
        `revoke timed out after ${revokeTimeoutMs / 1000}s`,
      );
      return undefined;
    } catch (err) {
      return err ?? new Error('unknown');
    }
  }

  async function finish(succeeded: Lease[], now: Date): Promise<{ revoked: number; expired: number }> {
    if (succeeded.length === 0) return { revoked: 0, expired: 0 };
    const counts = await db.transaction(async (tx) => {
      // The lease rows first, the chain's head last, as every transaction that appends takes them (no deadlock).
      const done = await tx
        .update(leases)
        .set({
          status: sql`case when ${leases.status} = 'active' then 'expired' else 'revoked' end`,
          reason: sql`coalesce(${leases.reason}, 'expired')`,
          endedAt: now,
          nextAttemptAt: null,
          lastError: null,
          ...releaseClaim,
        })
        .where(heldBy(deps.id, succeeded.map((l) => l.id)))
        .returning({
          id: leases.id,
          status: leases.status,
          reason: leases.reason,
          attempts: leases.attempts,
          taskId: leases.taskId,
          revocable: leases.revocable,
          backendExpiresAt: leases.backendExpiresAt,
          agent: leases.agent,
          agentOwner: leases.agentOwner,
          role: leases.role,
          backend: leases.backend,
        });
      const told = (await deps.ended?.append(tx, done, now)) ?? 0;
      await appendAudit(
        tx,
        done.map((l) => ({
          at: now,
          actor: ACTOR,
          action: l.status === 'expired' ? 'lease.expired' : 'lease.revoked',
          target: `lease:${l.id}`,
          decision: 'info' as const,
          reason: l.reason,
          details: {
            task: l.taskId,
            ...agentOf(l),
            failed_attempts: l.attempts,
            // Said plainly: the backend could not cut this credential off early.
            ...(l.revocable ? {} : { not_revocable: `the credential works until its backend expiry, ${l.backendExpiresAt.toISOString()}` }),
          },
        })),
      );
      const expired = done.filter((l) => l.status === 'expired').length;
      return { revoked: done.length - expired, expired, told };
    });
    if (counts.told > 0) deps.ended?.appended();
    return counts;
  }

  /**
   * Records failed attempts. Everything that may have changed since the claim
   * (attempts reset, reason set by a task completion) is read in the UPDATE
   * itself, and the audit event is decided on the status it replaced.
   */
  async function fail(failures: { lease: Lease; error: string; permanent: boolean }[], now: Date): Promise<void> {
    if (failures.length === 0) return;
    await db.transaction(async (tx) => {
      const events: AuditInput[] = [];
      for (const { lease, error, permanent } of failures) {
        // A refusal that will repeat (the broker lacks a permission) parks the lease at once: visible, retried slowly.
        const parked = sql`(${permanent} or l.attempts + 1 >= ${config.max_attempts})`;
        const retryAt = new Date(now.getTime() + backoffMs(lease.attempts + 1, 1000, 300_000, random)).toISOString();
        const parkUntil = new Date(now.getTime() + config.failed_retry_interval * 1000).toISOString();
        const [row] = await execRows<{ old_status: string; status: string; attempts: number; reason: string; task_id: string; agent: string | null; agent_owner: string | null }>(
          tx,
          sql`update leases l set
                attempts = l.attempts + 1,
                status = case when ${parked} then 'revoke_failed' else 'revoking' end,
                reason = coalesce(l.reason, 'expired'),
                last_error = ${error},
                next_attempt_at = case when ${parked} then ${parkUntil}::timestamptz else ${retryAt}::timestamptz end,
                claimed_by = null,
                claim_until = null
              from (select id, status as old_status from leases where id = ${lease.id} and claimed_by = ${deps.id} for update) o
              where l.id = o.id
              returning o.old_status, l.status, l.attempts, l.reason, l.task_id, l.agent, l.agent_owner`,
        );
        if (row && row.status !== row.old_status) {
          events.push({
            at: now,
            actor: ACTOR,
            action: row.status === 'revoke_failed' ? 'lease.revoke_failed' : 'lease.revoking',
            target: `lease:${lease.id}`,
            decision: 'info',
            reason: row.reason,
            details: { task: row.task_id, ...agentOf({ agent: row.agent, agentOwner: row.agent_owner }), attempts: row.attempts, error },
          });
        }
      }
      await appendAudit(tx, events);
    });
  }

  /** Pushes the claim on leases still to be revoked further out, so a slow backend does not let another replica take them. */
  async function extendClaim(leasesLeft: Lease[], now: Date): Promise<void> {
    await db
      .update(leases)
      .set({ claimUntil: new Date(now.getTime() + claimMs) })
      .where(heldBy(deps.id, leasesLeft.map((l) => l.id)));
  }

  /** Records one wave's outcomes (one commit for the revoked, one for the failures) and counts them. */
  async function record(wave: Lease[], errors: unknown[], total: SweepResult): Promise<void> {
    const succeeded = wave.filter((_, i) => errors[i] === undefined);
    const failures = wave.flatMap((lease, i) =>
      errors[i] === undefined ? [] : [{ lease, error: describe(errors[i]), permanent: errors[i] instanceof BackendError && !errors[i].retryable }],
    );
    const done = clock.now();
    const counts = await finish(succeeded, done);
    await fail(failures, done);
    total.revoked += counts.revoked;
    total.expired += counts.expired;
    total.failed += failures.length;
    deps.metrics?.revocations.inc({ outcome: 'confirmed' }, counts.revoked + counts.expired);
    deps.metrics?.revocations.inc({ outcome: 'failed' }, failures.length);
    if (failures.length > 0) log.warn({ failed: failures.length, first: failures[0]!.error }, 'revocations failed; will retry');
  }

  /** Approval expiry, pruning deny policies: bounded, so it can never hold up revocation. */
  async function housekeep(): Promise<void> {
    await withTimeout(deps.housekeeping?.() ?? Promise.resolve(), 5000, 'housekeeping timed out').catch((err: unknown) =>
      log.warn({ err: err instanceof Error ? err.message : 'unknown' }, 'housekeeping did not finish'),
    );
  }

  /**
   * Revokes a claimed batch in waves of a few times the concurrency and submits each wave's commit, extending the
   * claim on what is left whenever it runs low. Right after an extension the commits in flight are drained: their
   * leases were not extended (their rows belong to their commits), so they must land while the claim they were
   * revoked under holds (test/sweeper/sweeper.test.ts, "extends its claim ... commits slow enough": fails without the
   * drain). Stops at the next wave once a commit has failed.
   */
  async function revokeInWaves(batch: Lease[], claimedUntil: number, commits: CommitPipeline, total: SweepResult): Promise<void> {
    const waveSize = config.concurrency * WAVE_FACTOR;
    let claimUntil = claimedUntil;
    for (let start = 0; start < batch.length && !commits.failed; start += waveSize) {
      const now = clock.now();
      if (claimUntil - now.getTime() < claimMs / 2) {
        await extendClaim(batch.slice(start), now);
        claimUntil = now.getTime() + claimMs;
        await commits.drain();
      }
      const wave = batch.slice(start, start + waveSize);
      const errors = await mapLimit(wave, config.concurrency, revoke);
      await commits.submit(() => record(wave, errors, total));
    }
  }

  /**
   * One pass: claims batches until nothing is due, and revokes each in waves. A lease is held by one replica while
   * that replica is alive and working on it, and becomes claimable again within `claim_timeout` if the replica dies.
   * A wave's commit runs while the next waves are revoked and the next batch is claimed: COMMITS_IN_FLIGHT at most,
   * of disjoint leases (each locks its lease rows, then the chain's head). Once a commit has failed nothing more is
   * claimed; the pass ends, and reports (the first commit to fail, in wave order), once every commit has landed.
   */
  async function sweepOnce(): Promise<SweepResult> {
    const total: SweepResult = { revoked: 0, expired: 0, failed: 0 };
    await housekeep();
    const commits = createCommitPipeline({ maxInFlight: COMMITS_IN_FLIGHT });
    try {
      while (!commits.failed) {
        const claimedAt = clock.now();
        const claimUntil = claimedAt.getTime() + claimMs;
        const batch = await claimDue(db, deps.id, claimedAt, new Date(claimUntil), config.batch_size);
        if (batch.length === 0) break;
        await revokeInWaves(batch, claimUntil, commits, total);
        if (batch.length < config.batch_size) break;
      }
    } catch (err) {
      // No commit outlives the pass, even when the pass fails; it reports what failed first.
      await commits.drain().catch(() => {});
      throw err;
    }
    await commits.drain();
    return total;
  }

  function runOnce(): Promise<SweepResult> {
    running ??= sweepOnce().finally(() => {
      running = undefined;
    });
    return running;
  }

  const loop = createPassLoop(config.interval * 1000, async () => {
    try {
      const result = await runOnce();
      if (result.revoked + result.expired > 0) log.info(result, 'sweep');
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : 'unknown' }, 'sweep failed');
    }
  });

  return {
    /** Runs one pass now (the `tasklease sweep` command and tests use this directly). */
    runOnce,
    start() {
      loop.start();
    },
    /** Starts a pass at once rather than at the next tick. */
    nudge() {
      loop.nudge();
    },
    /** Stops claiming new work and waits for the pass in flight to finish. */
    async stop() {
      await loop.stop();
      await running?.catch(() => {});
    },
  };
}
export type Sweeper = ReturnType<typeof createSweeper>;
