import type { Command } from 'commander';
import { CliError, parseSeconds, type CliContext } from '../command.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** `run`: the agent side (docs/cli.md). A client of a remote broker; it reads no config file. */
export function registerRun(program: Command, cli: CliContext): void {
  program
    .command('run')
    .summary('run a command with task-bound credentials')
    .description(
      'Take one lease per --role, hand the credentials to the command (environment, private files, a loopback AWS ' +
        'container-credentials endpoint), keep them renewed, and release them when the command exits.',
    )
    .usage('--task <id> --role <name>... [options] -- <command> [args...]')
    .option('--task <id>', 'the task (default: $TASKLEASE_TASK)')
    .option('--role <name>', 'a role to take a lease of (repeatable)', collect)
    .option('--gateway <routes>', "a sidecar gateway for the command (docs/gateway.md): its routes' credentials are attached to its calls, never handed to it")
    .option('--env <NAME=role[.field]>', 'set NAME to the role\'s token or a field of its credentials (repeatable)', collect)
    .option('--file <NAME=role[.field]>', 'write it to a private 0600 file and set NAME to its path (repeatable)', collect)
    .option('--url <url>', "the broker's URL (default: $TASKLEASE_URL)")
    .option('--token-file <file>', 'the identity token, re-read for every request (default: $TASKLEASE_TOKEN, the Kubernetes token, GitHub Actions OIDC)')
    .option('--ttl <seconds>', "each lease's lifetime (default: the role's)", parseSeconds)
    .option('--wait-approval', "for a gated role, wait for the approver's decision instead of exiting")
    .argument('<command...>', 'the command to run, after --')
    .action(async (command: string[], options: { task?: string; role?: string[]; env?: string[]; file?: string[]; url?: string; tokenFile?: string; ttl?: number; waitApproval?: boolean; gateway?: string }) => {
      if (!options.role?.length && !options.gateway) throw new CliError('give at least one --role, or --gateway');
      const { runWithLeases } = await import('../run/run.js');
      cli.report({ code: await runWithLeases({ ...options, role: options.role ?? [], env: options.env ?? [], file: options.file ?? [], command }, { env: cli.env, io: cli.io }) });
    });
}
