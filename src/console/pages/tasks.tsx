// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Lease, Task } from '../../db/schema.js';
import { Labels, Time } from './approvals.js';
import { Layout, type Viewer } from './layout.js';
import { LeaseTable } from './leases.js';

export const TASK_NOTICES = {
  completed: { kind: 'ok', text: 'Task completed: its active leases are being revoked.' },
  outcome_required: { kind: 'error', text: 'Give an outcome (up to 64 characters, no control characters) to complete the task.' },
} as const;
export type TaskNotice = keyof typeof TASK_NOTICES;

export const TASK_FILTERS = ['open', 'completed', 'all'] as const;
export type TaskFilter = (typeof TASK_FILTERS)[number];

export interface TaskRow {
  task: Task;
  leases: { active: number; total: number };
}

const agentOf = (task: Task) => `${task.agentIssuer ? `${task.agentIssuer}/` : ''}${task.agentSubject}`;
const taskHref = (id: string) => `/console/tasks/${encodeURIComponent(id)}`;

function Status(props: { task: Task; now: Date }) {
  const { task } = props;
  if (task.status === 'completed') return <span class="badge completed">completed</span>;
  // An open task past its deadline issues nothing more; the sweeper revokes what it still holds.
  return task.deadline <= props.now ? <span class="badge expired">past deadline</span> : <span class="badge active">open</span>;
}

export function TasksPage(props: { dev: boolean; viewer: Viewer; filter: TaskFilter; rows: TaskRow[]; next: string | null; now: Date }) {
  return (
    <Layout title="Tasks" dev={props.dev} viewer={props.viewer} active="tasks">
      <h1>Tasks</h1>
      <p class="muted">{props.viewer.admin ? 'Every task.' : 'The tasks you opened, and those whose labels match your scopes.'}</p>
      <nav class="filters">
        {TASK_FILTERS.map((f) => (
          <a href={`/console/tasks?status=${f}`} class={f === props.filter ? 'active' : undefined}>
            {f}
          </a>
        ))}
      </nav>
      {props.rows.length === 0 ? (
        <p class="empty">No tasks.</p>
      ) : (
        <table class="grid tasks">
          <thead>
            <tr>
              <th>Task</th>
              <th>Status</th>
              <th>Agent</th>
              <th>Roles</th>
              <th>Labels</th>
              <th>Opened</th>
              <th>Deadline</th>
              <th>Leases</th>
            </tr>
          </thead>
          <tbody>
            {props.rows.map(({ task, leases }) => (
              <tr id={`task-${task.id}`} data-id={task.id}>
                <td>
                  <a href={taskHref(task.id)}>
                    <code>{task.id}</code>
                  </a>
                  {task.externalId ? <div class="muted">{task.externalId}</div> : null}
                </td>
                <td>
                  <Status task={task} now={props.now} />
                </td>
                <td>{agentOf(task)}</td>
                <td>{task.roles.join(', ')}</td>
                <td>
                  <Labels labels={task.labels} />
                </td>
                <td>
                  <Time at={task.createdAt} now={props.now} /> <span class="muted">by {task.createdBy}</span>
                </td>
                <td>
                  <Time at={task.deadline} now={props.now} />
                </td>
                <td>
                  {leases.active} active / {leases.total}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {props.next ? (
        <a class="older" href={`/console/tasks?status=${props.filter}&cursor=${encodeURIComponent(props.next)}`}>
          Older tasks
        </a>
      ) : null}
    </Layout>
  );
}

export function TaskPage(props: { dev: boolean; viewer: Viewer; task: Task; leases: Lease[]; now: Date; notice?: TaskNotice }) {
  const { task } = props;
  const notice = props.notice ? TASK_NOTICES[props.notice] : undefined;
  return (
    <Layout title={`Task ${task.id}`} dev={props.dev} viewer={props.viewer} active="tasks">
      <h1>
        Task <code>{task.id}</code>
      </h1>
      {notice ? (
        <p class={notice.kind === 'ok' ? 'notice' : 'error'} role={notice.kind === 'ok' ? 'status' : 'alert'}>
          {notice.text}
        </p>
      ) : null}
      <dl>
        <dt>Status</dt>
        <dd>
          <Status task={task} now={props.now} />
          {task.outcome ? <span> outcome: {task.outcome}</span> : null}
          {task.completedAt ? (
            <span class="muted">
              {' '}
              (<Time at={task.completedAt} now={props.now} />)
            </span>
          ) : null}
        </dd>
        <dt>Agent</dt>
        <dd>{agentOf(task)}</dd>
        <dt>Roles</dt>
        <dd>{task.roles.join(', ')}</dd>
        <dt>Labels</dt>
        <dd>
          <Labels labels={task.labels} />
        </dd>
        <dt>Opened</dt>
        <dd>
          <Time at={task.createdAt} now={props.now} /> by {task.createdBy}
        </dd>
        <dt>Deadline</dt>
        <dd>
          <Time at={task.deadline} now={props.now} />
        </dd>
        <dt>External id</dt>
        <dd>{task.externalId ?? <span class="muted">none</span>}</dd>
        <dt>Lease limit</dt>
        <dd>{task.maxLeases ?? <span class="muted">none</span>}</dd>
        <dt>Purpose</dt>
        <dd>{task.purpose ?? <span class="muted">not given</span>}</dd>
        <dt>Owner</dt>
        <dd>{task.owner ?? <span class="muted">not given</span>}</dd>
      </dl>
      {task.status === 'open' ? (
        <section id="complete">
          <h2>Complete the task</h2>
          <p class="muted">Closes the task and revokes every active lease it holds.</p>
          <form method="post" action={`${taskHref(task.id)}/complete`} class="decide">
            <input type="hidden" name="csrf" value={props.viewer.csrf} />
            <input name="outcome" required maxlength={64} placeholder="Outcome" aria-label="Outcome" autocomplete="off" />
            <button type="submit" class="deny">
              Complete
            </button>
          </form>
        </section>
      ) : null}
      <h2>Leases ({props.leases.length})</h2>
      <LeaseTable leases={props.leases} now={props.now} csrf={props.viewer.admin ? props.viewer.csrf : undefined} detail={props.viewer.admin} />
    </Layout>
  );
}
