import type { Command } from 'commander';
import type { Client } from '../client/index.js';
import { CliError, type CliContext } from './command.js';

// What every command against a remote broker shares: where the broker is, whose token, how a
// refusal is printed (one line, `tasklease: <code>: <detail>`, exit 1) and how a result is
// shown (an aligned table, or --json for scripts). The decisions are the broker's: these
// commands call the SDK (tasklease/client) and print what it answers.

export interface RemoteOptions {
  url?: string;
  tokenFile?: string;
  json?: boolean;
}

/** Adds --url, --token-file and (unless `json` is false) --json to `command`. */
export function remote(command: Command, json = true): Command {
  command
    .option('--url <url>', "the broker's URL (default: $TASKLEASE_URL)")
    .option('--token-file <file>', 'the identity token, re-read on every request (default: $TASKLEASE_TOKEN)');
  return json ? command.option('--json', 'print JSON for scripts instead of a table') : command;
}

/** The SDK client for `options`: --url or TASKLEASE_URL, --token-file or the default token chain over cli.env. */
export async function connect(cli: CliContext, options: RemoteOptions): Promise<Client & { url: string }> {
  const url = options.url ?? cli.env.TASKLEASE_URL;
  if (!url) throw new CliError('no broker URL: pass --url or set TASKLEASE_URL');
  const { createClient, defaultTokenSource } = await import('../client/index.js');
  const client = createClient({ url, token: defaultTokenSource({ tokenFile: options.tokenFile, env: cli.env }) });
  return { ...client, url };
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim();

/**
 * Runs a remote command's body: a problem answer (a TaskleaseError) becomes
 * `tasklease: <code>: <detail>` and exit 1, an unreachable broker likewise;
 * usage errors (CliError) keep their own exit code.
 */
export async function remoteCall(fn: () => Promise<void>): Promise<void> {
  const { TaskleaseError } = await import('../client/index.js');
  try {
    await fn();
  } catch (err) {
    if (err instanceof TaskleaseError) throw new CliError(`${err.code}: ${oneLine(err.detail)}`, err.code === 'client_no_token' ? 2 : 1);
    // fetch's own failure (refused connection, DNS, timeout): the broker could not be asked.
    if (err instanceof TypeError || (err instanceof Error && err.name === 'TimeoutError')) {
      const cause = (err.cause as { code?: string } | undefined)?.code ?? err.message;
      throw new CliError(`client_unreachable: cannot reach the broker (${oneLine(String(cause))})`, 1);
    }
    throw err;
  }
}

export type Column<T> = [heading: string, value: (row: T) => string | number | null | undefined];

/** An aligned table with a header line; `none` when there are no rows. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[], none = '(none)'): string {
  if (rows.length === 0) return none;
  const cells = [columns.map(([heading]) => heading), ...rows.map((row) => columns.map(([, value]) => oneLine(String(value(row) ?? '-'))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `key: value` lines, aligned, for one object. */
export function fields(pairs: readonly [string, unknown][]): string {
  const width = Math.max(...pairs.map(([key]) => key.length));
  const show = (value: unknown) => (value === null || value === undefined ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width + 1)} ${oneLine(show(value))}`).join('\n');
}

/** Reports `value` as JSON (--json) or as `human(value)`, exit 0. */
export function show<T>(cli: CliContext, options: RemoteOptions, value: T, human: (value: T) => string): void {
  cli.report({ code: 0, stdout: options.json ? JSON.stringify(value, null, 2) : human(value) });
}

/** Reads every page of a cursor-paged list, up to `max` items. */
export async function allPages<T>(page: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor: string | null }>, max = Infinity): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const got = await page(cursor);
    items.push(...got.items);
    cursor = got.next_cursor ?? undefined;
  } while (cursor && items.length < max);
  return items.slice(0, max);
}
