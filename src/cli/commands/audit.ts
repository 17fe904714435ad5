import type { Command } from 'commander';
import { parseSeconds, type CliContext } from '../command.js';
import { remote, type RemoteOptions } from '../remote.js';

/** `audit verify`, `audit checkpoint`: the hash chain, checked and signed where the broker's data is; `audit tail` reads a remote broker's trail. */
export function registerAudit(program: Command, cli: CliContext): void {
  const audit = program.command('audit').description('check and checkpoint the audit hash chain').helpCommand(false);
  audit
    .command('verify')
    .summary('verify the audit hash chain and its head')
    .description('check the audit hash chain and its head (and that it still holds a signed checkpoint); exit 1 at the first broken link')
    .option('--checkpoint <file>', 'a checkpoint from `audit checkpoint`, which the chain must still hold')
    .option('--jwks <file|url>', "the keys the checkpoint is verified against (default: the broker's keys under data_dir)")
    .action(async (options: { checkpoint?: string; jwks?: string }, command: Command) => {
      const config = await cli.config(command);
      cli.report(await (await import('../audit.js')).runAuditVerify(config, options));
    });
  audit
    .command('checkpoint')
    .summary("sign a checkpoint of the audit chain's head")
    .description("print (or write) a checkpoint of the chain's head, signed by the broker's key")
    .option('--out <file>', 'write the checkpoint to <file> instead of stdout')
    .action(async (options: { out?: string }, command: Command) => {
      const config = await cli.config(command);
      cli.report(await (await import('../audit.js')).runAuditCheckpoint(config, options));
    });
  remote(audit.command('tail').summary("print a remote broker's newest audit events"))
    .description("print the newest audit events of a remote broker, oldest first (admin); --follow keeps printing new ones until interrupted")
    .option('--limit <n>', 'how many of the newest events (default: 20)', parseSeconds)
    .option('--since <time>', 'read from this ISO 8601 time, not from the start of the trail')
    .option('-f, --follow', 'keep polling for new events (until SIGINT or SIGTERM)')
    .option('--interval <seconds>', 'how often --follow polls (default: 2)', parseSeconds)
    .action(async (options: RemoteOptions & { limit?: number; since?: string; follow?: boolean; interval?: number }) => {
      await (await import('../audit-tail.js')).runAuditTail(cli, options);
    });
}
