// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Agent } from '../../agents/registry.js';
import type { AgentReview, AgentUse } from '../../agents/review.js';
import { REVIEW_DAYS } from '../../agents/review.js';
import type { AgentSuspension } from '../../db/schema.js';
import { Time } from './approvals.js';
import { Layout, type Viewer } from './layout.js';
import { LeaseTable } from './leases.js';

/** What a notice code says: fixed sentences, never text from the request. */
export const AGENT_NOTICES = {
  suspended: { kind: 'ok', text: 'Suspended. Its active leases are being revoked and it can get no credential until it is resumed.' },
  resumed: { kind: 'ok', text: 'Resumed. The agent may ask for credentials again.' },
  reason_required: { kind: 'error', text: 'Give a reason (up to 500 characters, no control characters).' },
  not_admin: { kind: 'error', text: 'An admin suspended this agent: only an admin can resume it.' },
} as const;
export type AgentNotice = keyof typeof AGENT_NOTICES;

export interface AgentRow {
  agent: Agent;
  suspension?: AgentSuspension;
  use?: AgentUse;
  active: number;
  /** The viewer is an admin or one of the agent's owners. */
}

function Notice(props: { notice?: AgentNotice }) {
  const n = props.notice ? AGENT_NOTICES[props.notice] : undefined;
  if (!n) return null;
  return (
    <p class={n.kind === 'ok' ? 'notice' : 'error'} role={n.kind === 'ok' ? 'status' : 'alert'}>
      {n.text}
    </p>
  );
}

function State(props: { suspension?: AgentSuspension; now: Date }) {
  const s = props.suspension;
  if (!s) return <span class="badge ok">in good standing</span>;
  return (
    <span>
      <span class="badge suspended">suspended</span> by {s.suspendedBy} <Time at={s.suspendedAt} now={props.now} />: {s.reason}
    </span>
  );
}

/** The ceiling against what was held: a role never used in the window is reach the agent has and does not need. */
function Ceiling(props: { agent: Agent; use?: AgentUse }) {
  const held = new Map((props.use?.held ?? []).map((h) => [h.role, h.count]));
  return (
    <span class="ceiling">
      {props.agent.roles.map((r) => (
        <code class={held.has(r) ? 'label' : 'label unused'} title={held.has(r) ? `${held.get(r)} credentials in ${REVIEW_DAYS} days` : `not used in ${REVIEW_DAYS} days`}>
          {r}
          {held.has(r) ? ` ×${held.get(r)}` : ' (unused)'}
        </code>
      ))}
    </span>
  );
}

export function AgentsPage(props: { dev: boolean; viewer: Viewer; rows: AgentRow[]; now: Date }) {
  return (
    <Layout title="Agents" dev={props.dev} viewer={props.viewer} active="agents">
      <h1>Agents</h1>
      <p class="muted">
        The registry: who owns each agent, what it is for, its ceiling against what it held in the last {REVIEW_DAYS} days. An admin or an agent's
        owner can suspend it from its page (the kill switch).
      </p>
      {props.rows.length === 0 ? (
        <p class="empty">{props.viewer.admin ? 'No agents are registered.' : "You own no agent: this page lists the agents whose owner principals name you."}</p>
      ) : (
        <table class="grid agents">
          <thead>
            <tr>
              <th>Agent</th>
              <th>Owner</th>
              <th>Purpose</th>
              <th>Ceiling (use in {REVIEW_DAYS} days)</th>
              <th>Active leases</th>
              <th>State</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {props.rows.map((r) => (
              <tr id={`agent-${r.agent.name}`} class={r.suspension ? 'suspended' : undefined}>
                <td>
                  <a href={`/console/agents/${r.agent.name}`}>{r.agent.name}</a>
                </td>
                <td>
                  {r.agent.owner.name} <span class="muted">{r.agent.owner.contact}</span>
                </td>
                <td>{r.agent.purpose}</td>
                <td>
                  <Ceiling agent={r.agent} use={r.use} />
                </td>
                <td>{r.active}</td>
                <td>
                  <State suspension={r.suspension} now={props.now} />
                </td>
                <td>
                  <a class={r.suspension ? 'button' : 'button danger'} href={`/console/agents/${r.agent.name}#switch`}>
                    {r.suspension ? 'Resume…' : 'Suspend…'}
                  </a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Layout>
  );
}

export function AgentPage(props: { dev: boolean; viewer: Viewer; agent: Agent; suspension?: AgentSuspension; review: AgentReview; now: Date; notice?: AgentNotice }) {
  const { agent, suspension, review } = props;
  const action = suspension ? 'resume' : 'suspend';
  return (
    <Layout title={`Agent ${agent.name}`} dev={props.dev} viewer={props.viewer} active="agents">
      <h1>Agent {agent.name}</h1>
      <p>
        <a href="/console/agents">All agents</a>
      </p>
      <Notice notice={props.notice} />
      <section id="switch" class={`switch ${suspension ? 'is-suspended' : ''}`}>
        <p>
          <State suspension={suspension} now={props.now} />
        </p>
        {/* Only an admin or one of the agent's owners gets this page at all (agentService.forAdminOrOwner). */}
        <form method="post" action={`/console/agents/${agent.name}/${action}`} class="decide">
          <input type="hidden" name="csrf" value={props.viewer.csrf} />
          <input name="reason" required maxlength={500} placeholder="Reason (recorded in the audit trail)" aria-label="Reason" autocomplete="off" />
          <button type="submit" class={suspension ? 'approve' : 'deny'}>
            {suspension ? 'Resume' : 'Suspend'}
          </button>
        </form>
      </section>
      <dl>
        <dt>Owner</dt>
        <dd>
          {agent.owner.name} <span class="muted">{agent.owner.contact}</span>
        </dd>
        <dt>Purpose</dt>
        <dd>{agent.purpose}</dd>
        <dt>Identity</dt>
        <dd>
          <code>
            {agent.match.issuer}/{agent.match.subject ?? agent.match.subject_pattern ?? '(by claims)'}
          </code>
        </dd>
        <dt>Ceiling</dt>
        <dd>
          <Ceiling agent={agent} use={review} />
        </dd>
        <dt>Last activity</dt>
        <dd>{review.lastActivity ? <Time at={review.lastActivity} now={props.now} /> : <span class="muted">none</span>}</dd>
        <dt>Declared in</dt>
        <dd>{agent.source === 'config' ? 'the config file' : `the API, by ${agent.createdBy ?? '?'}`}</dd>
      </dl>
      <h2>Active leases ({review.activeCount})</h2>
      <LeaseTable leases={review.active} now={props.now} detail />
      <h2>Suspensions</h2>
      {review.history.length === 0 ? (
        <p class="empty">Never suspended.</p>
      ) : (
        <ul class="history">
          {review.history.map((s) => (
            <li>
              <Time at={s.suspendedAt} now={props.now} /> by {s.suspendedBy}: {s.reason} ({s.revoked} revoked)
              {s.resumedAt ? (
                <>
                  {' '}
                  · resumed <Time at={s.resumedAt} now={props.now} /> by {s.resumedBy}: {s.resumeReason}
                </>
              ) : null}
            </li>
          ))}
        </ul>
      )}
    </Layout>
  );
}
