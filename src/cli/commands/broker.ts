import type { Command } from 'commander';
import type { CliContext } from '../command.js';

/** `serve` (the default), `migrate`, `sweep`: the broker's own processes. */
export function registerBroker(program: Command, cli: CliContext): void {
  program
    .command('serve', { isDefault: true })
    .summary('serve the API and sweeper (the default)')
    .description('migrate, then serve the API and run the sweeper (the default; SIGTERM drains, then exits 0)')
    .action(async (_options, command: Command) => {
      const config = await cli.config(command);
      // Policies that do not load stop it before it touches anything (exit 2, each problem's file and line).
      await cli.policies(config);
      // Keeps the process alive until a signal: nothing to report.
      await (await import('../serve.js')).runServe(config, cli.version);
    });

  program
    .command('migrate')
    .summary('apply the database migrations')
    .description('apply the database migrations and exit')
    .action(async (_options, command: Command) => {
      const config = await cli.config(command);
      const db = await (await import('../context.js')).openConfiguredDatabase(config);
      await (await import('../../db/migrate.js')).runMigrations(db);
      await db.close();
      cli.report({ code: 0, stderr: `migrations applied (${db.kind})` });
    });

  program
    .command('sweep')
    .summary('run one sweeper pass')
    .description('run one sweeper pass over every due lease and exit')
    .action(async (_options, command: Command) => {
      const config = await cli.config(command);
      const result = await (await import('../sweep.js')).runSweepOnce(config, cli.version);
      cli.report({ code: 0, stderr: JSON.stringify(result) });
    });
}
