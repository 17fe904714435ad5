import type { Clock } from '../clock.js';
import type { NotificationsConfig } from '../config/notifications.js';
import type { Db } from '../db/client.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { createDeliveryWorker, type DeliveryResult } from './delivery.js';
import { render } from './format.js';
import { APPROVAL_REQUESTED } from './outbox.js';

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

export type NotifyResult = DeliveryResult;

/**
 * The approval notifications' worker: outbox rows of kind `approval.requested`,
 * each POSTed to its webhook as rendered by format.ts (src/notify/delivery.ts
 * keeps the outbox's promise). Proved by test/notify/.
 */
export function createNotifier(deps: NotifierDeps) {
  const webhooks = new Map(deps.config.webhooks.map((w) => [w.name, w]));
  return createDeliveryWorker({
    db: deps.db,
    clock: deps.clock,
    log: deps.log,
    id: deps.id,
    timing: deps.config,
    ...(deps.random ? { random: deps.random } : {}),
    channel: {
      what: 'notification',
      kind: APPROVAL_REQUESTED,
      destinations: [...webhooks.keys()],
      async request(row, now) {
        const webhook = webhooks.get(row.destination);
        return webhook ? { url: webhook.url, ...render(row, webhook, deps.publicUrl, now) } : 'no webhook of this name is configured';
      },
    },
    onDelivered: (row) => deps.metrics?.notificationsDelivered.inc({ destination: row.destination }),
    onFailed: (row) => deps.metrics?.notificationFailures.inc({ destination: row.destination }),
  });
}
export type Notifier = ReturnType<typeof createNotifier>;
