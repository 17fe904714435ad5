// Helpers for the fault-injection tests: `tasklease serve` as real child
// processes in dev mode on a throwaway PostgreSQL database, driven over HTTP.
import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest, type Agent } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The `tasklease` command as children run it: the build test/global-setup.ts makes of the sources under test. */
export const BIN = join(ROOT, 'dist', 'main.js');
/** The entry `npx tasklease` and `npm start` run: the TypeScript sources through tsx. */
export const SOURCE_BIN = join(ROOT, 'bin', 'tasklease.js');
export const PG_ADMIN_URL = process.env.TASKLEASE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const START_TIMEOUT_MS = 60_000;
export const CLI_TIMEOUT_MS = 30_000;
export const EXIT_TIMEOUT_MS = 10_000;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns true or `ms` pass; returns whether it did. */
export async function until(ms: number, check: () => Promise<boolean>, everyMs = 200): Promise<boolean> {
  const started = performance.now();
  for (;;) {
    if (await check()) return true;
    if (performance.now() - started > ms) return false;
    await sleep(everyMs);
  }
}

/** Resolves with `promise`, or rejects once `ms` pass. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export type Sql = ReturnType<typeof postgres>;

export interface PgDatabase {
  url: string;
  /** A small pool on the test database, for the assertions. */
  sql: Sql;
  drop(): Promise<void>;
}

