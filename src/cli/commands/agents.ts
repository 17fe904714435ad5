import type { Command } from 'commander';
import { CliError, type CliContext } from '../command.js';
import { connect, fields, remote, remoteCall, show, table, type Column, type RemoteOptions } from '../remote.js';
import type { components } from '../../client/openapi.js';

type Agent = components['schemas']['Agent'];
type AgentReview = components['schemas']['AgentReview'];
type Suspension = components['schemas']['Suspension'];
type AdminLease = components['schemas']['AdminLease'];

/** How many of an agent's active leases `agents show` prints; --json has all the broker sent. */
const NEWEST_LEASES = 5;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const list = (items: readonly string[]) => (items.length ? items.join(',') : '-');
const held = (h: { role: string; count: number }[] | undefined) => (h?.length ? h.map((r) => `${r.role} (${r.count})`).join(', ') : '-');
/** `issuer/subject`, as leases show an identity; a pattern says so. */
const ruleOf = (s: Suspension) => (s.rule ? `${s.rule.issuer}/${s.rule.subject ?? `${s.rule.subject_pattern} (pattern)`}` : null);
const suspendedState = (s: Suspension | null) => (s ? `since ${s.suspended_at} by ${s.suspended_by}: ${s.reason}` : 'no');

const COLUMNS: Column<Agent>[] = [
  ['NAME', (a) => a.name],
  ['OWNER', (a) => a.owner.name],
  ['CEILING', (a) => list(a.roles)],
  ['SUSPENDED', (a) => (a.suspension ? 'yes' : 'no')],
];
const UNUSED_COLUMNS: Column<Agent>[] = [...COLUMNS, ['HELD (30d)', (a) => held(a.held)], ['UNUSED', (a) => list(a.unused_roles ?? [])]];

const LEASE_COLUMNS: Column<AdminLease>[] = [
  ['ID', (l) => l.id],
  ['ROLE', (l) => l.role],
  ['SUBJECT', (l) => `${l.issuer}/${l.subject}`],
  ['TASK', (l) => l.task],
  ['ISSUED', (l) => l.issued_at],
];

const SUSPENSION_COLUMNS: Column<Suspension>[] = [
  ['ID', (s) => s.id],
  ['SUSPENDED', (s) => s.suspended_at],
  ['BY', (s) => s.suspended_by],
  ['REASON', (s) => s.reason],
  ['RESUMED', (s) => s.resumed_at],
  ['RESUME REASON', (s) => s.resume_reason],
];

const RULE_COLUMNS: Column<Suspension>[] = [
  ['ID', (s) => s.id],
  ['RULE', (s) => ruleOf(s)],
  ['SUSPENDED', (s) => s.suspended_at],
  ['BY', (s) => s.suspended_by],
  ['REASON', (s) => s.reason],
];

function showReview(a: AgentReview): string {
  const { count, items } = a.active_leases;
  const newest = items.slice(0, NEWEST_LEASES);
  const more = count - newest.length;
  return [
    fields([
      ['name', a.name],
      ['source', a.source],
      ['purpose', a.purpose],
      ['owner', `${a.owner.name} <${a.owner.contact}>`],
      ['match', a.match],
      ['ceiling', list(a.roles)],
      ['held (30d)', held(a.held)],
      ['unused roles', list(a.unused_roles)],
      ['last activity', a.last_activity],
      ['active leases', count],
      ['suspended', suspendedState(a.suspension)],
    ]),
    `\nnewest active leases:\n${table(newest, LEASE_COLUMNS)}${more > 0 ? `\n(and ${more} more: tasklease leases list --agent ${a.name} --status active)` : ''}`,
    `\nsuspensions, newest first:\n${table(a.suspensions, SUSPENSION_COLUMNS)}`,
  ].join('\n');
}

interface SuspendOptions extends RemoteOptions {
  reason: string;
  issuer?: string;
  subject?: string;
  subjectPattern?: string;
}

/** The identity rule of `agents suspend --issuer ...`, or undefined when an agent is named instead. */
function ruleFrom(name: string | undefined, options: SuspendOptions) {
  const { issuer, subject, subjectPattern } = options;
  if (name !== undefined) {
    if (issuer || subject || subjectPattern) throw new CliError('name an agent or give --issuer with --subject or --subject-pattern, not both');
    return undefined;
  }
  if (!issuer) throw new CliError('name an agent, or suspend by identity rule with --issuer and --subject or --subject-pattern');
  if (!subject === !subjectPattern) throw new CliError('a suspension by rule takes exactly one of --subject and --subject-pattern');
  return { issuer, ...(subject ? { subject } : { subject_pattern: subjectPattern! }) };
}

