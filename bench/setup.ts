import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import postgres from 'postgres';

export const PG_ADMIN_URL = process.env.TASKLEASE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ISSUER = 'https://bench-issuer.tasklease.invalid';
const AUDIENCE = 'tasklease-bench';

/** A fresh database on the real PostgreSQL, dropped first if a previous run left it. */
export async function freshDatabase(name: string): Promise<string> {
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  return PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${name} with (force)`).finally(() => admin.end());
}

/** The bench's own OIDC issuer: an ES256 key whose public half the broker trusts inline. */
export async function benchIssuer() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench-1', alg: 'ES256', use: 'sig' };
  const key: CryptoKey = privateKey;
  return {
    jwk,
    token: (subject: string) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'bench-1', typ: 'JWT' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject(subject)
        .setIssuedAt()
        .setExpirationTime('2h')
        .sign(key),
  };
}

/** A broker config (JSON is YAML): roles `bench` on the jwt backend and `slow` on the 50 ms backend of slow-broker.ts. */
export function writeConfig(dir: string, name: string, opts: { port: number; databaseUrl?: string; jwk: object; sweeper?: object; policy?: object; oauth?: object }): string {
  const allow = [{ issuer: 'bench', subject_pattern: 'agent-.*' }];
  const config = {
    public_url: `http://127.0.0.1:${opts.port}`,
    host: '127.0.0.1',
    port: opts.port,
    // Replicas share the machine: each takes a free port for its metrics listener.
    metrics: { listen: '127.0.0.1:0' },
    ...(opts.databaseUrl ? { database_url: opts.databaseUrl } : {}),
    data_dir: join(dir, `${name}-data`),
    issuers: [{ name: 'bench', issuer: ISSUER, jwks: { keys: [opts.jwk] }, audiences: [AUDIENCE], algorithms: ['ES256'] }],
    principals: {
      orchestrators: [{ name: 'orchestrator', issuer: 'bench', subject: 'orchestrator' }],
      admins: [{ name: 'admin', issuer: 'bench', subject: 'admin' }],
    },
    backends: { local: { type: 'jwt' }, slow: { type: 'jwt' } },
    roles: [
      { name: 'bench', backend: 'local', ttl: '15m', max_ttl: '1h', allow, jwt: { audience: 'bench-api', scope: 'bench:read' } },
      { name: 'slow', backend: 'slow', ttl: '15m', max_ttl: '1h', allow },
    ],
    // As production runs: registration required, the bench's agents one registered fleet (every decision resolves it).
    agents: {
      require_registration: true,
      register: [{ name: 'bench-fleet', match: allow[0], owner: { name: 'bench', contact: 'bench@example.com' }, purpose: 'the benchmark load', roles: ['bench', 'slow'] }],
    },
    ...(opts.sweeper ? { sweeper: opts.sweeper } : {}),
    ...(opts.policy ? { policy: opts.policy } : {}),
    ...(opts.oauth ? { oauth: opts.oauth } : {}),
  };
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export interface Proc {
  child: ChildProcess;
  url: string;
  /** Milliseconds from spawn until /readyz (or the ceiling server) answered. */
  startupMs: number;
  /** Resident set size in MB, from /proc. */
  rssMb(): number;
  stop(): Promise<void>;
}

/** Starts a node process and waits until `ready(url)` holds. Its output goes to a log file in `dir`. */
export async function startProcess(args: string[], port: number, opts: { dir: string; name: string; ready: (url: string) => Promise<boolean>; env?: NodeJS.ProcessEnv }): Promise<Proc> {
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  const { openSync } = await import('node:fs');
  const out = openSync(join(opts.dir, `${opts.name}.log`), 'a');
  const child = spawn(process.execPath, args, { stdio: ['ignore', out, out], env: { ...process.env, ...opts.env } });
  let exited = false;
  child.on('exit', () => (exited = true));
  for (;;) {
    if (exited) throw new Error(`${opts.name} exited during start-up; see ${join(opts.dir, `${opts.name}.log`)}`);
    if (await opts.ready(url).catch(() => false)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const startupMs = performance.now() - started;
  return {
    child,
    url,
    startupMs,
    rssMb: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024,
    stop: () =>
      new Promise((resolve) => {
        if (exited) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export const readyz = async (url: string) => (await fetch(`${url}/readyz`)).status === 200;

/** Starts `tasklease serve` as the container image runs it, compiled (or another entry that serves the same way), with a config file. */
export async function startBroker(config: string, port: number, dir: string, name: string, entry: string[] = ['dist/main.js', 'serve']): Promise<Proc> {
  // BENCH_NODE_ARGS, such as "--cpu-prof --cpu-prof-dir=/tmp/prof", go to the brokers only.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return startProcess([...nodeArgs, ...entry, '--config', config], port, { dir, name, ready: readyz });
}

/** CPU seconds used so far by the process `pid` (all threads), by every PostgreSQL process, and by the whole machine. */
export function cpuSnapshot(pid: number): { broker: number; postgres: number; machine: number } {
  const tick = 100; // USER_HZ on Linux
  const ticksOf = (stat: string) => {
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  };
  let postgresTicks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.includes('(postgres)')) postgresTicks += ticksOf(stat);
    } catch {
      // exited meanwhile
    }
  }
  const [, ...cpu] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3]! - cpu[4]!; // all but idle and iowait
  return { broker: ticksOf(readFileSync(`/proc/${pid}/stat`, 'utf8')) / tick, postgres: postgresTicks / tick, machine: busy / tick };
}

/** CPU per request between two snapshots, in microseconds: the broker, PostgreSQL, and everything else (load generator, kernel). */
export function cpuPerRequest(before: ReturnType<typeof cpuSnapshot>, after: ReturnType<typeof cpuSnapshot>, requests: number): string {
  const us = (s: number) => ((s / requests) * 1e6).toFixed(0);
  const broker = after.broker - before.broker;
  const postgres = after.postgres - before.postgres;
  const machine = after.machine - before.machine;
  return `CPU per request: broker ${us(broker)} us, PostgreSQL ${us(postgres)} us, rest ${us(machine - broker - postgres)} us (machine busy ${machine.toFixed(1)} CPU-s)`;
}
