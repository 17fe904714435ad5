import { Command, CommanderError, Help } from 'commander';
import { CliError, type CliContext, type CliIo, type Registrar } from './command.js';
import { registerAgents } from './commands/agents.js';
import { registerApprovals } from './commands/approvals.js';
import { registerAudit } from './commands/audit.js';
import { registerAws } from './commands/aws.js';
import { registerBroker } from './commands/broker.js';
import { registerCompletion } from './commands/completion.js';
import { registerDev } from './commands/dev.js';
import { registerRun } from './commands/run.js';
import { registerGateway } from './commands/gateway.js';
import { registerLeases } from './commands/leases.js';
import { registerPolicy } from './commands/policy.js';
import { registerTask } from './commands/task.js';

// The `tasklease` command line: commander parses, prints help and reports usage errors; each
// command group is one registrar under commands/. Registrars import only commander and types at
// start-up and load what a command needs in its action, so `dev token` starts without a database.

export const REGISTRARS: readonly Registrar[] = [
  registerBroker,
  registerDev,
  registerAudit,
  registerAws,
  registerTask,
  registerGateway,
  registerLeases,
  registerApprovals,
  registerAgents,
  registerPolicy,
  registerRun,
  registerCompletion,
];

/** The exit codes, printed by `--help`; README's table says the same at more length. */
export const EXIT_CODES = `Exit codes:
  0  done (serve: stopped by SIGTERM or SIGINT after draining)
  1  a check failed or the broker refused (audit chain broken, checkpoint refused,
     a remote broker refused, as \`tasklease: <code>: <detail>\`, or was unreachable,
     metrics listener not opened)
  2  usage error, invalid configuration, or the command could not start its work
     (database unreachable or data directory in use, dev token outside dev mode)
  task run and run exit with their command's status (126/127: not run; 128+n: signal n);
  run only once every lease was granted`;

// Commander's messages come as `error: <what>` with a suggestion on a second line: one line here.
const oneLine = (message: string) => `tasklease: ${message.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}\n`;

/** The names of `command`'s groups below the program (`audit` for `audit verify`). */
function groupPath(command: Command): string[] {
  const path: string[] = [];
  for (let c = command.parent; c?.parent; c = c.parent) path.unshift(c.name());
  return path;
}

export function createProgram(cli: CliContext, registrars: readonly Registrar[] = REGISTRARS): Command {
  const base = new Help();
  // A group's commands take its place in the program's list (groups add no `help` command of their own).
  const leaves = (command: Command) => (command.commands.length ? base.visibleCommands(command) : [command]);
  const program = new Command('tasklease')
    .description('Just-in-time, task-bound credentials for AI agents and other workloads.')
    .version(cli.version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print this help')
    .option('-c, --config <file>', 'the config file (default: $TASKLEASE_CONFIG; without one, dev mode)')
    // Set before the registrars run: commands made with .command() inherit them.
    .exitOverride()
    .configureOutput({
      writeOut: (text) => cli.io.stdout(text),
      writeErr: (text) => cli.io.stderr(text),
      outputError: (text, write) => write(oneLine(text)),
    })
    .configureHelp({
      showGlobalOptions: true,
      // The program's help lists every command, `audit verify` as well as `serve`.
      visibleCommands: (command) => (command.parent ? base.visibleCommands(command) : base.visibleCommands(command).flatMap(leaves)),
      subcommandTerm: (command) => [...groupPath(command), base.subcommandTerm(command)].join(' '),
    })
    .addHelpText(
      'after',
      `
The config file comes from --config or TASKLEASE_CONFIG; without one, tasklease runs
in dev mode on embedded PGlite under ./.tasklease (or on DATABASE_URL).

${EXIT_CODES}`,
    );
  for (const register of registrars) register(program, cli);
  // `serve` is the default command, so a word that names no command would reach it as an
  // argument: name it as the unknown command it is.
  program.hook('preSubcommand', (_program, command) => {
    const [first] = program.args;
    if (command.name() === 'serve' && first !== undefined && first !== 'serve' && !first.startsWith('-')) {
      program.error(`unknown command '${first}' (see tasklease --help)`, { code: 'commander.unknownCommand' });
    }
  });
  return program;
}

export interface RunOptions {
  version: string;
  env: NodeJS.ProcessEnv;
  io?: CliIo;
  registrars?: readonly Registrar[];
}

const processIo: CliIo = { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) };

/**
 * Runs `tasklease <argv>` and resolves with its exit code, or undefined for a command that
 * keeps the process alive (serve). Usage errors and refusals to start exit 2, in one line.
 */
export async function runProgram(argv: readonly string[], options: RunOptions): Promise<number | undefined> {
  const io = options.io ?? processIo;
  let code: number | undefined;
  const cli: CliContext = {
    version: options.version,
    env: options.env,
    io,
    async config(command) {
      const [{ resolveConfig }, { ConfigError }] = await Promise.all([import('./context.js'), import('../config/load.js')]);
      try {
        return await resolveConfig({ config: command.optsWithGlobals<{ config?: string }>().config, env: options.env });
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(`invalid configuration\n${err.message}`);
        throw err;
      }
    },
    // Only the commands that decide load the policies (the Cedar module costs a start-up).
    async policies(config) {
      const [{ policyFromConfig }, { PolicyLoadError }] = await Promise.all([import('../policy/cedar/load.js'), import('../policy/cedar/engine.js')]);
      try {
        return policyFromConfig(config);
      } catch (err) {
        if (err instanceof PolicyLoadError) throw new CliError(`invalid policies\n${err.message}`);
        throw err;
      }
    },
    report(result) {
      if (result.stdout !== undefined) io.stdout(`${result.stdout}\n`);
      if (result.stderr !== undefined) io.stderr(`${result.stderr}\n`);
      code = result.code;
    },
  };
  try {
    await createProgram(cli, options.registrars).parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    // Commander has printed its message (or the help) already.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError) {
      io.stderr(`tasklease: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr(`tasklease: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
}
