import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirLockedError, lockDataDir } from '../../src/db/data-dir-lock.js';
import { childEnv, killAllChildren, killBroker, runCli, startBroker, tempDataDir } from '../support/child-broker.js';

const LOCK = 'tasklease.lock';

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

describe('lockDataDir (one process)', () => {
  const dirs: string[] = [];
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasklease-lock-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const holder = (over: Record<string, unknown>) => JSON.stringify({ pid: 1, host: hostname(), process_started: 0, since: '2030-01-01T00:00:00.000Z', ...over });

  it('refuses a second open in the same process, and frees the directory on release', () => {
    const dir = fresh();
    const lock = lockDataDir(dir);
    expect(() => lockDataDir(dir)).toThrow(/already open in this process/);
    lock.release();
    expect(existsSync(join(dir, LOCK))).toBe(false);
    lockDataDir(dir).release();
  });

  it('takes over a lock whose holder died, or whose pid now names this process', async () => {
    for (const pid of [await deadPid(), process.pid]) {
      const dir = fresh();
      writeFileSync(join(dir, LOCK), holder({ pid }));
      const lock = lockDataDir(dir);
      expect(JSON.parse(readFileSync(join(dir, LOCK), 'utf8')).pid).toBe(process.pid);
      lock.release();
    }
  });

  it('refuses while a live process on this host holds it, naming the directory and the process', () => {
    const dir = fresh();
    // pid 1 is always alive (init); kill(1, 0) answers EPERM to anyone but root.
    writeFileSync(join(dir, LOCK), holder({ pid: 1 }));
    const err = (() => {
      try {
        lockDataDir(dir);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(DataDirLockedError);
    expect(err!.message).toContain(dir);
    expect(err!.message).toContain(`process 1 on host ${hostname()}`);
  });

  it('takes over a lock whose pid is alive but started after the holder did (a container restarted on its volume: pid 1 again)', () => {
    const started = readFileSync('/proc/1/stat', 'utf8');
    const pid1Start = started.slice(started.lastIndexOf(')') + 2).split(' ')[19]!;
    const held = fresh();
    writeFileSync(join(held, LOCK), holder({ pid: 1, proc_start: pid1Start }));
    expect(() => lockDataDir(held)).toThrow(/process 1 on host/);
    const restarted = fresh();
    writeFileSync(join(restarted, LOCK), holder({ pid: 1, proc_start: String(Number(pid1Start) + 1) }));
    lockDataDir(restarted).release();
  });

  it('judges a holder in another pid namespace (another container on the volume, or this one before a restart) by its heartbeat', () => {
    const dir = fresh();
    const path = join(dir, LOCK);
    // pid 1 is alive here, but this pid 1 is not that namespace's pid 1.
    writeFileSync(path, holder({ pid: 1, pid_ns: 'pid:[1]' }));
    expect(() => lockDataDir(dir)).toThrow(/process 1 on host/);
    const old = new Date(Date.now() - 31_000);
    utimesSync(path, old, old);
    lockDataDir(dir).release();
  });

  it('keeps a live pid whose start time cannot be told (no /proc there) as the holder, however long since its heartbeat', () => {
    const dir = fresh();
    const path = join(dir, LOCK);
    writeFileSync(path, holder({ pid: 1 }));
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(path, old, old);
    expect(() => lockDataDir(dir)).toThrow(/process 1 on host/);
  });

  it('frees the directory when its holder exits without closing (process.exit on a fatal error)', () => {
    const dir = fresh();
    const script = `import { lockDataDir } from ${JSON.stringify(new URL('../../src/db/data-dir-lock.ts', import.meta.url).pathname)}; lockDataDir(${JSON.stringify(dir)}); process.exit(1);`;
    const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(existsSync(join(dir, LOCK))).toBe(false);
  });

  it('treats a lock from another host as held while it is touched, and as its dead holder once untouched for 30 s', () => {
    const dir = fresh();
    const path = join(dir, LOCK);
    writeFileSync(path, holder({ pid: 4242, host: 'elsewhere.example' }));
    expect(() => lockDataDir(dir)).toThrow(/process 4242 on host elsewhere\.example/);
    const old = new Date(Date.now() - 31_000);
    utimesSync(path, old, old);
    lockDataDir(dir).release();
  });
});

describe('a PGlite data directory across real processes', () => {
  const data = tempDataDir('lock');
  afterAll(async () => {
    await killAllChildren();
    data.remove();
  });
  const env = childEnv({ TASKLEASE_DATA_DIR: data.dir, PORT: '0', HOST: '127.0.0.1' });

  it('refuses sweep, migrate and audit verify beside a running serve, and recovers once serve is SIGKILLed', async () => {
    const broker = await startBroker(env);
    for (const command of [['sweep'], ['migrate'], ['audit', 'verify']]) {
      const result = await runCli(command, env);
      expect(result.code, `${command.join(' ')}: ${result.stdout} ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain(`the PGlite data directory ${data.dir} is in use by process ${broker.pid} on host ${hostname()}`);
    }
    const second = await runCli(['serve'], env);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`in use by process ${broker.pid}`);

    await killBroker(broker);
    expect(existsSync(join(data.dir, LOCK))).toBe(true);
    const migrated = await runCli(['migrate'], env);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(existsSync(join(data.dir, LOCK))).toBe(false);
  }, 120_000);

  it('a serve whose metrics port is taken exits 1 before serving, says why, and leaves the directory free', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const result = await runCli(['serve'], { ...env, METRICS_LISTEN: `127.0.0.1:${port}` }, 90_000);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stdout).toContain('the metrics listener could not start');
      expect(result.stdout).not.toContain('tasklease listening');
      expect(existsSync(join(data.dir, LOCK))).toBe(false);
    } finally {
      taken.close();
    }
  }, 120_000);
});