/** `agents list|show|suspend|resume|suspensions|lift`: the agent registry's review and its intervention point, on a remote broker. */
export function registerAgents(program: Command, cli: CliContext): void {
  const agents = program.command('agents').description("review registered agents; suspend and resume them (admin, or an agent's owner)").helpCommand(false);

  remote(agents.command('list').summary('list registered agents (admin)'))
    .description('list the registered agents by name: owner, ceiling, suspended or not (admin)')
    .option('--unused-roles', 'only agents whose ceiling is wider than what they held in 30 days, with what they left unused')
    .action((options: RemoteOptions & { unusedRoles?: boolean }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const query = options.unusedRoles ? { unused_roles: 'true' as const } : {};
        const { items } = unwrap(await client.api.GET('/v1/agents', { params: { query } }));
        const none = options.unusedRoles ? '(no agent has a role it did not use)' : '(no agents)';
        show(cli, options, items, (rows) => table(rows, options.unusedRoles ? UNUSED_COLUMNS : COLUMNS, none));
      }),
    );

  remote(agents.command('show').summary("review one agent (admin or its owner)"))
    .description("review one agent: its ceiling against what it held in 30 days, last activity, active leases, suspensions (admin or the agent's owner)")
    .argument('<name>', "the agent's name")
    .action((name: string, options: RemoteOptions) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const result = unwrap(await client.api.GET('/v1/agents/{name}', { params: { path: { name } } }));
        show(cli, options, result, ({ agent }) => showReview(agent));
      }),
    );

  remote(agents.command('suspend').summary('suspend an agent, or identities by rule'))
    .description(
      "suspend an agent: revoke its active leases and refuse its requests from the answer on (admin or the agent's owner); " +
        'or, with --issuer and --subject or --subject-pattern, every identity the rule matches, registered or not (admin)',
    )
    .argument('[name]', "the agent's name (or give an identity rule)")
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .option('--issuer <name>', 'suspend by identity rule: the identities of this issuer')
    .option('--subject <subject>', 'with --issuer: the identity of this subject')
    .option('--subject-pattern <regex>', 'with --issuer: every subject this pattern matches (anchored)')
    .action((name: string | undefined, options: SuspendOptions) =>
      remoteCall(async () => {
        const rule = ruleFrom(name, options);
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        if (rule) {
          const result = unwrap(await client.api.POST('/v1/suspensions', { body: { match: rule, reason: options.reason } }));
          show(cli, options, result, (r) => `suspension ${r.suspension.id} of ${ruleOf(r.suspension)} in force: revoking ${plural(r.revoking, 'lease')}`);
          return;
        }
        const result = unwrap(await client.api.POST('/v1/agents/{name}/suspend', { params: { path: { name: name! } }, body: { reason: options.reason } }));
        show(cli, options, result, (r) => `agent ${name} suspended: revoking ${plural(r.revoking, 'lease')}`);
      }),
    );

  remote(agents.command('resume').summary("end an agent's suspension"))
    .description("end an agent's suspension (admin or the agent's owner)")
    .argument('<name>', "the agent's name")
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .action((name: string, options: RemoteOptions & { reason: string }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const result = unwrap(await client.api.POST('/v1/agents/{name}/resume', { params: { path: { name } }, body: { reason: options.reason } }));
        show(cli, options, result, (r) => (r.suspension ? `agent ${name} resumed` : `agent ${name} was not suspended`));
      }),
    );

  remote(agents.command('suspensions').summary('list suspensions by identity rule (admin)'))
    .description('list the suspensions by identity rule in force, oldest first, with the ids `agents lift` takes (admin)')
    .action((options: RemoteOptions) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const { items } = unwrap(await client.api.GET('/v1/suspensions'));
        show(cli, options, items, (rows) => table(rows, RULE_COLUMNS, '(no suspensions by rule)'));
      }),
    );

  remote(agents.command('lift').summary('lift a suspension by identity rule (admin)'))
    .argument('<id>', "the suspension's id (from `agents suspend --issuer` or `agents suspensions`)")
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .action((id: string, options: RemoteOptions & { reason: string }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const result = unwrap(await client.api.POST('/v1/suspensions/{id}/lift', { params: { path: { id } }, body: { reason: options.reason } }));
        show(cli, options, result, (r) => `suspension ${r.suspension.id} of ${ruleOf(r.suspension)} lifted`);
      }),
    );
}
