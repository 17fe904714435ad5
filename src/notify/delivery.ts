import type { Clock } from '../clock.js';
import { mapLimit } from '../concurrency.js';
import type { Db } from '../db/client.js';
import type { OutboxRow } from '../db/schema.js';
import type { Logger } from '../log.js';
import { backoffMs } from '../sweeper/backoff.js';
import { createPassLoop } from '../pass-loop.js';
import { claimDue, markDelivered, markFailed, releaseClaims } from './outbox.js';
import { postWebhook } from './post.js';

/** How one kind of outbox row is delivered: the request for a row, or why there is none. */
export interface DeliveryChannel {
  /** What is delivered, as logs name it ('notification', 'security event'). */
  what: string;
  /** The rows this worker claims (`outbox.kind`). */
  kind: string;
  /** The destinations this worker delivers to (webhook names, SSF receivers); rows for others are left alone. */
  destinations: string[];
  request(row: OutboxRow, now: Date): Promise<{ url: string; body: string; headers: Record<string, string> } | string>;
}

export interface DeliveryDeps {
  db: Db;
  clock: Clock;
  channel: DeliveryChannel;
  timing: { interval: number; timeout: number; max_attempts: number; failed_retry_interval: number };
  log: Logger;
  /** Names this replica's claims. */
  id: string;
  random?: () => number;
  onDelivered?: (row: OutboxRow) => void;
  onFailed?: (row: OutboxRow) => void;
}

export interface DeliveryResult {
  delivered: number;
  failed: number;
}

const CONCURRENCY = 4;
/** Rows claimed at once: two rounds of POSTs, so the claim below always covers them. */
const BATCH = CONCURRENCY * 2;

/**
 * An outbox delivery worker (DESIGN.md promise 9): claims due rows of its kind
 * (any replica, SKIP LOCKED), POSTs each to its destination, and records the
 * outcome: delivered, or a failed attempt retried with backoff and jitter,
 * then marked `failed` and retried every `failed_retry_interval`. Delivery is
 * at least once (a replica dying between the POST and its record sends it
 * again), so receivers dedupe on the delivery id. A destination that fails
 * is left alone by this replica for a backoff of its own (failures in a row,
 * up to a minute), so one receiver that is down costs a request or so per
 * backoff, not a timeout per row, and never holds up the others. Proved by test/notify/ and test/oauth/ssf*.
 */
export function createDeliveryWorker(deps: DeliveryDeps) {
  const { db, clock, channel, timing, log } = deps;
  const random = deps.random ?? Math.random;
  const claimMs = (2 * timing.timeout + 5) * 1000;
  /** Destinations this replica leaves alone until the time given, and their failures in a row (their own backoff, at most a minute). */
  const resting = new Map<string, number>();
  const failuresInRow = new Map<string, number>();
  let running: Promise<DeliveryResult> | undefined;

  /** One POST; a failure is recorded at once, a delivery by the batch (one UPDATE for all of them). */
  async function deliver(row: OutboxRow): Promise<boolean> {
    const now = clock.now();
    const request = await channel.request(row, now).catch(() => 'the request could not be prepared');
    const error = typeof request === 'string' ? request : await postWebhook(request.url, request, timing.timeout * 1000);
    const done = clock.now();
    if (error === undefined) {
      failuresInRow.delete(row.destination);
      return true;
    }
    const retryAt = new Date(done.getTime() + backoffMs(row.attempts + 1, 1000, 300_000, random));
    const failed = await markFailed(db, deps.id, row.id, {
      error,
      maxAttempts: timing.max_attempts,
      retryAt,
      parkUntil: new Date(done.getTime() + timing.failed_retry_interval * 1000),
    });
    const inRow = (failuresInRow.get(row.destination) ?? 0) + 1;
    failuresInRow.set(row.destination, inRow);
    resting.set(row.destination, Math.max(resting.get(row.destination) ?? 0, done.getTime() + backoffMs(inRow, 1000, 60_000, random)));
    deps.onFailed?.(row);
    // The destination's name and the error only: its URL may be a credential.
    log.warn({ destination: row.destination, [channel.what === 'notification' ? 'notification' : 'event']: row.id, attempts: failed?.attempts, status: failed?.status, error }, `${channel.what} not delivered; will retry`);
    return false;
  }

  function awake(now: number): string[] {
    for (const [destination, until] of resting) if (until <= now) resting.delete(destination);
    return channel.destinations.filter((d) => !resting.has(d));
  }

  /**
   * One destination's rows of a batch: the first goes alone, and only if it is
   * delivered do the rest follow (CONCURRENCY at once); otherwise they are
   * handed back untried. So a destination that is down gets one request per
   * backoff, and one that is up is not held to one request at a time.
   */
  async function deliverTo(rows: OutboxRow[]): Promise<boolean[]> {
    const [first, ...rest] = rows;
    if (!(await deliver(first!))) {
      await releaseClaims(db, deps.id, rest.map((r) => r.id));
      return [false];
    }
    return [true, ...(await mapLimit(rest, CONCURRENCY, deliver))];
  }

  async function deliverOnce(): Promise<DeliveryResult> {
    const result: DeliveryResult = { delivered: 0, failed: 0 };
    // A failed row is due again only after its backoff, so a pass ends once the due rows have been tried.
    for (;;) {
      const now = clock.now();
      const destinations = awake(now.getTime());
      if (destinations.length === 0) break;
      const batch = await claimDue(db, deps.id, now, new Date(now.getTime() + claimMs), BATCH, { kind: channel.kind, destinations });
      if (batch.length === 0) break;
      const byDestination = new Map<string, OutboxRow[]>();
      for (const row of batch) byDestination.set(row.destination, [...(byDestination.get(row.destination) ?? []), row]);
      const groups = [...byDestination.values()];
      const outcomes = await mapLimit(groups, CONCURRENCY, deliverTo);
      const delivered = groups.flatMap((rows, i) => rows.filter((_, j) => outcomes[i]![j] === true));
      // Rows another replica took over meanwhile (a claim that ran out) are its to record.
      const recorded = new Set(await markDelivered(db, deps.id, delivered.map((r) => r.id), clock.now()));
      for (const row of delivered) if (recorded.has(row.id)) deps.onDelivered?.(row);
      result.delivered += delivered.length;
      result.failed += outcomes.flat().length - delivered.length;
      if (batch.length < BATCH) break;
    }
    return result;
  }

  function runOnce(): Promise<DeliveryResult> {
    running ??= deliverOnce().finally(() => {
      running = undefined;
    });
    return running;
  }

  const loop = createPassLoop(timing.interval * 1000, async () => {
    try {
      const result = await runOnce();
      if (result.delivered > 0) log.info(result, `${channel.what}s delivered`);
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : 'unknown' }, `${channel.what} pass failed`);
    }
  });

  return {
    /** Runs one pass now (tests call this directly). */
    runOnce,
    /** Starts the loop; with no destination there is nothing to deliver and no loop. */
    start() {
      if (channel.destinations.length > 0) loop.start();
    },
    /** A row was written: deliver now rather than at the next tick. */
    nudge() {
      loop.nudge();
    },
    /** An admin asked for a retry: every destination is tried again at once. */
    retryNow() {
      resting.clear();
      failuresInRow.clear();
      loop.nudge();
    },
    /** Stops claiming and waits for the pass in flight (its POSTs time out within `timeout`). */
    async stop() {
      await loop.stop();
      await running?.catch(() => {});
    },
  };
}
export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;
