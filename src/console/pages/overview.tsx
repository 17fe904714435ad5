// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Bucket, Overview } from '../overview.js';
import { Time } from './approvals.js';
import { Layout, type Viewer } from './layout.js';

export type BackendStatus = Record<string, { ok: boolean; missing: string[] }>;

const hhmm = (d: Date) => d.toISOString().slice(11, 16);

/**
 * Issued and refused credentials per bucket as an SVG bar chart, drawn here: the page runs no script for it
 * (the CSP allows only the console's own script file) and colours are SVG attributes, not inline styles.
 */
export function Chart(props: { buckets: Bucket[] }) {
  const W = 24;
  const H = 100;
  const max = Math.max(1, ...props.buckets.flatMap((b) => [b.issued, b.refused]));
  const h = (n: number) => Math.round((n / max) * H);
  return (
    <svg class="chart" viewBox={`0 0 ${props.buckets.length * W} ${H + 16}`} width={props.buckets.length * W * 2} height={(H + 16) * 2} role="img" aria-label="Credentials issued and refused per 5 minutes">
      {props.buckets.map((b, i) => (
        <g>
          <title>
            {hhmm(b.start)} UTC: {b.issued} issued, {b.refused} refused
          </title>
          <rect x={i * W + 2} y={H - h(b.issued)} width={9} height={h(b.issued)} fill="#15803d" />
          <rect x={i * W + 12} y={H - h(b.refused)} width={9} height={h(b.refused)} fill="#b91c1c" />
          {i % 3 === 0 ? (
            <text x={i * W + 2} y={H + 12} font-size="8" fill="#6b7280">
              {hhmm(b.start)}
            </text>
          ) : null}
        </g>
      ))}
    </svg>
  );
}

export function OverviewPage(props: { dev: boolean; viewer: Viewer; overview: Overview; backends: BackendStatus; now: Date }) {
  const o = props.overview;
  const issued = o.buckets.reduce((n, b) => n + b.issued, 0);
  const refused = o.buckets.reduce((n, b) => n + b.refused, 0);
  const backends = Object.entries(props.backends);
  return (
    <Layout title="Overview" dev={props.dev} viewer={props.viewer} active="overview">
      <h1>Overview</h1>
      {o.oldestRevokeFailed ? (
        <section id="revoke-failed" class="error" role="alert">
          <h2>Revocation failed ({o.revokeFailed})</h2>
          <p>
            The oldest, lease <code>{o.oldestRevokeFailed.id}</code> ({o.oldestRevokeFailed.role}, issued <Time at={o.oldestRevokeFailed.issuedAt} now={props.now} />
            ), may still work at its backend. <a href="/console/leases?status=revoke_failed">See them on the Leases page</a>.
          </p>
        </section>
      ) : null}
      <section id="pending">
        <h2>Approvals</h2>
        <p>
          <a href="/console/approvals">
            <span id="pending-count">{o.pendingApprovals}</span> pending
          </a>
        </p>
      </section>
      <section id="notifications" class={o.notifications.failing > 0 ? 'error' : undefined}>
        <h2>Notifications</h2>
        <p>
          <a href="/console/notifications">
            <span id="failing-count">{o.notifications.failing}</span> failing
          </a>
          {o.notifications.oldestFailingAt ? (
            <>
              {' '}
              (the oldest waits since <Time at={o.notifications.oldestFailingAt} now={props.now} />)
            </>
          ) : null}
          {o.notifications.failed > 0 ? <span class="muted"> · {o.notifications.failed} past their fast retries</span> : null}
        </p>
      </section>
      <section id="issuance">
        <h2>Credentials in the last hour</h2>
        <p>
          <span id="issued-count">{issued}</span> issued (green), <span id="refused-count">{refused}</span> refused (red), per 5 minutes.
        </p>
        <Chart buckets={o.buckets} />
      </section>
      <section id="active">
        <h2>Active leases</h2>
        {o.active.length === 0 ? (
          <p class="empty">No active leases.</p>
        ) : (
          <table class="grid">
            <thead>
              <tr>
                <th>Backend</th>
                <th>Role</th>
                <th>Active</th>
              </tr>
            </thead>
            <tbody>
              {o.active.map((r) => (
                <tr id={`active-${r.backend}-${r.role}`}>
                  <td>{r.backend}</td>
                  <td>
                    <a href={`/console/leases?status=active&role=${encodeURIComponent(r.role)}`}>{r.role}</a>
                  </td>
                  <td>{r.n}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section id="backends">
        <h2>Backends</h2>
        {backends.length === 0 ? (
          <p class="muted">No backend checks its permissions.</p>
        ) : (
          <ul>
            {backends.map(([name, s]) => (
              <li id={`backend-${name}`}>
                {name}: <span class={`badge ${s.ok ? 'ok' : 'suspended'}`}>{s.ok ? 'ready' : 'not ready'}</span>
                {s.missing.length ? <span class="muted"> (missing: {s.missing.join(', ')})</span> : null}
              </li>
            ))}
          </ul>
        )}
        <p class="muted">The broker's backend checks, kept 30 s per replica.</p>
      </section>
    </Layout>
  );
}
