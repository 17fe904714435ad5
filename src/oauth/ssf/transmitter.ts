import { OUTBOX_KINDS } from '../../db/schema.js';
import { createDeliveryWorker } from '../../notify/delivery.js';
import { signSecurityEvent, type SsfDeps } from './events.js';

/**
 * Push delivery of security events (RFC 8935): each SET POSTed as
 * `application/secevent+jwt` to its receiver's endpoint_url, with the
 * receiver's `authorization_header` when it has one; any 2xx is delivery.
 * Retries, backoff per receiver and at-least-once come from the outbox's
 * delivery worker (src/notify/delivery.ts). Receivers dedupe on the SET's
 * `jti`. Proved by test/oauth/ssf.test.ts.
 */
export function createTransmitter(deps: SsfDeps & { id: string; random?: () => number }) {
  const push = new Map(deps.config.resource_servers.flatMap((r) => (r.security_events?.delivery === 'push' ? [[r.client_id, r.security_events] as const] : [])));
  return createDeliveryWorker({
    db: deps.db,
    clock: deps.clock,
    log: deps.log,
    id: deps.id,
    timing: deps.config.security_events,
    ...(deps.random ? { random: deps.random } : {}),
    channel: {
      what: 'security event',
      kind: OUTBOX_KINDS.securityEvent,
      destinations: [...push.keys()],
      async request(row) {
        const receiver = push.get(row.destination);
        if (!receiver) return 'no push receiver of this client_id is configured';
        const headers: Record<string, string> = { 'content-type': 'application/secevent+jwt', accept: 'application/json', 'user-agent': 'tasklease-ssf' };
        if (receiver.authorization_header) headers.authorization = receiver.authorization_header;
        return { url: receiver.endpoint_url, body: await signSecurityEvent(deps.keys, deps.issuer, row), headers };
      },
    },
    onDelivered: (row) => deps.metrics?.securityEventsDelivered.inc({ receiver: row.destination }),
    onFailed: (row) => deps.metrics?.securityEventFailures.inc({ receiver: row.destination }),
  });
}
export type Transmitter = ReturnType<typeof createTransmitter>;
