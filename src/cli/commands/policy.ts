import type { Command } from 'commander';
import { CliError, type CliContext } from '../command.js';
import { connect, fields, remote, remoteCall, show, type RemoteOptions } from '../remote.js';

/** `policy explain`: the broker's dry run of a credential request (POST /v1/policy/evaluate). */
export function registerPolicy(program: Command, cli: CliContext): void {
  const policy = program.command('policy').description('ask the broker about its policy (admin)').helpCommand(false);
  remote(policy.command('explain').summary('explain a decision without issuing (admin)'))
    .description("explain the broker's decision for an identity, task and role, without issuing anything (admin; audited)")
    .requiredOption('--subject <subject>', "the agent's subject")
    .option('--issuer <name>', "the agent's issuer (default: the task's agent issuer, else the only issuer)")
    .requiredOption('--task <id>', 'the task')
    .requiredOption('--role <name>', 'the role')
    .option('--claim <name=json>', 'a claim of the identity token, as JSON or a string (repeatable)', collectClaim, {})
    .action((options: RemoteOptions & { subject: string; issuer?: string; task: string; role: string; claim: Record<string, unknown> }) =>
      remoteCall(async () => {
        const client = await connect(cli, options);
        const { unwrap } = await import('../../client/index.js');
        const issuer = options.issuer ?? (await defaultIssuer(client, options.task));
        const identity = { issuer, subject: options.subject, claims: options.claim };
        const result = unwrap(await client.api.POST('/v1/policy/evaluate', { body: { identity, task: options.task, role: options.role } }));
        // A denial is an answer, not a failure of the command: exit 0 either way, the decision on the first line.
        show(cli, options, result, (r) =>
          fields([
            ['decision', r.decision],
            ['code', r.code],
            ['reason', r.reason],
            ['ttl', r.ttl_seconds === undefined ? undefined : `${r.ttl_seconds}s`],
            ['required by', r.required_by],
            ['conflicts with', r.conflicts_with],
          ].filter(([, value]) => value !== undefined) as [string, unknown][]),
        );
      }),
    );
}

function collectClaim(value: string, claims: Record<string, unknown>): Record<string, unknown> {
  const eq = value.indexOf('=');
  const name = eq > 0 ? value.slice(0, eq) : value;
  const raw = eq > 0 ? value.slice(eq + 1) : 'true';
  let parsed: unknown = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // Not JSON: the string itself.
  }
  return { ...claims, [name]: parsed };
}

/** The task's agent issuer when the caller may read the task; the issuer must otherwise be given. */
async function defaultIssuer(client: Awaited<ReturnType<typeof connect>>, task: string): Promise<string> {
  const found = await client.tasks.get(task).catch(() => undefined);
  const issuer = found?.task.agent.issuer;
  if (!issuer) throw new CliError('pass --issuer: the task names no agent issuer, or you may not read it');
  return issuer;
}
