// `tasklease run` against a real broker on a loopback port, with a real child process:
// what the child sees (env, 0600 files, the AWS loopback endpoint through the AWS SDK),
// the leases released after it exits, its exit status passed on, refusals before any child,
// approvals waited for, and SIGTERM forwarded. Run on PGlite and on PostgreSQL.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { runProgram } from '../../src/cli/program.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { BIN, ROOT } from '../support/child-broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { serveBroker } from '../client/support.js';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/tasklease-run';
const ARCHIVE_ARN = 'arn:aws:iam::123456789012:role/tasklease-run-archive';
const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const NODE = process.execPath;

/** A child that records what it was given in `out` (argv[1]) and exits with `code`. */
const recorder = (code: number) => `
const fs = require('fs');
const file = process.env.DEMO_FILE;
fs.writeFileSync(process.argv[1], JSON.stringify({
  token: process.env.TASKLEASE_TOKEN_DEMO, mapped: process.env.DEMO_JWT, identity: process.env.TASKLEASE_TOKEN ?? null,
  gha: process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN ?? null,
  file, fileText: file ? fs.readFileSync(file, 'utf8') : null, mode: file ? fs.statSync(file).mode & 0o777 : null,
}));
process.exit(${code});`;

/** A child that fetches AWS credentials with the AWS SDK's container provider, and probes the endpoint. */
const awsChild = `
import { writeFileSync } from 'node:fs';
import { fromHttp } from '@aws-sdk/credential-providers';
const creds = await fromHttp({})();
const uri = process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
const noToken = (await fetch(uri)).status;
const wrongToken = (await fetch(uri, { headers: { authorization: 'not-the-token' } })).status;
const archive = await (await fetch(process.env.ARCHIVE_URI, { headers: { authorization: process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN } })).json();
writeFileSync(process.argv[1], JSON.stringify({ accessKeyId: creds.accessKeyId, expiration: creds.expiration, noToken, wrongToken, archiveKey: archive.AccessKeyId, uri }));`;

