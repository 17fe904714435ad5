import type { Command } from 'commander';
import { CliError, type CliContext } from '../command.js';
import { connect, fields, remote, remoteCall, show, type RemoteOptions } from '../remote.js';

/** `policy explain`: the broker's dry run of a credential request (POST /v1/policy/evaluate). */
export function registerPolicy(program: Command, cli: CliContext): void {
  const policy = program.command('policy').description("the broker's policies: validate them here, or ask the broker to explain a decision (admin)").helpCommand(false);
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
            ['policies', r.policies?.join(', ')],
            ['policy set', r.policy_set],
          ].filter(([, value]) => value !== undefined) as [string, unknown][]),
        );
      }),
    );
  policy
    .command('validate')
    .summary("validate the config's policies against the Cedar schema (no broker, no database)")
    .description(
      'compile the roles and approval rules of the config to Cedar, read policy.cedar.files, and validate them all against ' +
        "tasklease's Cedar schema; exits 2 naming each problem's file, line and reason",
    )
    .action(async (_options: unknown, command: Command) => {
      const { cedar } = await cli.policies(await cli.config(command));
      cli.report({ code: 0, stdout: `${cedar.ids.length} policies valid; policy set ${cedar.hash.slice(0, 16)}\n${cedar.ids.join('\n')}` });
    });
  policy
    .command('test')
    .summary('decide a table of cases with the config\'s policies (no broker, no database)')
    .description(
      'decide each case of FILE (YAML: cases of identity, agent, task labels, role, time, and the decision expected) ' +
        "with the config's policies, as the broker would; exits 1 on a mismatch (docs/policy.md)",
    )
    .argument('<file>', 'the cases')
    .action(async (file: string, _options: unknown, command: Command) => {
      const policy = await cli.policies(await cli.config(command));
      cli.report((await import('../policy-test.js')).runPolicyTest(policy, file));
    });
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
