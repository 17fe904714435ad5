import type { Command } from 'commander';
import { parseSeconds, type CliContext } from '../command.js';
import { allPages, connect, fields, remote, remoteCall, show, table, type Column, type RemoteOptions } from '../remote.js';
import type { Approval } from '../../client/index.js';

const STATUSES = ['pending', 'approved', 'denied', 'expired', 'redeemed'] as const;

const COLUMNS: Column<Approval>[] = [
  ['ID', (a) => a.id],
  ['STATUS', (a) => a.status],
  ['ROLE', (a) => a.role],
  ['REQUESTER', (a) => `${a.requester.issuer}/${a.requester.subject}`],
  ['TASK', (a) => a.task],
  ['REQUIRED BY', (a) => a.required_by],
  ['EXPIRES', (a) => a.expires_at],
];

const showApproval = (a: Approval) =>
  fields([
    ['id', a.id],
    ['status', a.status],
    ['task', a.task],
    ['role', a.role],
    ['requester', `${a.requester.issuer}/${a.requester.subject}`],
    ['required by', a.required_by],
    ['requested ttl', a.requested_ttl_seconds === null ? null : `${a.requested_ttl_seconds}s`],
    ['created', a.created_at],
    ['expires', a.expires_at],
    ['decided by', a.decided_by],
    ['decided', a.decided_at],
    ['reason', a.decision_reason],
    ['lease', a.lease],
  ]);

/** `approvals list|show|approve|deny`: what an approver may decide, on a remote broker. */
export function registerApprovals(program: Command, cli: CliContext): void {
  const approvals = program.command('approvals').description('list and decide approval requests (approvers)').helpCommand(false);

  remote(approvals.command('list').summary('list approval requests you may decide'))
    .description('list the approval requests you may decide, newest first (default: the pending ones)')
    .option('--status <status>', `requests in this status (${STATUSES.join(', ')}, or all)`, 'pending')
    .option('--limit <n>', 'at most this many (default: 100)', parseSeconds)
    .action((options: RemoteOptions & { status: string; limit?: number }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const limit = options.limit ?? 100;
        const status = options.status === 'all' ? undefined : (options.status as Approval['status']);
        const items = await allPages(
          async (cursor) => unwrap(await client.api.GET('/v1/approvals', { params: { query: { status, cursor, limit: Math.min(limit, 500) } } })),
          limit,
        );
        show(cli, options, items, (rows) => table(rows, COLUMNS, '(no approval requests)'));
      }),
    );

  remote(approvals.command('show').summary('show one approval request'))
    .argument('<id>', "the request's id")
    .action((id: string, options: RemoteOptions) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const result = unwrap(await client.api.GET('/v1/approvals/{id}', { params: { path: { id } } }));
        show(cli, options, result, ({ approval }) => showApproval(approval));
      }),
    );

  for (const verdict of ['approve', 'deny'] as const) {
    remote(approvals.command(verdict).summary(`${verdict} a pending request`))
      .argument('<id>', "the request's id")
      .requiredOption('--reason <text>', 'why, for the requester and the audit trail')
      .action((id: string, options: RemoteOptions & { reason: string }) =>
        remoteCall(async () => {
          const client = await connect(cli, options);
          const { unwrap } = await import('../../client/index.js');
          const path = verdict === 'approve' ? '/v1/approvals/{id}/approve' : '/v1/approvals/{id}/deny';
          const result = unwrap(await client.api.POST(path, { params: { path: { id } }, body: { reason: options.reason } }));
          show(cli, options, result, ({ approval }) => `approval ${approval.id}: ${approval.status}`);
        }),
      );
  }
}
