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
  dev
    .command('echo')
    .summary('serve an upstream that echoes each request, describing its credential without showing it (for trying the gateway)')
    .option('--port <port>', 'the port on 127.0.0.1 (default: 7071)', (v) => Number(v), 7071)
    .action(async (options: { port: number }) => {
      const { createEchoUpstream } = await import('../../gateway/echo.js');
      const server = createEchoUpstream();
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options.port, '127.0.0.1', () => resolve()));
      cli.io.stderr(`tasklease dev echo listening on http://127.0.0.1:${options.port}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      server.close();
      cli.report({ code: 0 });
    });
}