/** A throwaway database on the real PostgreSQL; unreachable PostgreSQL is an error, never a skip. */
export async function createPgDatabase(prefix: string): Promise<PgDatabase> {
  const name = `tl_${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await admin.unsafe(`create database ${name}`);
  } catch (err) {
    await admin.end({ timeout: 1 });
    throw new Error(`PostgreSQL is required at ${PG_ADMIN_URL} for these tests: ${(err as Error).message}`);
  }
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const sql = postgres(url, { max: 4, onnotice: () => {}, connect_timeout: 5 });
  return {
    url,
    sql,
    async drop() {
      try {
        await sql.end({ timeout: 5 }).catch(() => {});
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end({ timeout: 5 });
      }
    },
  };
}

export function tempDataDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tasklease-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The child's environment: the caller's, minus anything that would leave dev mode or pick another database;
 * its metrics listener on a free port, so children never contend for the default one.
 */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['TASKLEASE_CONFIG', 'DATABASE_URL', 'PORT', 'HOST', 'PUBLIC_URL', 'TASKLEASE_DATA_DIR', 'NODE_OPTIONS']) delete env[key];
  return { ...env, METRICS_LISTEN: '127.0.0.1:0', ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Every child process these tests started, so afterAll can kill what is left even when a test failed. */
const children = new Set<ChildProcess>();

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/** Runs `tasklease <args>` (`bin`: the build, or SOURCE_BIN) to completion, killing it if it overruns. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = CLI_TIMEOUT_MS, bin = BIN): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tasklease ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A dev identity token for each subject. */
export async function devTokens(env: NodeJS.ProcessEnv, subjects: string[]): Promise<Record<string, string>> {
  const tokens: Record<string, string> = {};
  await Promise.all(
    subjects.map(async (subject) => {
      const result = await runCli(['dev', 'token', subject], env);
      if (result.code !== 0) throw new Error(`dev token ${subject} exited ${result.code}: ${result.stderr}`);
      tokens[subject] = result.stdout.trim();
    }),
  );
  return tokens;
}

export interface Broker {
  child: ChildProcess;
  pid: number;
  /** What the replica writes to `leases.claimed_by`. */
  instanceId: string;
  url: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `tasklease serve` and resolves once its "tasklease listening" log line names the URL. */
export function startBroker(env: NodeJS.ProcessEnv): Promise<Broker> {
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return new Promise((resolve, reject) => {
    let buffered = '';
    let done = false;
    const finish = (err: Error | undefined, url?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        if (alive(child)) child.kill('SIGKILL');
        reject(err);
      } else {
        resolve({ child, pid: child.pid!, instanceId: `${hostname()}:${child.pid}`, url: url!, stdout: () => stdout, stderr: () => stderr, exited });
      }
    };
    const timer = setTimeout(
      () => finish(new Error(`server did not log "tasklease listening" within ${START_TIMEOUT_MS} ms\nstdout: ${stdout.slice(-4000)}\nstderr: ${stderr.slice(-4000)}`)),
      START_TIMEOUT_MS,
    );
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (done) return;
      buffered += d;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'tasklease listening' && typeof entry.url === 'string') finish(undefined, entry.url);
        } catch {
          // not a log line
        }
      }
    });
    child.on('error', (err) => finish(err));
    child.on('exit', (code, signal) =>
      finish(new Error(`server exited before listening (code ${code}, signal ${signal})\nstdout: ${stdout.slice(-4000)}\nstderr: ${stderr.slice(-4000)}`)),
    );
  });
}

/** SIGKILLs a broker and waits until it is gone. */
export async function killBroker(broker: Broker): Promise<void> {
  if (alive(broker.child)) broker.child.kill('SIGKILL');
  await within(broker.exited, EXIT_TIMEOUT_MS, `killing broker pid ${broker.pid}`);
}

/** Kills every child process still running (afterAll, pass or fail). */
export async function killAllChildren(): Promise<void> {
  const left = [...children];
  await Promise.all(
    left.map(async (child) => {
      if (!alive(child)) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await within(gone, EXIT_TIMEOUT_MS, `killing pid ${child.pid}`).catch(() => {});
    }),
  );
  children.clear();
}

export interface HttpResult {
  /** The client side's port of the connection the response came on. */
  localPort: number | undefined;
  status: number;
  text: string;
  json: any;
}

/**
 * Why a request failed: the socket error code, and whether any part of the
 * response had arrived.
 */
export class HttpError extends Error {
  constructor(
    message: string,
    /** The socket error code (ECONNREFUSED, ECONNRESET, ...), or 'timeout'. */
    readonly code: string,
    /** True when the response status line had arrived before the failure: a response cut off midway. */
    readonly midResponse: boolean,
    /** True once the TCP connection was established. */
    readonly connected: boolean,
    /** The client side's port, once connected. */
    readonly localPort: number | undefined,
  ) {
    super(message);
  }
}

/**
 * One request, by default on its own TCP connection (no keep-alive pool, so a
 * request never lands on a socket the server is closing); pass a keep-alive
 * `agent` for load. Rejects with an `HttpError`.
 */
export function http(
  method: string,
  url: string,
  options: {
    token?: string;
    body?: unknown;
    form?: Record<string, string>;
    requestId?: string;
    timeoutMs?: number;
    agent?: Agent;
    /** Called with the client side's port once the connection is up. */
    onConnect?: (localPort: number | undefined) => void;
  } = {},
): Promise<HttpResult> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.requestId) headers['x-request-id'] = options.requestId;
  let payload: string | undefined;
  if (options.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    payload = new URLSearchParams(options.form).toString();
  } else if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(options.body);
  }
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
  return new Promise((resolve, reject) => {
    let connected = false;
    let localPort: number | undefined;
    let midResponse = false;
    let settled = false;
    const fail = (err: NodeJS.ErrnoException | Error, code?: string) => {
      if (settled) return;
      settled = true;
      const c = code ?? (err as NodeJS.ErrnoException).code ?? 'unknown';
      reject(new HttpError(`${method} ${url}: ${err.message}`, c, midResponse, connected, localPort));
    };
    const req = httpRequest(url, { method, headers, agent: options.agent ?? false }, (res) => {
      midResponse = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('aborted', () => fail(new Error('response aborted'), 'ECONNRESET'));
      res.on('error', (err) => fail(err));
      res.on('end', () => {
        if (settled) return;
        if (!res.complete) return fail(new Error('response incomplete'), 'ECONNRESET');
        settled = true;
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ localPort, status: res.statusCode ?? 0, text, json });
      });
    });
    req.on('socket', (socket) => {
      const up = () => {
        connected = true;
        localPort = socket.localPort;
        options.onConnect?.(localPort);
      };
      if (!socket.connecting) up();
      else socket.once('connect', up);
    });
    req.setTimeout(options.timeoutMs ?? 15_000, () => {
      fail(new Error('timed out'), 'timeout');
      req.destroy();
    });
    req.on('error', (err) => fail(err));
    req.end(payload);
  });
}

/** The jti of a compact JWT (the jwt backend's credential reference). */
export function jtiOf(token: string): string | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    return (JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { jti?: string }).jti;
  } catch {
    return undefined;
  }
}

/**
 * A PostgreSQL database and a data directory for the broker child processes
 * of one test file, with the environment to start them in; after the file,
 * every child is killed, the database dropped and the directory removed.
 * Read `pg` and `env` inside tests (they are set in beforeAll).
 */
export function useChildBrokers(prefix: string): { pg: PgDatabase; env: NodeJS.ProcessEnv } {
  const shared = {} as { pg: PgDatabase; env: NodeJS.ProcessEnv };
  let data: ReturnType<typeof tempDataDir> | undefined;
  beforeAll(async () => {
    shared.pg = await createPgDatabase(prefix);
    data = tempDataDir(prefix);
    shared.env = childEnv({ TASKLEASE_DATA_DIR: data.dir, DATABASE_URL: shared.pg.url, PORT: '0', HOST: '127.0.0.1' });
  });
  afterAll(async () => {
    try {
      await killAllChildren();
    } finally {
      try {
        if (shared.pg) await within(shared.pg.drop(), 30_000, 'dropping the test database');
      } finally {
        data?.remove();
      }
    }
  });
  return shared;
}
