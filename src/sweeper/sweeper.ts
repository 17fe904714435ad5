import { sql } from 'drizzle-orm';
import { appendAudit, type AuditInput } from '../audit/append.js';
import { BackendError, type Backend } from '../backends/types.js';
import type { Clock } from '../clock.js';
import { mapLimit, withTimeout } from '../concurrency.js';
import type { Config } from '../config/schema.js';
import type { Db } from '../db/client.js';
import { leases, type Lease } from '../db/schema.js';
import type { Logger } from '../log.js';
import { backoffMs } from './backoff.js';
import { claimDue, heldBy, releaseClaim } from './claim.js';

export interface SweeperDeps {
  db: Db;
  clock: Clock;
  backends: ReadonlyMap<string, Backend>;
  config: Config['sweeper'];
  log: Logger;
  /** Names this replica's claims. */
  id: string;
  random?: () => number;
}

export interface SweepResult {
  revoked: number;
  expired: number;
  failed: number;
}

const ACTOR = 'system:sweeper';

/** A revocation error as stored and shown: BackendError messages are written to be safe; anything else is not trusted. */
function describe(err: unknown): string {
  if (err instanceof BackendError) return `${err.code}: ${err.message}`.slice(0, 500);
  if (err instanceof Error && err.message.startsWith('revoke timed out')) return err.message;
  return 'backend error';
}

export function createSweeper(deps: SweeperDeps) {
  const { db, clock, backends, config, log } = deps;
  const random = deps.random ?? Math.random;
  let running: Promise<SweepResult> | undefined;
  let stopped = true;
  let nudged = false;
  let wake: (() => void) | undefined;
  let loop: Promise<void> | undefined;

  async function revoke(lease: Lease): Promise<unknown> {
    const backend = backends.get(lease.backend);
    if (!backend) return new BackendError('backend_missing', `backend '${lease.backend}' is not configured`, true);
    try {
      await withTimeout(
        backend.revoke({ leaseId: lease.id, ref: lease.credentialRef, role: lease.role, backendExpiresAt: lease.backendExpiresAt }),
        (config.claim_timeout * 1000) / 2,
        `revoke timed out after ${config.claim_timeout / 2}s`,
      );
      return undefined;
    } catch (err) {
      return err ?? new Error('unknown');
    }
  }

  async function finish(succeeded: Lease[], now: Date): Promise<{ revoked: number; expired: number }> {
    if (succeeded.length === 0) return { revoked: 0, expired: 0 };
    return db.transaction(async (tx) => {
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
        .returning({ id: leases.id, status: leases.status, reason: leases.reason, attempts: leases.attempts, taskId: leases.taskId });
      await appendAudit(
        tx,
        done.map((l) => ({
          at: now,
          actor: ACTOR,
          action: l.status === 'expired' ? 'lease.expired' : 'lease.revoked',
          target: `lease:${l.id}`,
          decision: 'info' as const,
          reason: l.reason,
          details: { task: l.taskId, failed_attempts: l.attempts },
        })),
      );
      const expired = done.filter((l) => l.status === 'expired').length;
      return { revoked: done.length - expired, expired };
    });
  }

  async function fail(failures: { lease: Lease; error: string }[], now: Date): Promise<void> {
    if (failures.length === 0) return;
    await db.transaction(async (tx) => {
      const events: AuditInput[] = [];
      for (const { lease, error } of failures) {
        const attempts = lease.attempts + 1;
        const giveUp = attempts >= config.max_attempts;
        const status = giveUp ? 'revoke_failed' : 'revoking';
        const delay = giveUp ? config.failed_retry_interval * 1000 : backoffMs(attempts, 1000, 300_000, random);
        const [updated] = await tx
          .update(leases)
          .set({
            status,
            reason: lease.reason ?? 'expired',
            attempts,
            lastError: error,
            nextAttemptAt: new Date(now.getTime() + delay),
            ...releaseClaim,
          })
          .where(heldBy(deps.id, [lease.id]))
          .returning({ id: leases.id });
        if (updated && status !== lease.status) {
          events.push({
            at: now,
            actor: ACTOR,
            action: giveUp ? 'lease.revoke_failed' : 'lease.revoking',
            target: `lease:${lease.id}`,
            decision: 'info',
            reason: lease.reason ?? 'expired',
            details: { task: lease.taskId, attempts, error },
          });
        }
      }
      await appendAudit(tx, events);
    });
  }

  /** One pass: claims and revokes batches until nothing is due. */
  async function sweepOnce(): Promise<SweepResult> {
    const total: SweepResult = { revoked: 0, expired: 0, failed: 0 };
    for (;;) {
      const now = clock.now();
      const claimUntil = new Date(now.getTime() + config.claim_timeout * 1000);
      const batch = await claimDue(db, deps.id, now, claimUntil, config.batch_size);
      if (batch.length === 0) return total;
      const errors = await mapLimit(batch, config.concurrency, revoke);
      const succeeded = batch.filter((_, i) => errors[i] === undefined);
      const failures = batch.flatMap((lease, i) => (errors[i] === undefined ? [] : [{ lease, error: describe(errors[i]) }]));
      const done = clock.now();
      const counts = await finish(succeeded, done);
      await fail(failures, done);
      total.revoked += counts.revoked;
      total.expired += counts.expired;
      total.failed += failures.length;
      if (failures.length > 0) log.warn({ failed: failures.length, first: failures[0]!.error }, 'revocations failed; will retry');
      if (batch.length < config.batch_size) return total;
    }
  }

  function runOnce(): Promise<SweepResult> {
    running ??= sweepOnce().finally(() => {
      running = undefined;
    });
    return running;
  }

  async function runLoop(): Promise<void> {
    while (!stopped) {
      nudged = false;
      try {
        const result = await runOnce();
        if (result.revoked + result.expired > 0) log.info(result, 'sweep');
      } catch (err) {
        log.error({ err: err instanceof Error ? err.message : 'unknown' }, 'sweep failed');
      }
      if (stopped) break;
      if (nudged) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, config.interval * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }

  return {
    /** Runs one pass now (the `tasklease sweep` command and tests use this directly). */
    runOnce,
    start() {
      if (!stopped) return;
      stopped = false;
      loop = runLoop();
    },
    /** Starts a pass at once rather than at the next tick. */
    nudge() {
      nudged = true;
      wake?.();
    },
    /** Stops claiming new work and waits for the pass in flight to finish. */
    async stop() {
      stopped = true;
      wake?.();
      await loop;
      await running?.catch(() => {});
    },
  };
}
export type Sweeper = ReturnType<typeof createSweeper>;
