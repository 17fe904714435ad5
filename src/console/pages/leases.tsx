// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { LEASE_STATUSES, type Lease } from '../../db/schema.js';
import { Time } from './approvals.js';
import { NameParam, SubjectSchema, TaskIdSchema } from '../../http/schemas.js';
import { Layout, queryString, type Viewer } from './layout.js';

export const LEASE_NOTICES = {
  revoking: { kind: 'ok', text: 'Revocation requested: the sweeper is revoking the credential at its backend.' },
  reason_required: { kind: 'error', text: 'Give a reason (up to 500 characters, no control characters) for the revocation.' },
  bulk_revoking: { kind: 'ok', text: 'Bulk revocation requested: the sweeper is revoking the matching credentials at their backends.' },
  bulk_filter_required: { kind: 'error', text: 'A bulk revocation needs at least one of subject, role, task or agent.' },
  bulk_filter_invalid: { kind: 'error', text: 'A value of the bulk revocation\'s filter could not be read: nothing was revoked. Correct the filter and try again.' },
} as const;
export type LeaseNotice = keyof typeof LEASE_NOTICES;

/** The filters the page accepts, already checked; the form shows them back. */
export interface LeaseQuery {
  status?: (typeof LEASE_STATUSES)[number];
  task?: string;
  subject?: string;
  role?: string;
  backend?: string;
  agent?: string;
}

/**
 * Leases as a table; with `csrf`, each active one gets a revoke form (admins only). `detail` shows a revocation's
 * attempts and the backend's last error, as the API's AdminLease does: for admins, and an agent's owners on its page.
 */
