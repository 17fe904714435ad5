// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { AuditEvent } from '../../db/schema.js';
import type { ChainCheck } from '../chain-check.js';
import { Time } from './approvals.js';
import { Layout, queryString, type Viewer } from './layout.js';

/** The filters the page accepts, already checked; `since` as the ISO text the form shows back. */
export interface AuditQuery {
  actor?: string;
  action?: string;
  target?: string;
  since?: string;
}

function ChainStatus(props: { head: string | undefined; check: ChainCheck | undefined; csrf: string; now: Date }) {
  const check = props.check;
  return (
    <section id="chain">
      <h2>Chain</h2>
      <p>
        Head: <code>{props.head ?? '(no audit_head row)'}</code>
      </p>
      {check ? (
        <p class={check.result.ok ? 'notice' : 'error'} role={check.result.ok ? 'status' : 'alert'} id="chain-result">
          {check.text} (checked <Time at={check.at} now={props.now} /> by this replica)
        </p>
      ) : (
        <p class="muted">Not verified by this replica since it started.</p>
      )}
      <form method="post" action="/console/audit/verify">
        <input type="hidden" name="csrf" value={props.csrf} />
        <button type="submit">Verify now</button>{' '}
        <span class="muted">Walks the whole chain: on a long chain this takes a while.</span>
      </form>
    </section>
  );
}

export function AuditPage(props: { dev: boolean; viewer: Viewer; query: AuditQuery; events: AuditEvent[]; next: string | null; head: string | undefined; check: ChainCheck | undefined; now: Date }) {
  const q = props.query;
  return (
    <Layout title="Audit" dev={props.dev} viewer={props.viewer} active="audit">
      <h1>Audit</h1>
      <ChainStatus head={props.head} check={props.check} csrf={props.viewer.csrf} now={props.now} />
      <h2>Events</h2>
      <form method="get" action="/console/audit" class="filter">
        <label>
          Actor <input name="actor" value={q.actor ?? ''} maxlength={1088} autocomplete="off" />
        </label>{' '}
        <label>
          Action <input name="action" value={q.action ?? ''} maxlength={200} autocomplete="off" />
        </label>{' '}
        <label>
          Target <input name="target" value={q.target ?? ''} maxlength={1088} autocomplete="off" />
        </label>{' '}
        <label>
          Since <input name="since" value={q.since ?? ''} maxlength={40} placeholder="2026-01-31T12:00:00Z" autocomplete="off" />
        </label>{' '}
        <button type="submit">Filter</button>
      </form>
      <section id="audit-list">
        {props.events.length === 0 ? (
          <p class="empty">No events.</p>
        ) : (
          <table class="grid audit">
            <thead>
              <tr>
                <th>Seq</th>
                <th>At</th>
                <th>Actor</th>
                <th>Action</th>
                <th>Target</th>
                <th>Decision</th>
                <th>Details</th>
              </tr>
            </thead>
            <tbody>
              {props.events.map((e) => (
                <tr id={`event-${e.seq}`}>
                  <td>{e.seq}</td>
                  <td>
                    <Time at={e.at} now={props.now} />
                  </td>
                  <td>{e.actor}</td>
                  <td>{e.action}</td>
                  <td>
                    <code>{e.target}</code>
                  </td>
                  <td>
                    <span class={`badge ${e.decision}`}>{e.decision}</span>
                    {e.reason ? <div class="muted">{e.reason}</div> : null}
                  </td>
                  <td>
                    {/* JSX escapes the text: details hold what agents and people sent. */}
                    <pre class="details">{JSON.stringify(e.details, null, 1)}</pre>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {props.next ? (
          <a class="older" href={`/console/audit${queryString(q, { after: props.next })}`}>
            Newer events
          </a>
        ) : null}
      </section>
    </Layout>
  );
}
