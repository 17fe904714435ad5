import type { Command } from 'commander';
import { CliError, parseSeconds, type CliContext } from '../command.js';

/** `aws credential-process`: a client of a remote broker; it reads no config file. */
export function registerAws(program: Command, cli: CliContext): void {
  const aws = program.command('aws').description('AWS helpers').helpCommand(false);
  aws
    .command('credential-process')
    .summary('print AWS credentials for credential_process')
    .description("print a task-bound AWS credential for a profile's credential_process")
    .requiredOption('--task <id>', 'the task the credential is for')
    .requiredOption('--role <name>', 'the AWS role to ask for')
    .option('--url <url>', "the broker's URL (default: $TASKLEASE_URL)")
    .option('--token-file <file>', 'the identity token, re-read on every call (default: $TASKLEASE_TOKEN_FILE, else $TASKLEASE_TOKEN)')
    .option('--ttl <seconds>', "the lease's lifetime (default: the role's)", parseSeconds)
    .action(async (options: { task: string; role: string; url?: string; tokenFile?: string; ttl?: number }) => {
      const { credentialProcess, readToken } = await import('../credential-process.js');
      const url = options.url ?? cli.env.TASKLEASE_URL;
      if (!url) throw new CliError('no broker URL: pass --url or set TASKLEASE_URL');
      const token = readToken(options.tokenFile, cli.env);
      if (!token) throw new CliError('no identity token: pass --token-file, or set TASKLEASE_TOKEN_FILE or TASKLEASE_TOKEN');
      cli.report(await credentialProcess({ task: options.task, role: options.role, url, token, ttlSeconds: options.ttl }));
    });
}
