// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Approval } from '../../db/schema.js';
import type { Agent } from '../../agents/registry.js';
import type { RoleConfig } from '../../config/schema.js';
import { Layout, type Viewer } from './layout.js';

export const STATUS_FILTERS = ['pending', 'approved', 'denied', 'expired', 'redeemed', 'all'] as const;
export type StatusFilter = (typeof STATUS_FILTERS)[number];

/** What a notice code says: the page shows fixed sentences, never text from the request. */
export const NOTICES = {
  approved: { kind: 'ok', text: 'Approved. The agent may now redeem its request.' },
  denied: { kind: 'ok', text: 'Denied. The agent is told so when it asks again.' },
  self_approval: { kind: 'error', text: 'You asked for this credential yourself: someone else must decide it.' },
  approval_not_pending: { kind: 'error', text: 'This request is no longer pending: it was decided elsewhere or it expired.' },
  approval_not_found: { kind: 'error', text: 'No such request among those you may decide.' },
  reason_required: { kind: 'error', text: 'Give a reason (up to 500 characters, no control characters) for the decision.' },
} as const;
export type Notice = keyof typeof NOTICES;

export interface ApprovalItem {
  approval: Approval;
  task?: { id: string; externalId: string | null; labels: Record<string, string>; status: string; deadline: Date; purpose: string | null; owner: string | null };
  role?: RoleConfig;
  /** The task's active leases: what it already holds. */
  held?: { id: string; role: string; expiresAt: Date }[];
  /** The registered agents the requester's issuer and subject could be (one, when the registry is unambiguous). */
  agents?: Agent[];
}

