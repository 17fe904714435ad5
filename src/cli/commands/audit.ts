import type { Command } from 'commander';
import type { CliContext } from '../command.js';

/** `audit verify`, `audit checkpoint`: the hash chain, checked and signed where the broker's data is. */
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
}