export function LeaseTable(props: { leases: Lease[]; now: Date; csrf?: string; query?: LeaseQuery; detail?: boolean }) {
  if (props.leases.length === 0) return <p class="empty">No leases.</p>;
  return (
    <table class="grid leases">
      <thead>
        <tr>
          <th>Lease</th>
          <th>Status</th>
          <th>Role</th>
          <th>Holder</th>
          <th>Task</th>
          <th>Issued</th>
          <th>Expires</th>
          {props.csrf ? <th>Revoke</th> : null}
        </tr>
      </thead>
      <tbody>
        {props.leases.map((l) => (
          <tr id={`lease-${l.id}`} data-id={l.id} class={`status-${l.status}`}>
            <td>
              <code>{l.id}</code>
            </td>
            <td>
              <span class={`badge ${l.status}`}>{l.status}</span>
              {l.reason ? <span class="muted"> ({l.reason})</span> : null}
              {props.detail && (l.status === 'revoke_failed' || l.status === 'revoking') ? (
                <div class="attempts">
                  {l.attempts} attempts{l.lastError ? `: ${l.lastError}` : ''}
                </div>
              ) : null}
            </td>
            <td>{l.role}</td>
            <td>
              {l.issuer}/{l.subject}
              {l.agent ? <span class="muted"> (agent {l.agent})</span> : null}
              {l.onBehalfOf ? <div class="on-behalf-of">on behalf of {l.onBehalfOf}</div> : null}
            </td>
            <td>
              <code>{l.taskId}</code>
            </td>
            <td>
              <Time at={l.issuedAt} now={props.now} />
            </td>
            <td>
              <Time at={l.expiresAt} now={props.now} />
            </td>
            {props.csrf ? (
              <td>
                {l.status === 'active' ? (
                  <form method="post" action={`/console/leases/${l.id}/revoke${queryString(props.query ?? {})}`} class="decide">
                    <input type="hidden" name="csrf" value={props.csrf} />
                    <input name="reason" required maxlength={500} placeholder="Reason" aria-label="Reason" autocomplete="off" />
                    <button type="submit" class="deny">
                      Revoke
                    </button>
                  </form>
                ) : null}
              </td>
            ) : null}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** What a bulk revocation may match on: every active lease with all of these. */
export type BulkFilter = Pick<LeaseQuery, 'subject' | 'role' | 'task' | 'agent'>;
export const BULK_FIELDS = ['subject', 'role', 'task', 'agent'] as const;
export type BulkField = (typeof BULK_FIELDS)[number];
/** Each bulk selector read as POST /v1/revocations reads it. */
export const BULK_SCHEMAS = { subject: SubjectSchema, role: NameParam, task: TaskIdSchema, agent: NameParam } as const;

export function LeasesPage(props: {
  dev: boolean;
  viewer: Viewer;
  query: LeaseQuery;
  leases: Lease[];
  failed: Lease[];
  next: string | null;
  now: Date;
  notice?: LeaseNotice;
  /** After a bulk revocation: how many leases moved to revoking. */
  revoked?: number;
}) {
  const q = props.query;
  const notice = props.notice ? LEASE_NOTICES[props.notice] : undefined;
  return (
    <Layout title="Leases" dev={props.dev} viewer={props.viewer} active="leases">
      <h1>Leases</h1>
      {notice ? (
        <p class={notice.kind === 'ok' ? 'notice' : 'error'} role={notice.kind === 'ok' ? 'status' : 'alert'}>
          {notice.text}
          {props.notice === 'bulk_revoking' && props.revoked !== undefined ? ` ${props.revoked} ${props.revoked === 1 ? 'lease' : 'leases'} moved to revoking.` : null}
        </p>
      ) : null}
      {props.failed.length > 0 ? (
        <section id="revoke-failed" class="error" role="alert">
          <h2>Revocation failed ({props.failed.length === 100 ? '100 or more' : props.failed.length})</h2>
          <p>The broker could not revoke these credentials at their backend: they may still work. The sweeper retries them slowly.</p>
          <LeaseTable leases={props.failed} now={props.now} detail />
        </section>
      ) : null}
      <form method="get" action="/console/leases" class="filter">
        <label>
          Status{' '}
          <select name="status">
            <option value="" selected={!q.status}>
              any
            </option>
            {LEASE_STATUSES.map((s) => (
              <option value={s} selected={s === q.status}>
                {s}
              </option>
            ))}
          </select>
        </label>{' '}
        <label>
          Task <input name="task" value={q.task ?? ''} maxlength={200} autocomplete="off" />
        </label>{' '}
        <label>
          Subject <input name="subject" value={q.subject ?? ''} maxlength={1024} autocomplete="off" />
        </label>{' '}
        <label>
          Role <input name="role" value={q.role ?? ''} maxlength={63} autocomplete="off" />
        </label>{' '}
        <label>
          Backend <input name="backend" value={q.backend ?? ''} maxlength={63} autocomplete="off" />
        </label>{' '}
        <label>
          Agent <input name="agent" value={q.agent ?? ''} maxlength={63} autocomplete="off" />
        </label>{' '}
        <button type="submit">Filter</button>{' '}
        {/* The same fields, sent to the confirmation page: it counts before anything is revoked. */}
        <button type="submit" formaction="/console/leases/bulk-revoke" class="deny">
          Revoke all matching…
        </button>
      </form>
      <section id="lease-list">
        <LeaseTable leases={props.leases} now={props.now} csrf={props.viewer.csrf} query={q} detail />
        {props.next ? (
          <a class="older" href={`/console/leases${queryString(q, { cursor: props.next })}`}>
            Older leases
          </a>
        ) : null}
      </section>
    </Layout>
  );
}

/**
 * The bulk revocation's confirmation: how many active leases the filter matches now (counted as
 * leases.bulkRevoke selects them), and the form that revokes them with a reason.
 */
export function BulkRevokePage(props: { dev: boolean; viewer: Viewer; filter: BulkFilter; invalid: BulkField[]; count: number; sample: Lease[]; now: Date }) {
  const f = props.filter;
  const named = BULK_FIELDS.filter((k) => f[k] !== undefined);
  return (
    <Layout title="Bulk revoke" dev={props.dev} viewer={props.viewer} active="leases">
      <h1>Revoke matching leases</h1>
      {props.invalid.length > 0 ? (
        <p class="error" role="alert">
          The filter's {props.invalid.join(' and ')} cannot name any lease (not a valid {props.invalid.length === 1 ? 'value' : 'values'}): nothing will be revoked. Correct the filter.
        </p>
      ) : named.length === 0 ? (
        <p class="error" role="alert">
          {LEASE_NOTICES.bulk_filter_required.text}
        </p>
      ) : (
        <>
          <p>
            Every active lease with{' '}
            {named.map((k, i) => (
              <>
                {i > 0 ? ' and ' : ''}
                {k} <code>{f[k]}</code>
              </>
            ))}
            :{' '}
            <strong id="bulk-count" data-count={String(props.count)}>
              {props.count} active {props.count === 1 ? 'lease' : 'leases'}
            </strong>{' '}
            will be revoked.
          </p>
          {props.count > 0 ? (
            <form method="post" action="/console/leases/bulk-revoke" class="decide">
              <input type="hidden" name="csrf" value={props.viewer.csrf} />
              {named.map((k) => (
                <input type="hidden" name={k} value={f[k]} />
              ))}
              <input name="reason" required maxlength={500} placeholder="Reason" aria-label="Reason" autocomplete="off" />
              <button type="submit" class="deny">
                Revoke {props.count} {props.count === 1 ? 'lease' : 'leases'}
              </button>
            </form>
          ) : (
            <p class="empty">Nothing to revoke.</p>
          )}
          {props.sample.length > 0 ? (
            <>
              <h2>{props.sample.length < props.count ? `The newest ${props.sample.length}` : 'They are'}</h2>
              <LeaseTable leases={props.sample} now={props.now} detail />
            </>
          ) : null}
        </>
      )}
      <p>
        <a href={`/console/leases${queryString(f)}`}>Back to the leases</a>
      </p>
    </Layout>
  );
}
