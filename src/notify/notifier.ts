import type { Clock } from '../clock.js';
import { mapLimit } from '../concurrency.js';
import type { NotificationsConfig } from '../config/notifications.js';
import type { Db } from '../db/client.js';
import type { OutboxRow } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { backoffMs } from '../sweeper/backoff.js';
import { createPassLoop } from '../pass-loop.js';
import { render } from './format.js';
import { claimDue, markDelivered, markFailed } from './outbox.js';
import { postWebhook } from './post.js';

export interface NotifierDeps {
  db: Db;
  clock: Clock;
  config: NotificationsConfig;
  publicUrl: string;
  log: Logger;
  /** Names this replica's claims. */
  id: string;
  random?: () => number;
  metrics?: Pick<Metrics, 'notificationsDelivered' | 'notificationFailures'>;
}

export interface NotifyResult {
  delivered: number;
  failed: number;
}

const CONCURRENCY = 4;
/** Rows claimed at once: two rounds of POSTs, so the claim below always covers them. */
const BATCH = CONCURRENCY * 2;

/**
 * The delivery worker (DESIGN.md promise 9): claims due outbox rows (any
 * replica, SKIP LOCKED), POSTs each to its webhook, and records the outcome:
 * delivered, or a failed attempt retried with backoff and jitter, then marked
 * `failed` and retried every `failed_retry_interval`. Delivery is at least
 * once (a replica dying between the POST and its record sends it again), so
 * receivers dedupe on the delivery id. Proved by test/notify/.
 */
export function createNotifier(deps: NotifierDeps) {
  const { db, clock, config, log } = deps;
  const random = deps.random ?? Math.random;
  const webhooks = new Map(config.webhooks.map((w) => [w.name, w]));
  const claimMs = (2 * config.timeout + 5) * 1000;
  let running: Promise<NotifyResult> | undefined;

  async function deliver(row: OutboxRow): Promise<boolean> {
    const webhook = webhooks.get(row.destination);
    const error = webhook
      ? await postWebhook(webhook.url, render(row, webhook, deps.publicUrl, clock.now()), config.timeout * 1000)
      : 'no webhook of this name is configured';
    const now = clock.now();
    if (error === undefined) {
      if (await markDelivered(db, deps.id, row.id, now)) deps.metrics?.notificationsDelivered.inc({ destination: row.destination });
      return true;
    }
    const failed = await markFailed(db, deps.id, row.id, {
      error,
      maxAttempts: config.max_attempts,
      retryAt: new Date(now.getTime() + backoffMs(row.attempts + 1, 1000, 300_000, random)),
      parkUntil: new Date(now.getTime() + config.failed_retry_interval * 1000),
    });
    deps.metrics?.notificationFailures.inc({ destination: row.destination });
    // The destination's name and the error only: its URL may be a credential.
    log.warn({ destination: row.destination, notification: row.id, attempts: failed?.attempts, status: failed?.status, error }, 'notification not delivered; will retry');
    return false;
  }

  async function notifyOnce(): Promise<NotifyResult> {
    const result: NotifyResult = { delivered: 0, failed: 0 };
    // A failed row is due again only after its backoff, so a pass ends once the due rows have been tried.
    for (;;) {
      const now = clock.now();
      const batch = await claimDue(db, deps.id, now, new Date(now.getTime() + claimMs), BATCH);
      if (batch.length === 0) break;
      const outcomes = await mapLimit(batch, CONCURRENCY, deliver);
      const delivered = outcomes.filter(Boolean).length;
      result.delivered += delivered;
      result.failed += outcomes.length - delivered;
      if (batch.length < BATCH) break;
    }
    return result;
  }

  function runOnce(): Promise<NotifyResult> {
    running ??= notifyOnce().finally(() => {
      running = undefined;
    });
    return running;
  }

  const loop = createPassLoop(config.interval * 1000, async () => {
    try {
      const result = await runOnce();
      if (result.delivered > 0) log.info(result, 'notifications delivered');
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : 'unknown' }, 'notification pass failed');
    }
  });

  return {
    /** Runs one pass now (tests call this directly). */
    runOnce,
    /** Starts the loop; without webhooks there is nothing to deliver and no loop. */
    start() {
      if (webhooks.size > 0) loop.start();
    },
    /** A row was written: deliver now rather than at the next tick. */
    nudge() {
      loop.nudge();
    },
    /** Stops claiming and waits for the pass in flight (its POSTs time out within `timeout`). */
    async stop() {
      await loop.stop();
      await running?.catch(() => {});
    },
  };
}
export type Notifier = ReturnType<typeof createNotifier>;
