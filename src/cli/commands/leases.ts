import { type Command, InvalidArgumentError } from 'commander';
import { CliError, parseSeconds, type CliContext } from '../command.js';
import { allPages, connect, fields, remote, remoteCall, show, table, type Column, type RemoteOptions } from '../remote.js';
import type { components } from '../../client/openapi.js';

type AdminLease = components['schemas']['AdminLease'];
const STATUSES = ['active', 'revoking', 'revoked', 'expired', 'released', 'revoke_failed'];

const LEASE_COLUMNS: Column<AdminLease>[] = [
  ['ID', (l) => l.id],
  ['STATUS', (l) => l.status],
  ['ROLE', (l) => l.role],
  ['SUBJECT', (l) => `${l.issuer}/${l.subject}`],
  ['TASK', (l) => l.task],
  ['EXPIRES', (l) => l.expires_at],
];

/** An admin gets an AdminLease; the fields it adds are shown when present. */
const showLease = (lease: components['schemas']['Lease'] & Partial<AdminLease>) =>
  fields([
    ['id', lease.id],
    ['status', lease.status],
    ['reason', lease.reason],
    ['task', lease.task],
    ['role', lease.role],
    ['backend', lease.backend],
    ['identity', `${lease.issuer}/${lease.subject}`],
    ['agent', lease.agent ? `${lease.agent} (owner ${lease.agent_owner})` : null],
    ['issued', lease.issued_at],
    ['expires', lease.expires_at],
    ['backend expires', lease.backend_expires_at],
    ['revocable', lease.revocable],
    ['revoke requested', lease.revoke_requested_at],
    ['ended', lease.ended_at],
    ['revoke attempts', lease.revoke_attempts],
    ['last error', lease.last_error],
  ]);

function parseInstant(value: string): string {
  if (Number.isNaN(Date.parse(value)) || !/^\d{4}-\d{2}-\d{2}T/.test(value)) throw new InvalidArgumentError('Expected an ISO 8601 date-time with an offset (2026-01-31T12:00:00Z).');
  return value;
}

interface Selector {
  task?: string;
  subject?: string;
  role?: string;
  agent?: string;
  issuedBefore?: string;
}

/** Asks `question` on the terminal; true for y/yes. */
async function confirm(question: string): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** `leases list|show|revoke` and the bulk `revoke`: an admin's view of leases on a remote broker. */
export function registerLeases(program: Command, cli: CliContext): void {
  const leases = program.command('leases').description('list, show and revoke leases (admin)').helpCommand(false);

  remote(leases.command('list').summary('list leases, newest first (admin)').description('list leases, newest first, filtered by every option given (admin)'))
    .option('--status <status>', `only leases in this status (${STATUSES.join(', ')})`)
    .option('--task <id>', "only this task's leases")
    .option('--subject <subject>', "only this agent subject's leases")
    .option('--role <name>', 'only leases of this role')
    .option('--backend <name>', 'only leases of this credential backend')
    .option('--agent <name>', "only this registered agent's leases")
    .option('--limit <n>', 'at most this many (default: 100)', parseSeconds)
    .action((options: RemoteOptions & { status?: string; task?: string; subject?: string; role?: string; backend?: string; agent?: string; limit?: number }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const limit = options.limit ?? 100;
        const query = { status: options.status as AdminLease['status'] | undefined, task: options.task, subject: options.subject, role: options.role, backend: options.backend, agent: options.agent };
        const items = await allPages(
          async (cursor) => unwrap(await client.api.GET('/v1/leases', { params: { query: { ...query, cursor, limit: Math.min(limit, 500) } } })),
          limit,
        );
        show(cli, options, items, (rows) => table(rows, LEASE_COLUMNS, '(no leases)'));
      }),
    );

  remote(leases.command('show').summary('show one lease (admin)').description('show one lease, and how its revocation is going (admin)'))
    .argument('<id>', "the lease's id")
    .action((id: string, options: RemoteOptions) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const lease = await client.leases.get(id);
        show(cli, options, { lease }, ({ lease: l }) => showLease(l));
      }),
    );

  remote(leases.command('revoke').summary('force-revoke one lease (admin)').description('force-revoke one lease; revoking it again is harmless (admin)'))
    .argument('<id>', "the lease's id")
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .action((id: string, options: RemoteOptions & { reason: string }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const { lease } = unwrap(await client.api.POST('/v1/leases/{id}/revoke', { params: { path: { id } }, body: { reason: options.reason } }));
        show(cli, options, { lease }, ({ lease: l }) => `lease ${l.id}: ${l.status}`);
      }),
    );

  remote(program.command('revoke').summary('revoke every matching lease (admin)'))
    .description('force-revoke every active lease that matches all the selectors given (admin); shows how many match and asks first')
    .option('--task <id>', "the task's leases")
    .option('--subject <subject>', "the agent subject's leases")
    .option('--role <name>', "the role's leases")
    .option('--agent <name>', "the registered agent's leases")
    .option('--issued-before <time>', 'leases issued at or before this ISO 8601 time', parseInstant)
    .requiredOption('--reason <text>', 'why, for the audit trail')
    .option('-y, --yes', 'do not ask (required when stdin is not a terminal)')
    .action((options: RemoteOptions & Selector & { reason: string; yes?: boolean }) =>
      remoteCall(async () => {
        if (!options.task && !options.subject && !options.role && !options.agent && !options.issuedBefore) {
          throw new CliError('name at least one of --task, --subject, --role, --agent, --issued-before');
        }
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        if (!options.yes) {
          if (!process.stdin.isTTY) throw new CliError('bulk revocation asks for confirmation: pass --yes when stdin is not a terminal');
          // An estimate for the question only: the broker decides what matches, and its answer is printed after.
          const query = { status: 'active' as const, task: options.task, subject: options.subject, role: options.role, agent: options.agent, limit: 500 };
          const active = await allPages(async (cursor) => unwrap(await client.api.GET('/v1/leases', { params: { query: { ...query, cursor } } })));
          const before = options.issuedBefore ? Date.parse(options.issuedBefore) : Infinity;
          const matching = active.filter((l) => Date.parse(l.issued_at) <= before).length;
          if (matching === 0) return cli.report({ code: 0, stderr: 'no active lease matches' });
          if (!(await confirm(`revoke ${matching} active lease${matching === 1 ? '' : 's'}? [y/N] `))) throw new CliError('not confirmed: nothing revoked', 1);
        }
        const body = { task: options.task, subject: options.subject, role: options.role, agent: options.agent, issued_before: options.issuedBefore, reason: options.reason };
        const result = unwrap(await client.api.POST('/v1/revocations', { body }));
        show(cli, options, result, (r) => `revoking ${r.revoking} lease${r.revoking === 1 ? '' : 's'}`);
      }),
    );
}
