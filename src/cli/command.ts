import { type Command, InvalidArgumentError } from 'commander';
import type { Config } from '../config/schema.js';
import type { Policy } from '../policy/decide.js';

// What a command group's registrar (commands/*.ts) is given and may throw. Apart from
// program.ts, so the registrars and the program that lists them do not import each other.

/** What a command prints and how it exits: the report on stdout, the rest on stderr. */
export interface CommandResult {
  code: number;
  stdout?: string;
  stderr?: string;
}

/** A problem the user can fix, printed as one line (`tasklease: <message>`); exit 2 unless told. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** What every registrar is given: the environment, the output, and the shared steps of an action. */
export interface CliContext {
  version: string;
  env: NodeJS.ProcessEnv;
  io: CliIo;
  /** The configuration for `command`: --config, TASKLEASE_CONFIG, else dev mode. */
  config(command: Command): Promise<Config>;
  /** The config's policies, loaded and validated; a usage error naming each problem's file and line when they do not load. */
  policies(config: Config): Promise<Policy>;
  /** Prints a command's result; runProgram returns its code. A command that keeps running (serve) reports nothing. */
  report(result: CommandResult): void;
}

export type Registrar = (program: Command, cli: CliContext) => void;

/** A whole number of seconds, for --ttl. */
export function parseSeconds(value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('Expected a whole number of seconds.');
  return Number(value);
}

