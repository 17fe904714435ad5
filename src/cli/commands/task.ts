import type { Command } from 'commander';
import { CliError, type CliContext } from '../command.js';
import { connect, fields, remote, remoteCall, show, table, type Column, type RemoteOptions } from '../remote.js';
import type { Task } from '../../client/index.js';

export interface OpenOptions extends RemoteOptions {
  agent: string;
  issuer?: string;
  role: string[];
  ttl: string;
  label?: string[];
  externalId?: string;
  purpose?: string;
  owner?: string;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Adds the options of a task's opening (`task open`, `task run`). */
function openOptions(command: Command, json = true): Command {
  return remote(command, json)
    .requiredOption('--agent <subject>', "the agent's subject (its identity token's `sub`)")
    .option('--issuer <name>', "the agent's issuer (default: any the role allows)")
    .requiredOption('--role <name>', 'a role the task may use (repeatable)', collect)
    .option('--ttl <duration>', 'how long the task may stay open: 900, 15m, 1h30m', '30m')
    .option('--label <key=value>', 'a label approval rules and scopes match (repeatable)', collect)
    .option('--external-id <id>', 'your own reference: sent again, it answers the task opened first')
    .option('--purpose <text>', 'why the task exists, in a sentence (audited; policies see it)')
    .option('--owner <name>', 'the person or team accountable for it (audited; policies see it)');
}

/** The body of POST /v1/tasks for `options`; a malformed --ttl or --label is a usage error. */
export async function openRequest(options: OpenOptions) {
  const { parseDuration } = await import('../../config/duration.js');
  const ttl = parseDuration(options.ttl);
  if (!ttl) throw new CliError(`--ttl: not a duration: ${options.ttl} (use 900, 15m, 1h)`);
  const labels: Record<string, string> = {};
  for (const label of options.label ?? []) {
    const eq = label.indexOf('=');
    if (eq < 1) throw new CliError(`--label: expected key=value, got ${label}`);
    labels[label.slice(0, eq)] = label.slice(eq + 1);
  }
  return {
    agent: { subject: options.agent, ...(options.issuer ? { issuer: options.issuer } : {}) },
    roles: options.role,
    ttl_seconds: ttl,
    ...(options.label ? { labels } : {}),
    ...(options.externalId ? { external_id: options.externalId } : {}),
    ...(options.purpose ? { purpose: options.purpose } : {}),
    ...(options.owner ? { owner: options.owner } : {}),
  };
}

const agentOf = (t: Task) => (t.agent.issuer ? `${t.agent.issuer}/${t.agent.subject}` : t.agent.subject);

const TASK_COLUMNS: Column<Task>[] = [
  ['ID', (t) => t.id],
  ['STATUS', (t) => t.status],
  ['OUTCOME', (t) => t.outcome],
  ['AGENT', agentOf],
  ['DEADLINE', (t) => t.deadline],
];

const showTask = (task: Task) =>
  fields([
    ['id', task.id],
    ['external id', task.external_id],
    ['status', task.status],
    ['outcome', task.outcome],
    ['agent', agentOf(task)],
    ['roles', task.roles.join(', ')],
    ['labels', Object.entries(task.labels).map(([k, v]) => `${k}=${v}`).join(', ') || null],
    ['purpose', task.purpose],
    ['owner', task.owner],
    ['opened by', task.created_by],
    ['opened', task.created_at],
    ['deadline', task.deadline],
    ['completed', task.completed_at],
  ]);

/**
 * `task run|open|complete|show|list` (also spelled `tasks`): the orchestrator's side.
 * The API lists tasks only by external id, so `list` needs --external-id.
 */
export function registerTask(program: Command, cli: CliContext): void {
  const task = program.command('task').alias('tasks').description("open, run and complete tasks (orchestrators)").helpCommand(false);

  openOptions(task.command('run').summary('run a command inside a task'), false)
    .description(
      'open a task, run <command> with TASKLEASE_TASK and TASKLEASE_URL set, and complete the task when it exits ' +
        '(succeeded on exit 0, else failed; also on SIGINT/SIGTERM, and before the deadline, when the command is sent SIGTERM); ' +
        "exit with the command's status",
    )
    .argument('<command>', 'the command to run (after --)')
    .argument('[args...]', 'its arguments')
    .action((command: string, args: string[], options: OpenOptions) =>
      remoteCall(async () => (await import('../task-run.js')).runTask(cli, options, [command, ...args])),
    );

  openOptions(task.command('open').summary('open a task and print its id'))
    .description('open a task and print its id on stdout (--json: the whole task)')
    .action((options: OpenOptions) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const opened = await client.tasks.open(await openRequest(options));
        cli.report({ code: 0, stdout: options.json ? JSON.stringify({ task: opened }, null, 2) : opened.id });
      }),
    );

  remote(task.command('complete').summary('complete a task, revoking its leases'))
    .argument('<id>', "the task's id")
    .option('--outcome <text>', 'how it ended (succeeded, failed, or your own word)', 'succeeded')
    .action((id: string, options: RemoteOptions & { outcome: string }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const result = await client.tasks.complete(id, options.outcome);
        show(cli, options, result, (r) => `task ${r.task.id} completed (${r.task.outcome}): revoking ${r.revoking} lease${r.revoking === 1 ? '' : 's'}`);
      }),
    );

  remote(task.command('show').summary('show a task and its leases'))
    .argument('<id>', "the task's id")
    .action((id: string, options: RemoteOptions) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const result = await client.tasks.get(id);
        show(cli, options, result, (r) =>
          [
            showTask(r.task),
            '',
            table(r.leases, [
              ['LEASE', (l) => l.id],
              ['STATUS', (l) => l.status],
              ['ROLE', (l) => l.role],
              ['EXPIRES', (l) => l.expires_at],
            ], '(no leases)'),
          ].join('\n'),
        );
      }),
    );

  remote(task.command('list').summary('find your task by its external id'))
    .description('list your tasks with this external id (the API lists tasks by external id only)')
    .requiredOption('--external-id <id>', 'your own reference for the task')
    .action((options: RemoteOptions & { externalId: string }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const result = unwrap(await client.api.GET('/v1/tasks', { params: { query: { external_id: options.externalId } } }));
        show(cli, options, result.items, (rows) => table(rows, TASK_COLUMNS, '(no task)'));
      }),
    );
}
