import type { Command } from 'commander';
import { CliError, parseSeconds, type CliContext } from '../command.js';

/** `dev token`: only what dev mode needs, so it starts without a database or the broker. */
export function registerDev(program: Command, cli: CliContext): void {
  const dev = program.command('dev').description('dev mode helpers').helpCommand(false);
  dev
    .command('token')
    .summary('print a dev identity token (dev mode only)')
    .description('print a dev identity token for <subject> (dev mode only)')
    .argument('<subject>', 'the token\'s subject (e.g. orchestrator, agent-1)')
    .option('--ttl <seconds>', 'lifetime of the token (default: 3600)', parseSeconds)
    .action(async (subject: string, options: { ttl?: number }, command: Command) => {
      const config = await cli.config(command);
      if (!config.dev) throw new CliError('dev tokens exist only in dev mode (no config file)');
      const { signDevToken } = await import('../../config/dev.js');
      cli.report({ code: 0, stdout: await signDevToken(config.data_dir, subject, options.ttl) });
    });
}
