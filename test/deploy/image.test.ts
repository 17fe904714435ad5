// The container image, proven without a container engine (none here can pull
// base images): deploy/Dockerfile replayed stage by stage into a scratch folder
// (test/support/dockerfile-replay.ts), then its last stage run as the image
// runs, through its ENTRYPOINT and CMD: migrate, then serve on a fresh
// PostgreSQL database until /healthz answers 200 and the HEALTHCHECK passes.
// A Dockerfile change that breaks the build, the patched driver or start-up
// fails here; one the replay cannot follow fails "reads every instruction".
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDatabase, EXIT_TIMEOUT_MS, ROOT, sleep, within, type PgDatabase } from '../support/child-broker.js';
import { CannotFollow, planDockerfile } from '../support/dockerfile-plan.js';
import { hostPath, imageCommand, mappedEnv, replayDockerfile, type ReplayedStage } from '../support/dockerfile-replay.js';
import { missingDriverPatch } from '../support/driver-patch.js';

const DOCKERFILE = join(ROOT, 'deploy', 'Dockerfile');
// Two npm ci runs (warm cache) and a tsc build, on a loaded 2-core machine.
const REPLAY_TIMEOUT_MS = 300_000;
const SERVE_TIMEOUT_MS = 90_000;

/** The host environment RUN steps and the image start from: node and npm on PATH, npm's cache, nothing of the test's own. */
function hostEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'}`,
    HOME: process.env.HOME ?? tmpdir(),
    TMPDIR: tmpdir(),
    // CI ran `npm ci` first, so the cache holds every package.
    npm_config_prefer_offline: 'true',
    npm_config_update_notifier: 'false',
  };
  for (const [key, value] of Object.entries(process.env)) if (/^npm_config_(cache|userconfig|registry|cafile)$/i.test(key) && value) env[key] = value;
  return env;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('the replay of deploy/Dockerfile', () => {
  it('reads every instruction of deploy/Dockerfile', () => {
    const plan = planDockerfile(readFileSync(DOCKERFILE, 'utf8'));
    expect(plan.stages.map((s) => s.name)).toEqual(['build', 'runtime']);
  });

  it.each([
    'ADD https://example.com/tool /usr/local/bin/tool',
    'RUN apt-get update',
    'RUN npm ci; rm -rf node_modules/postgres',
    'RUN npm ci --ignore-scripts || true',
    'RUN echo "$HOME" > /x',
    'RUN --mount=type=cache,target=/root/.npm npm ci',
    'COPY --link package.json ./',
    'COPY src/*.ts ./src/',
    'COPY --from=node:20 /usr/local/bin/node /usr/local/bin/',
    'SHELL ["/bin/bash", "-c"]',
    'VOLUME /var/lib/tasklease',
    'ONBUILD RUN npm ci',
  ])('refuses what it cannot follow: %s', (instruction) => {
    expect(() => planDockerfile(`FROM node:20-bookworm-slim\nWORKDIR /app\n${instruction}\n`)).toThrow(CannotFollow);
  });

  it('refuses a base image that is not node', () => {
    expect(() => planDockerfile('FROM debian:bookworm-slim\nRUN npm ci\n')).toThrow(CannotFollow);
  });
});

describe('the image deploy/Dockerfile builds', () => {
  let scratch = '';
  let stages: ReplayedStage[] = [];
  let pg: PgDatabase | undefined;
  let child: ChildProcess | undefined;
  const runtime = () => stages.at(-1)!;
  const app = () => hostPath(runtime(), runtime().workdir);

  beforeAll(async () => {
    // Two node_modules trees (~12,000 files): in memory where there is a tmpfs, they install and go away several times faster.
    scratch = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tasklease-image-'));
    const started = Date.now();
    const notes: string[] = [];
    stages = await replayDockerfile({
      plan: planDockerfile(readFileSync(DOCKERFILE, 'utf8')),
      dockerfile: DOCKERFILE,
      context: ROOT,
      scratch,
      hostEnv: hostEnv(),
      note: (text) => notes.push(text),
      runTimeoutMs: REPLAY_TIMEOUT_MS,
    });
    console.log(`deploy/Dockerfile replayed in ${((Date.now() - started) / 1000).toFixed(1)} s:\n  ${notes.join('\n  ')}`);
  }, REPLAY_TIMEOUT_MS);

  afterAll(async () => {
    try {
      if (child && child.exitCode === null && child.signalCode === null) {
        const gone = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
        child.kill('SIGKILL');
        await within(gone, EXIT_TIMEOUT_MS, 'killing the replayed image').catch(() => {});
      }
      if (pg) await within(pg.drop(), 30_000, 'dropping the test database');
    } finally {
      const started = Date.now();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      console.log(`scratch folder removed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  }, 120_000);

  it('holds the patched postgres.js driver in its node_modules', () => {
    expect(missingDriverPatch(join(app(), 'node_modules'))).toEqual([]);
  });

  it('holds no devDependency', () => {
    const lock = JSON.parse(readFileSync(join(app(), 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([path, entry]) => path.startsWith('node_modules/') && entry.dev);
    expect(devOnly.length).toBeGreaterThan(0);
    expect(devOnly.map(([path]) => path).filter((path) => existsSync(join(app(), path)))).toEqual([]);
  });

  it('migrates, then serves until /healthz answers 200 and its HEALTHCHECK passes; SIGTERM stops it with 0', async () => {
    pg = await createPgDatabase('image');
    const port = await freePort();
    // The metrics listener on a free port too: other brokers on this machine may hold the default one.
    const env: Record<string, string> = { PATH: hostEnv().PATH!, ...mappedEnv(runtime()), PORT: String(port), DATABASE_URL: pg.url, METRICS_LISTEN: '127.0.0.1:0' };
    const { command, args, cwd } = imageCommand(runtime());
    const proc = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let stdout = '';
    let stderr = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const output = () => `\nstdout: ${stdout.slice(-3000)}\nstderr: ${stderr.slice(-3000)}`;

    const deadline = Date.now() + SERVE_TIMEOUT_MS;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`the image exited (${proc.exitCode ?? proc.signalCode}) before /healthz answered${output()}`);
      if (Date.now() > deadline) throw new Error(`/healthz did not answer 200 within ${SERVE_TIMEOUT_MS} ms${output()}`);
      const status = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.status, () => 0);
      if (status === 200) break;
      await sleep(250);
    }
    expect(stderr, output()).toContain('migrations applied (postgres)');
    expect(stdout).toMatch(/"msg":"tasklease listening"/);
    // The image's data dir (TASKLEASE_DATA_DIR) is where the broker keeps its signing keys.
    expect(readdirSync(env.TASKLEASE_DATA_DIR!).length, 'files in the data dir').toBeGreaterThan(0);

    const check = runtime().healthcheck;
    expect(check, 'the image has a HEALTHCHECK').toBeTruthy();
    const probe = imageCommand(runtime(), check!);
    const probed = await new Promise<number>((resolve) => execFile(probe.command, probe.args, { cwd: probe.cwd, env, timeout: 10_000 }, (err) => resolve(err ? Number(err.code ?? 1) : 0)));
    expect(probed, 'HEALTHCHECK exit code').toBe(0);

    proc.kill('SIGTERM');
    expect(await within(exited, EXIT_TIMEOUT_MS, 'the image stopping on SIGTERM'), output()).toBe(0);
  }, SERVE_TIMEOUT_MS + 30_000);
});