/** `in 4m`, `3h ago`: deciding in seconds needs relative times; the exact one is in the title. */
export function relative(at: Date, now: Date): string {
  const s = Math.round((at.getTime() - now.getTime()) / 1000);
  const abs = Math.abs(s);
  if (abs < 5) return 'just now';
  const text = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m` : abs < 172800 ? `${Math.round(abs / 3600)}h` : `${Math.round(abs / 86400)}d`;
  return s >= 0 ? `in ${text}` : `${text} ago`;
}

export const Time = (props: { at: Date; now: Date }) => <time datetime={props.at.toISOString()} title={props.at.toISOString()}>{relative(props.at, props.now)}</time>;

/** What the role grants, in one line: its backend and what the credential will carry. */
function Grants(props: { role?: RoleConfig }) {
  const r = props.role;
  if (!r) return <span class="muted">role no longer configured</span>;
  const parts = [`backend ${r.backend}`];
  if (r.jwt?.audience) parts.push(`audience ${r.jwt.audience}`);
  if (r.jwt?.scope) parts.push(`scope "${r.jwt.scope}"`);
  if (r.aws) parts.push(`AWS role ${r.aws.role_arn}${r.aws.session_policy ? ' (with a session policy)' : ''}`);
  if (r.vault) parts.push(r.vault.mode === 'dynamic' ? `Vault ${r.vault.path}` : `Vault token, policies ${r.vault.policies.join(', ')}`);
  return <span>{parts.join(' · ')}</span>;
}

export function Labels(props: { labels: Record<string, string> }) {
  const entries = Object.entries(props.labels);
  if (entries.length === 0) return <span class="muted">no labels</span>;
  return (
    <span class="labels">
      {entries.map(([k, v]) => (
        <code class="label">
          {k}={v}
        </code>
      ))}
    </span>
  );
}

/** One request; `back` is where the decide form returns ('detail': this request's own page). */
export function Item(props: { item: ApprovalItem; now: Date; csrf: string; back?: 'detail' }) {
  const { approval: a, task, role, held = [], agents = [] } = props.item;
  const ttl = a.requestedTtl ?? role?.ttl;
  return (
    <li class={`approval status-${a.status}`} id={`approval-${a.id}`} data-id={a.id}>
      <div class="head">
        <a class="permalink" href={`/console/approvals/${a.id}`} title="This request's own page">
          #
        </a>{' '}
        <strong class="who">
          {a.issuer}/{a.subject}
        </strong>{' '}
        asks for <strong class="role">{a.role}</strong> <span class={`badge ${a.status}`}>{a.status}</span>
      </div>
      <dl>
        <dt>Grants</dt>
        <dd>
          <Grants role={role} />
          {ttl !== undefined ? ` · for ${ttl}s${a.requestedTtl === null ? ' (the role default)' : ''}` : ''}
        </dd>
        <dt>Agent</dt>
        <dd>
          {agents.length === 0 ? (
            <span class="muted">no registered agent</span>
          ) : (
            agents.map((agent) => (
              <span class="agent">
                <strong>{agent.name}</strong> · owner {agent.owner.name} <span class="muted">{agent.owner.contact}</span> · {agent.purpose}
                {agent.match.claims ? (
                  <>
                    {' '}
                    · when <Labels labels={Object.fromEntries(Object.entries(agent.match.claims).map(([k, v]) => [k, String(v)]))} />
                  </>
                ) : null}
              </span>
            ))
          )}
        </dd>
        <dt>Task</dt>
        <dd>
          <code>{a.taskId}</code>
          {task?.externalId ? <span class="muted"> ({task.externalId})</span> : null} {task ? <Labels labels={task.labels} /> : null}
          {task?.purpose ? <div>Purpose: {task.purpose}</div> : null}
          {task?.owner ? <div>Owner: {task.owner}</div> : null}
        </dd>
        <dt>Task holds</dt>
        <dd>
          {held.length === 0 ? (
            <span class="muted">no active lease</span>
          ) : (
            held.map((l) => (
              <span class="held">
                <code>{l.role}</code> <span class="muted">(expires <Time at={l.expiresAt} now={props.now} />)</span>{' '}
              </span>
            ))
          )}
        </dd>
        <dt>Why approval</dt>
        <dd>{a.requiredBy}</dd>
        <dt>Asked</dt>
        <dd>
          <Time at={a.createdAt} now={props.now} />
        </dd>
        {a.status === 'pending' || a.status === 'approved' || a.status === 'expired' ? (
          <>
            <dt>{a.status === 'expired' ? 'Expired' : 'Expires'}</dt>
            <dd>
              <Time at={a.expiresAt} now={props.now} />
            </dd>
          </>
        ) : null}
        {a.decidedBy ? (
          <>
            <dt>Decided</dt>
            <dd>
              by {a.decidedBy}
              {a.decidedAt ? (
                <>
                  {' '}
                  <Time at={a.decidedAt} now={props.now} />
                </>
              ) : null}
              : {a.decisionReason}
            </dd>
          </>
        ) : null}
      </dl>
      {a.status === 'pending' ? (
        <form method="post" action={`/console/approvals/${a.id}/decide`} class="decide">
          <input type="hidden" name="csrf" value={props.csrf} />
          {props.back ? <input type="hidden" name="back" value={props.back} /> : null}
          <input name="reason" required maxlength={500} placeholder="Reason (recorded in the audit trail)" aria-label="Reason" autocomplete="off" />
          <button type="submit" name="verdict" value="approve" class="approve">
            Approve
          </button>
          <button type="submit" name="verdict" value="deny" class="deny">
            Deny
          </button>
        </form>
      ) : null}
    </li>
  );
}

export function ApprovalsPage(props: { dev: boolean; viewer: Viewer; status: StatusFilter; items: ApprovalItem[]; next: string | null; now: Date; notice?: Notice }) {
  const notice = props.notice ? NOTICES[props.notice] : undefined;
  return (
    <Layout title="Approvals" dev={props.dev} viewer={props.viewer} active="approvals">
      <h1>Approvals</h1>
      <form method="get" action="/console/approvals" class="filter">
        <label>
          Show{' '}
          <select name="status">
            {STATUS_FILTERS.map((s) => (
              <option value={s} selected={s === props.status}>
                {s}
              </option>
            ))}
          </select>
        </label>{' '}
        <button type="submit">Filter</button>
      </form>
      {notice ? (
        <p class={notice.kind === 'ok' ? 'notice' : 'error'} role={notice.kind === 'ok' ? 'status' : 'alert'}>
          {notice.text}
        </p>
      ) : null}
      <section id="approval-list" data-live="/console/approvals/events">
        {props.items.length === 0 ? (
          <p class="empty">{props.status === 'pending' ? 'Nothing waits for a decision.' : 'No requests match.'}</p>
        ) : (
          <ol class="approvals">
            {props.items.map((item) => (
              <Item item={item} now={props.now} csrf={props.viewer.csrf} />
            ))}
          </ol>
        )}
        {props.next ? (
          <a class="older" href={`/console/approvals?status=${props.status}&cursor=${props.next}`}>
            Older requests
          </a>
        ) : null}
      </section>
    </Layout>
  );
}

/** One request's own page: where the webhook notifier's link lands, with the same decide form. */
export function ApprovalPage(props: { dev: boolean; viewer: Viewer; item: ApprovalItem; now: Date; notice?: Notice }) {
  const notice = props.notice ? NOTICES[props.notice] : undefined;
  return (
    <Layout title="Approval" dev={props.dev} viewer={props.viewer} active="approvals">
      <h1>Request {props.item.approval.id}</h1>
      <p>
        <a href="/console/approvals">All requests</a>
      </p>
      {notice ? (
        <p class={notice.kind === 'ok' ? 'notice' : 'error'} role={notice.kind === 'ok' ? 'status' : 'alert'}>
          {notice.text}
        </p>
      ) : null}
      <ol class="approvals">
        <Item item={props.item} now={props.now} csrf={props.viewer.csrf} back="detail" />
      </ol>
    </Layout>
  );
}
