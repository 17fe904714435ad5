// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { OUTBOX_KINDS } from '../../db/schema.js';
import type { OutboxEntry, OutboxSummary } from '../../notify/outbox.js';
import { Time } from './approvals.js';
import { Layout, type Viewer } from './layout.js';

export const NOTIFICATION_NOTICES = {
  retry_scheduled: { kind: 'ok', text: 'Due now: the notifier sends it on its next pass (at once on this replica).' },
  not_failing: { kind: 'error', text: 'That notification is not failing: it was delivered, or has not been tried yet.' },
} as const;
export type NotificationNotice = keyof typeof NOTIFICATION_NOTICES;

function Notice(props: { notice?: NotificationNotice }) {
  const n = props.notice ? NOTIFICATION_NOTICES[props.notice] : undefined;
  if (!n) return null;
  return (
    <p class={n.kind === 'ok' ? 'notice' : 'error'} role={n.kind === 'ok' ? 'status' : 'alert'}>
      {n.text}
    </p>
  );
}

/** The approval a row is about, linked to its page, or the lease a security event reports; the role beside it. */
function About(props: { entry: OutboxEntry }) {
  const e = props.entry;
  if (e.kind === OUTBOX_KINDS.securityEvent) {
    return (
      <span>
        security event: lease <code>{e.leaseId ?? '?'}</code> ended
        {e.role ? <span class="muted"> ({e.role})</span> : null}
      </span>
    );
  }
  if (!e.approvalId) return <span class="muted">(no approval)</span>;
  return (
    <span>
      <a href={`/console/approvals/${encodeURIComponent(e.approvalId)}`}>
        <code>{e.approvalId}</code>
      </a>
      {e.role ? <span class="muted"> ({e.role})</span> : null}
    </span>
  );
}

function FailingTable(props: { entries: OutboxEntry[]; csrf: string; now: Date }) {
  return (
    <table class="grid">
      <thead>
        <tr>
          <th>Destination</th>
          <th>About</th>
          <th>Status</th>
          <th>Attempts</th>
          <th>Last error</th>
          <th>Next attempt</th>
          <th>Waiting since</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        {props.entries.map((e) => (
          <tr id={`notification-${e.id}`}>
            <td>{e.destination}</td>
            <td>
              <About entry={e} />
            </td>
            <td>
              {/* `failed`: past max_attempts, still retried every failed_retry_interval. */}
              <span class={`badge ${e.status === 'failed' ? 'suspended' : 'revoking'}`}>{e.status === 'failed' ? 'failed' : 'retrying'}</span>
            </td>
            <td class="attempts">{e.attempts}</td>
            <td>
              <code class="last-error">{e.lastError ?? ''}</code>
            </td>
            <td>
              <Time at={e.nextAttemptAt} now={props.now} />
            </td>
            <td>
              <Time at={e.createdAt} now={props.now} />
            </td>
            <td>
              <form method="post" action={`/console/notifications/${e.id}/retry`}>
                <input type="hidden" name="csrf" value={props.csrf} />
                <button type="submit">Retry now</button>
              </form>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function DeliveredTable(props: { entries: OutboxEntry[]; now: Date }) {
  return (
    <table class="grid">
      <thead>
        <tr>
          <th>Destination</th>
          <th>About</th>
          <th>Attempts</th>
          <th>Delivered</th>
        </tr>
      </thead>
      <tbody>
        {props.entries.map((e) => (
          <tr id={`notification-${e.id}`}>
            <td>{e.destination}</td>
            <td>
              <About entry={e} />
            </td>
            <td class="attempts">{e.attempts}</td>
            <td>{e.deliveredAt ? <Time at={e.deliveredAt} now={props.now} /> : null}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The outbox for admins (approval notifications and security events): webhooks and receivers by name only (a webhook's URL can be its secret), failing deliveries first. */
export function NotificationsPage(props: {
  dev: boolean;
  viewer: Viewer;
  summary: OutboxSummary;
  failing: OutboxEntry[];
  delivered: OutboxEntry[];
  limit: number;
  now: Date;
  notice?: NotificationNotice;
}) {
  const s = props.summary;
  const atMost = (n: number) => (n === props.limit ? `the newest ${props.limit}` : String(n));
  return (
    <Layout title="Notifications" dev={props.dev} viewer={props.viewer} active="notifications">
      <h1>Notifications</h1>
      <Notice notice={props.notice} />
      <p class="muted">
        Approval requests sent to the configured webhooks, and security events (SSF) sent to resource servers when a token they accept is
        revoked, each destination named as the config names it. A poll receiver's events wait here until it acknowledges them. A failed delivery is retried with backoff; after{' '}
        <code>max_attempts</code> it is marked <em>failed</em> and still retried every <code>failed_retry_interval</code>: nothing is given up for good.
      </p>
      <section id="undelivered">
        <p>
          <span id="undelivered-count">{s.undelivered}</span> not delivered, <span id="failing-count">{s.failing}</span> of them failing
          {s.failed > 0 ? <> ({s.failed} past their fast retries)</> : null}.
          {s.oldestUndeliveredAt ? (
            <>
              {' '}
              The oldest undelivered waits since <Time at={s.oldestUndeliveredAt} now={props.now} />.
            </>
          ) : null}
        </p>
      </section>
      <section id="failing" class={props.failing.length > 0 ? 'error' : undefined}>
        <h2>Failing ({atMost(props.failing.length)})</h2>
        {props.failing.length === 0 ? <p class="empty">No delivery is failing.</p> : <FailingTable entries={props.failing} csrf={props.viewer.csrf} now={props.now} />}
      </section>
      <section id="delivered">
        <h2>Delivered recently ({atMost(props.delivered.length)})</h2>
        {props.delivered.length === 0 ? <p class="empty">None delivered yet.</p> : <DeliveredTable entries={props.delivered} now={props.now} />}
      </section>
    </Layout>
  );
}
