import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { TaskleaseError } from '../client/index.js';
import type { CliContext } from './command.js';
import type { OpenOptions } from './commands/task.js';
import { openRequest } from './commands/task.js';
import { connect } from './remote.js';

// `task run`: the task is completed exactly once, whichever way the run ends — the command exits
// (succeeded on 0, else failed), the wrapper is sent SIGINT/SIGTERM/SIGHUP (forwarded; failed once
// the command exits), or the deadline nears (completed failed first, then the command is sent
// SIGTERM). Proven by test/cli/task-run.test.ts.

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** How long before the deadline the task is completed: a tenth of its life, at most 30 s. */
export const deadlineMargin = (lifeMs: number) => Math.min(30_000, lifeMs / 10);

/** What the command must not inherit: the orchestrator's own identity (an agent holding it could open, complete or approve). */
const WITHHELD = ['TASKLEASE_TOKEN', 'TASKLEASE_TOKEN_FILE'];

export async function runTask(cli: CliContext, options: OpenOptions, argv: string[]): Promise<void> {
  // Installed before the task is opened, so a signal while it opens still completes it.
  let interrupted: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  const forward = (signal: NodeJS.Signals) => {
    interrupted = signal;
    child?.kill(signal);
  };
  for (const signal of SIGNALS) process.on(signal, forward);
  try {
    await runOpened(cli, options, argv, () => interrupted, (c) => (child = c));
  } finally {
    for (const signal of SIGNALS) process.off(signal, forward);
  }
}

async function runOpened(
  cli: CliContext,
  options: OpenOptions,
  argv: string[],
  interruptedBy: () => NodeJS.Signals | undefined,
  started: (child: ReturnType<typeof spawn>) => void,
): Promise<void> {
  const client = await connect(cli, options);
  const opened = Date.now();
  const task = await client.tasks.open(await openRequest(options));
  cli.io.stderr(`tasklease: task ${task.id} open until ${task.deadline}\n`);

  let completion: Promise<string | undefined> | undefined;
  /** Completes the task once; resolves with the error line when the broker could not be told. */
  const complete = (outcome: string) =>
    (completion ??= client.tasks.complete(task.id, outcome).then(
      () => undefined,
      (err: unknown) => (err instanceof TaskleaseError ? `${err.code}: ${err.detail}` : `client_unreachable: ${err instanceof Error ? err.message : String(err)}`),
    ));

  const early = interruptedBy();
  if (early) {
    // Interrupted while the task was opening: nothing is started, and the task does not stay open.
    const failed = await complete('failed');
    if (failed) cli.io.stderr(`tasklease: ${failed.replace(/\s*\n\s*/g, ' ')}\n`);
    cli.report({ code: 128 + (constants.signals[early] ?? 0) });
    return;
  }
  const [file, ...args] = argv as [string, ...string[]];
  const env: NodeJS.ProcessEnv = { ...cli.env, TASKLEASE_TASK: task.id, TASKLEASE_URL: client.url };
  for (const name of WITHHELD) delete env[name];
  const child = spawn(file, args, { stdio: 'inherit', env });
  started(child);

  // Timed on the broker's own clock: the task's life as it set it, from when this wrapper asked.
  const life = Date.parse(task.deadline) - Date.parse(task.created_at);
  let expired = false;
  const fireAt = opened + life - deadlineMargin(life);
  let timer: NodeJS.Timeout;
  // setTimeout holds at most 2^31-1 ms (24.8 days); a longer task re-arms until its time comes.
  const arm = () => {
    const left = fireAt - Date.now();
    if (left > 2 ** 31 - 1) {
      timer = setTimeout(arm, 2 ** 31 - 1);
      return;
    }
    timer = setTimeout(() => {
      expired = true;
      cli.io.stderr(`tasklease: task ${task.id} reaches its deadline: completing it and stopping the command\n`);
      void complete('failed').then(() => child.kill('SIGTERM'));
    }, left);
  };
  arm();

  const status = await new Promise<number>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      cli.io.stderr(`tasklease: cannot run ${file}: ${err.code ?? err.message}\n`);
      resolve(err.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
  clearTimeout(timer!);

  const failed = await complete(status === 0 && !interruptedBy() && !expired ? 'succeeded' : 'failed');
  // The command's status wins; a task left open is still a failure, if the command did not fail.
  if (failed) cli.io.stderr(`tasklease: ${failed.replace(/\s*\n\s*/g, ' ')}\n`);
  cli.report({ code: failed && status === 0 ? 1 : status });
}