describe.each(DRIVERS)('tasklease run on %s', (driver) => {
  let database: TestDatabase;
  let aws: AwsFake;
  let t: TestBroker;
  let http: Awaited<ReturnType<typeof serveBroker>>;
  const dir = mkdtempSync(join(tmpdir(), 'tl-run-test-'));
  let n = 0;
  const outFile = () => join(dir, `out-${n++}.json`);

  beforeAll(async () => {
    // Real time: the AWS SDK compares Expiration with the wall clock.
    const clock = createManualClock(new Date());
    aws = await startAwsFake({ roles: [{ arn: ROLE_ARN }, { arn: ARCHIVE_ARN }], clock });
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, {
      clock,
      awsCredentials: aws.credentials,
      config: {
        backends: { aws: { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url, revocation: {} } },
        roles: [
          ...HARNESS_ROLES,
          { name: 'reports', backend: 'aws', ttl: '15m', allow: AGENTS, aws: { role_arn: ROLE_ARN } },
          { name: 'archive.read', backend: 'aws', ttl: '15m', allow: AGENTS, aws: { role_arn: ARCHIVE_ARN } },
          { name: 'gated', backend: 'local', allow: AGENTS, requires_approval: true },
        ],
      },
    });
    http = await serveBroker(t);
  });
  afterAll(async () => {
    await http?.close();
    await database?.drop();
    await aws?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const openTask = async (roles: string[]) =>
    (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles, ttl_seconds: 3600 })).json.task.id as string;
  const leasesOf = async (task: string) => (await t.call('GET', `/v1/leases?task=${task}`, { subject: 'admin' })).json.items as { id: string; role: string; status: string }[];
  // A GitHub Actions runner's means to mint the agent's identity: the child must not get them.
  const env = async () => ({ ...process.env, TASKLEASE_URL: http.url, TASKLEASE_TOKEN: await t.tokenFor('agent-1'), ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'gha-request-token' });

  /** `tasklease run <args>` in this process, its output captured. */
  async function run(args: string[]) {
    let stderr = '';
    const code = await runProgram(['run', ...args], { version: '0', env: await env(), io: { stdout: () => {}, stderr: (s) => (stderr += s) } });
    return { code, stderr };
  }

  it('gives a jwt role to the child in its default variable, a named one and a 0600 file, passes on its exit status, then releases the lease and removes the file', async () => {
    const task = await openTask(['demo']);
    const out = outFile();
    const { code, stderr } = await run(['--task', task, '--role', 'demo', '--env', 'DEMO_JWT=demo', '--file', 'DEMO_FILE=demo', '--', NODE, '-e', recorder(7), out]);
    expect(code, stderr).toBe(7);
    const seen = JSON.parse(readFileSync(out, 'utf8'));
    // --env given for the role replaces the default variable.
    expect(seen.token).toBeUndefined();
    expect(seen.mapped).toMatch(/^ey/);
    expect(seen.fileText).toBe(seen.mapped);
    expect(seen.mode).toBe(0o600);
    // The child holds the lease's credential, not the agent's identity, nor the means to mint it.
    expect(seen.identity).toBeNull();
    expect(seen.gha).toBeNull();
    expect(existsSync(seen.file)).toBe(false);
    const leases = await leasesOf(task);
    expect(leases).toHaveLength(1);
    expect(leases[0]!.status).not.toBe('active');
    // Nothing secret on the wrapper's output.
    expect(stderr).not.toContain(seen.mapped);
  });

  it('rewrites the file with the new token when a lease that cannot be renewed is re-issued', async () => {
    const task = await openTask(['demo']);
    const out = outFile();
    // `demo` does not renew: a 2-second lease is replaced before it ends. Its end is timed by the
    // broker's Date header (the real clock), so the broker's manual clock is brought to the real time.
    t.clock.set(new Date());
    const script = `
const fs = require('fs');
const first = fs.readFileSync(process.env.DEMO_FILE, 'utf8');
const started = Date.now();
const timer = setInterval(() => {
  const now = fs.readFileSync(process.env.DEMO_FILE, 'utf8');
  if (now !== first || Date.now() - started > 20000) {
    fs.writeFileSync(process.argv[1], JSON.stringify({ first, now, mode: fs.statSync(process.env.DEMO_FILE).mode & 0o777 }));
    process.exit(now !== first ? 0 : 3);
  }
}, 50);`;
    const { code, stderr } = await run(['--task', task, '--role', 'demo', '--ttl', '2', '--file', 'DEMO_FILE=demo', '--', NODE, '-e', script, out]);
    expect(code, stderr).toBe(0);
    const seen = JSON.parse(readFileSync(out, 'utf8'));
    expect(seen.now).toMatch(/^ey/);
    expect(seen.mode).toBe(0o600);
    const leases = await leasesOf(task);
    expect(leases.length).toBeGreaterThanOrEqual(2);
    expect(leases.map((l) => l.status)).not.toContain('active');
  }, 30_000);

  it('sets TASKLEASE_TOKEN_<ROLE> for a jwt role given no --env or --file', async () => {
    const task = await openTask(['demo']);
    const out = outFile();
    const { code, stderr } = await run(['--task', task, '--role', 'demo', '--', NODE, '-e', recorder(0), out]);
    expect(code, stderr).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).token).toMatch(/^ey/);
  });

  it('refuses in one line with the code, starts no child, and releases the leases it had already taken', async () => {
    const task = await openTask(['demo']);
    const out = outFile();
    const denied = await run(['--task', task, '--role', 'demo', '--role', 'special', '--', NODE, '-e', recorder(0), out]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^tasklease: role special: role_denied: .*\n$/);
    expect(existsSync(out)).toBe(false);
    const leases = await leasesOf(task);
    expect(leases.map((l) => l.status)).not.toContain('active');

    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'succeeded' });
    const closed = await run(['--task', task, '--role', 'demo', '--', NODE, '-e', recorder(0), out]);
    expect(closed.code).toBe(1);
    expect(closed.stderr).toMatch(/^tasklease: role demo: task_not_open: .*\n$/);
    expect(existsSync(out)).toBe(false);
  });

  it('stops at a gated role with the approval id, or waits for the decision with --wait-approval', async () => {
    const task = await openTask(['gated']);
    const out = outFile();
    const pending = await run(['--task', task, '--role', 'gated', '--', NODE, '-e', recorder(0), out]);
    expect(pending.code).toBe(1);
    expect(pending.stderr).toMatch(/^tasklease: role gated: approval_pending: .*--wait-approval.*\n$/);
    expect(existsSync(out)).toBe(false);

    let stderr = '';
    const waiting = runProgram(['run', '--task', task, '--role', 'gated', '--wait-approval', '--env', 'DEMO_JWT=gated', '--', NODE, '-e', recorder(0), out], {
      version: '0',
      env: await env(),
      io: { stdout: () => {}, stderr: (s) => (stderr += s) },
    });
    const id = await vi.waitFor(
      () => {
        const match = /needs approval ([0-9a-f-]{36}); waiting/.exec(stderr);
        if (!match) throw new Error(`no approval id yet: ${stderr}`);
        return match[1]!;
      },
      { timeout: 20_000, interval: 100 },
    );
    expect((await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'admin' }, { reason: 'test' })).status).toBe(200);
    expect(await waiting, stderr).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).mapped).toMatch(/^ey/);
  });

  it('serves AWS credentials to the AWS SDK in the child on a loopback endpoint that wants the per-run token, one path per role', async () => {
    const task = await openTask(['reports', 'archive.read']);
    const out = outFile();
    const { code, stderr } = await run(['--task', task, '--role', 'reports', '--role', 'archive.read', '--env', 'ARCHIVE_URI=archive.read', '--', NODE, '--input-type=module', '-e', awsChild, out]);
    expect(code, stderr).toBe(0);
    const seen = JSON.parse(readFileSync(out, 'utf8'));
    expect(seen.accessKeyId).toMatch(/^ASIA/);
    expect(seen.archiveKey).toMatch(/^ASIA/);
    expect(seen.archiveKey).not.toBe(seen.accessKeyId);
    expect(seen.uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/role\/reports$/);
    expect(seen.noToken).toBe(403);
    expect(seen.wrongToken).toBe(403);
    const leases = await leasesOf(task);
    expect(leases.map((l) => l.role).sort()).toEqual(['archive.read', 'reports']);
    expect(leases.map((l) => l.status)).not.toContain('active');
    // The endpoint is gone with the wrapper.
    await expect(fetch(seen.uri)).rejects.toThrow();
  });

  it('forwards SIGTERM to the child, exits 128+15, and releases the lease', async () => {
    const task = await openTask(['demo']);
    const ready = join(dir, `ready-${n++}`);
    // The child says it started, then waits to be killed (it has no SIGTERM handler of its own).
    const script = `require('fs').writeFileSync(process.argv[1], 'up'); setInterval(() => {}, 1000);`;
    const wrapper = spawn(NODE, [BIN, 'run', '--task', task, '--role', 'demo', '--', NODE, '-e', script, ready], { cwd: ROOT, env: await env(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    wrapper.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => wrapper.on('exit', (code, signal) => resolve({ code, signal })));
    try {
      await vi.waitFor(() => expect(existsSync(ready)).toBe(true), { timeout: 60_000, interval: 100 });
      expect((await leasesOf(task))[0]!.status).toBe('active');
      wrapper.kill('SIGTERM');
      expect(await exited, stderr).toEqual({ code: 143, signal: null });
    } finally {
      wrapper.kill('SIGKILL');
    }
    expect((await leasesOf(task))[0]!.status).not.toBe('active');
  }, 90_000);

  it('stops waiting for an approval on SIGTERM: exit 143, no child started', async () => {
    const task = await openTask(['gated']);
    const out = outFile();
    const wrapper = spawn(NODE, [BIN, 'run', '--task', task, '--role', 'gated', '--wait-approval', '--', NODE, '-e', recorder(0), out], { cwd: ROOT, env: await env(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    wrapper.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => wrapper.on('exit', (code, signal) => resolve({ code, signal })));
    try {
      await vi.waitFor(() => expect(stderr).toContain('; waiting'), { timeout: 60_000, interval: 100 });
      wrapper.kill('SIGTERM');
      expect(await exited, stderr).toEqual({ code: 143, signal: null });
    } finally {
      wrapper.kill('SIGKILL');
    }
    expect(existsSync(out)).toBe(false);
  }, 90_000);
});
