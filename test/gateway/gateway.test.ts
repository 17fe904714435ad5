// The gateway against a broker over real HTTP: a bearer upstream gets the task's jwt while the agent never
// sees it; rules refuse what they deny; the task's completion closes the route at once; every call, allowed
// or refused, reaches the audit trail in batches. The AWS CLI reads from an S3-like upstream that verifies
// SigV4 with the session's keys, the CLI holding only dummy keys.
import { execFile } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/cli/program.js';
import { createClient } from '../../src/client/client.js';
import { GatewaySchema } from '../../src/gateway/config.js';
import { createGatewayLeases } from '../../src/gateway/leases.js';
import { createGateway, type Gateway } from '../../src/gateway/proxy.js';
import { serveBroker } from '../client/support.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { createManualClock } from '../../src/clock.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { listenLocal } from '../support/listen.js';
import { startS3Fake } from '../support/s3-fake.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const ROLE_ARN = 'arn:aws:iam::123456789012:role/gateway-reports';
const run = promisify(execFile);

/** A bearer upstream: records what it was sent, answers with the path and whether a credential came (never the credential). */
async function startUpstream() {
  const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ path: req.url, authorized: typeof req.headers.authorization === 'string' }));
    });
  });
  const port = await listenLocal(server);
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))) };
}

describe.each(DRIVERS)('the gateway on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  let broker!: Awaited<ReturnType<typeof serveBroker>>;
  let upstream!: Awaited<ReturnType<typeof startUpstream>>;
  let gateway!: Gateway;
  let base!: string;
  const logs: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, {
      config: { roles: [...HARNESS_ROLES, { name: 'reports-api', backend: 'local', ttl: '15m', allow: AGENTS, jwt: { audience: 'https://reports.example' } }] },
    });
    broker = await serveBroker(t);
    const config = GatewaySchema.parse({
      listen: '127.0.0.1:0',
      routes: [
        { name: 'reports', upstream: upstream.url, role: 'reports-api', allow: [{ method: 'GET', path: '/v1/reports/**' }, { method: 'POST', path: '/v1/reports/*/notes' }], deny: [{ path: '/v1/reports/secret/**' }] },
      ],
    });
    const leases = createGatewayLeases({ url: broker.url, log: (line, msg) => logs.push(`${msg} ${JSON.stringify(line)}`) });
    // Shared mode: each call brings its identity (Proxy-Authorization) and names its task.
    gateway = createGateway({ config, leases, log: (line, msg) => logs.push(`${msg} ${JSON.stringify(line)}`) });
    base = `http://127.0.0.1:${await gateway.listen(0)}`;
  });
  afterAll(async () => {
    await gateway?.stop();
    await broker?.close();
    await upstream?.close();
    await database?.drop();
  });

  const openTask = async (agent: string) => (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['reports-api'], ttl_seconds: 3600 })).json.task.id as string;
  const call = async (agent: string, task: string, path: string, init: RequestInit = {}) => {
    const res = await fetch(`${base}${path}`, { ...init, redirect: 'manual', headers: { 'proxy-authorization': `Bearer ${await t.tokenFor(agent)}`, 'tasklease-task': task, ...(init.headers as Record<string, string>) } });
    return { status: res.status, text: await res.text(), headers: res.headers };
  };

  it("injects the task's jwt for the upstream; the agent's request and answer never carry it", async () => {
    const task = await openTask('agent-g1');
    const answer = await call('agent-g1', task, '/reports/v1/reports/2026?page=2');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toEqual({ path: '/v1/reports/2026?page=2', authorized: true });
    const sent = upstream.seen.at(-1)!;
    // The upstream got a bearer jwt of the task's lease, for its audience; no identity token, no gateway header.
    const token = /^Bearer (.+)$/.exec(sent.headers.authorization!)![1]!;
    const { payload } = await jwtVerify(token, createLocalJWKSet((await t.broker.keys.jwks()) as JSONWebKeySet), { audience: 'https://reports.example' });
    expect(payload).toMatchObject({ task, role: 'reports-api', sub: 'agent-g1' });
    expect(sent.headers['proxy-authorization']).toBeUndefined();
    expect(sent.headers['tasklease-task']).toBeUndefined();
    expect(sent.headers.host).toBe(new URL(upstream.url).host);
    // Nothing the agent received carries the token.
    expect(answer.text).not.toContain(token);
    expect([...answer.headers.values()].join('\n')).not.toContain(token);
    // One lease for the task, reused by the next call.
    await call('agent-g1', task, '/reports/v1/reports/again');
    expect(upstream.seen.at(-1)!.headers.authorization).toBe(sent.headers.authorization);
  });

  it('refuses what a deny rule names and what no allow rule names, with a problem naming the rule; the upstream never hears of it', async () => {
    const task = await openTask('agent-g2');
    const before = upstream.seen.length;
    const denied = await call('agent-g2', task, '/reports/v1/reports/secret/payroll');
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.text)).toMatchObject({ code: 'call_denied', rule: 'deny * /v1/reports/secret/**' });
    const other = await call('agent-g2', task, '/reports/v1/admin/users');
    expect(JSON.parse(other.text)).toMatchObject({ code: 'call_denied', rule: 'no allow rule matches' });
    expect((await call('agent-g2', task, '/reports/v1/reports/2026', { method: 'DELETE' })).status).toBe(403);
    expect((await call('agent-g2', task, '/reports/v1/reports/2026/notes', { method: 'POST', body: 'note' })).status).toBe(200);
    expect(upstream.seen.length).toBe(before + 1);
    expect((await call('agent-g2', task, '/nowhere/x')).status).toBe(404);
  });

  it("refuses another agent's task and a caller without an identity, as the broker does", async () => {
    const task = await openTask('agent-g3');
    const other = await call('agent-g4', task, '/reports/v1/reports/x');
    expect({ status: other.status, code: JSON.parse(other.text).code }).toEqual({ status: 403, code: 'task_not_found' });
    const anonymous = await fetch(`${base}/reports/v1/reports/x`, { headers: { 'tasklease-task': task } });
    expect(anonymous.status).toBe(401);
    // A token past its exp is refused before anything is asked or attached (a credential cached for its bytes included).
    const expired = await t.issuer.sign('agent-g3', {}, new Date(Date.now() - 2 * 3600_000));
    const late = await fetch(`${base}/reports/v1/reports/x`, { headers: { 'proxy-authorization': `Bearer ${expired}`, 'tasklease-task': task } });
    expect({ status: late.status, code: ((await late.json()) as { code: string }).code }).toEqual({ status: 401, code: 'token_expired' });
  });

  it('closes the route when the task completes: the next call is refused task_not_open, before the credential would expire', async () => {
    const task = await openTask('agent-g5');
    expect((await call('agent-g5', task, '/reports/v1/reports/x')).status).toBe(200);
    const completed = Date.now();
    expect((await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' })).status).toBe(202);
    let refused: { status: number; text: string } | undefined;
    while (Date.now() - completed < 10_000) {
      const answer = await call('agent-g5', task, '/reports/v1/reports/x');
      if (answer.status === 403) {
        refused = answer;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`[gateway ${driver}] task completed -> gateway refuses: ${Date.now() - completed} ms`);
    expect(JSON.parse(refused!.text)).toMatchObject({ code: 'task_not_open' });
  });

  it('tasklease run --gateway: the child calls its route by TASKLEASE_ROUTE_REPORTS; the upstream gets the jwt, the child never holds it', async () => {
    const task = await openTask('agent-g8');
    const dir = mkdtempSync(join(tmpdir(), 'tl-gw-run-'));
    const routes = join(dir, 'routes.yaml');
    writeFileSync(routes, `gateway:\n  routes:\n    - { name: reports, upstream: "${upstream.url}", role: reports-api, allow: [{ method: GET, path: "/v1/reports/**" }] }\n`);
    const out = join(dir, 'out.json');
    const child = `fetch(process.env.TASKLEASE_ROUTE_REPORTS + '/v1/reports/from-child').then((r) => r.text()).then((text) => require('node:fs').writeFileSync(process.argv[1], JSON.stringify({ text, env: process.env })))`;
    let stderr = '';
    const code = await runProgram(['run', '--task', task, '--gateway', routes, '--', process.execPath, '-e', child, out], {
      version: '0',
      env: { ...process.env, TASKLEASE_URL: broker.url, TASKLEASE_TOKEN: await t.tokenFor('agent-g8') },
      io: { stdout: () => {}, stderr: (x) => (stderr += x) },
    });
    expect(code, stderr).toBe(0);
    const seen = JSON.parse(readFileSync(out, 'utf8')) as { text: string; env: Record<string, string> };
    expect(JSON.parse(seen.text)).toEqual({ path: '/v1/reports/from-child', authorized: true });
    const token = /^Bearer (.+)$/.exec(upstream.seen.at(-1)!.headers.authorization!)![1]!;
    // Neither the credential nor the agent's identity is anywhere in the child's environment.
    expect(JSON.stringify(seen)).not.toContain(token);
    expect(seen.env.TASKLEASE_TOKEN).toBeUndefined();
    expect(seen.env.TASKLEASE_ROUTE_REPORTS).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/reports$/);
    // The gateway's lease was released when the child exited.
    const leases = (await t.call('GET', `/v1/leases?task=${task}`, { subject: 'admin' })).json.items as { status: string }[];
    expect(leases).toHaveLength(1);
    expect(leases[0]!.status).not.toBe('active');
  });

  it('audits every call, allowed or refused, identical ones counted, in batches, without a body, a query or a credential', async () => {
    const task = await openTask('agent-g6');
    // Three identical calls within the second: one event with their count.
    for (let i = 0; i < 3; i++) await call('agent-g6', task, '/reports/v1/reports/audited?token=not-logged');
    await call('agent-g6', task, '/reports/v1/reports/secret/x');
    // The reporter sends every second.
    let events: { action: string; decision: string; reason: string | null; details: Record<string, unknown> }[] = [];
    const counted = () => events.filter((e) => e.decision === 'allow').reduce((n, e) => n + (e.details.count as number), 0);
    for (let i = 0; i < 40 && (counted() < 3 || events.length < 2); i++) {
      await new Promise((r) => setTimeout(r, 100));
      events = (await t.call('GET', `/v1/audit?target=${encodeURIComponent(`task:${task}`)}&action=gateway.call`, { subject: 'admin' })).json.items;
    }
    // One event for the three (two, should a flush fall between them), and one for the refusal.
    expect(counted()).toBe(3);
    expect(events.length).toBeLessThanOrEqual(3);
    const allowed = events.find((e) => e.decision === 'allow')!;
    expect(allowed.details).toMatchObject({ route: 'reports', method: 'GET', path: '/v1/reports/audited', status: 200, via: 'gateway' });
    const refused = events.find((e) => e.decision === 'deny')!;
    expect(refused).toMatchObject({ reason: 'deny * /v1/reports/secret/**', details: { status: 403, path: '/v1/reports/secret/x' } });
    expect(JSON.stringify(events)).not.toContain('not-logged');
    // A batch naming a task that is not the caller's is refused whole.
    const forged = await t.call('POST', '/v1/gateway/calls', { subject: 'agent-g7' }, { calls: [{ task, route: 'reports', method: 'GET', path: '/x', status: 200, decision: 'allow', bytes_in: 0, bytes_out: 0, ms: 1, at: new Date().toISOString() }] });
    expect(forged.status).toBe(404);
  });

  it('bounds how fast an identity can write call records: past a burst of 20 batches, 429 with Retry-After', async () => {
    const task = await openTask('agent-g9');
    const batch = { calls: [{ task, route: 'reports', method: 'GET', path: '/x', status: 200, decision: 'allow', bytes_in: 0, bytes_out: 0, ms: 1, at: new Date().toISOString() }] };
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) statuses.push((await t.call('POST', '/v1/gateway/calls', { subject: 'agent-g9' }, batch)).status);
    expect(statuses.filter((s) => s === 202).length).toBeLessThanOrEqual(21);
    const limited = await t.call('POST', '/v1/gateway/calls', { subject: 'agent-g9' }, batch);
    expect({ status: limited.status, code: limited.json.code }).toEqual({ status: 429, code: 'rate_limited' });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('the gateway signing for S3, with the AWS CLI', () => {
  let database!: TestDatabase;
  let aws!: AwsFake;
  let s3!: Awaited<ReturnType<typeof startS3Fake>>;
  let t!: TestBroker;
  let broker!: Awaited<ReturnType<typeof serveBroker>>;
  let gateway!: Gateway;
  let base!: string;
  let task!: string;

  beforeAll(async () => {
    const clock = createManualClock(new Date());
    aws = await startAwsFake({ roles: [{ arn: ROLE_ARN }], clock });
    s3 = await startS3Fake(aws, { 'reports-bucket/2026/q4.csv': 'region,total\nemea,42\n', 'other-bucket/x': 'no' });
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, {
      clock,
      awsCredentials: aws.credentials,
      config: {
        backends: { aws: { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url, revocation: {} } },
        roles: [...HARNESS_ROLES, { name: 'reports-read', backend: 'aws', ttl: '15m', allow: AGENTS, aws: { role_arn: ROLE_ARN } }],
      },
    });
    broker = await serveBroker(t);
    task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-s3' }, roles: ['reports-read'], ttl_seconds: 3600 })).json.task.id;
    const config = GatewaySchema.parse({ listen: '127.0.0.1:0', routes: [{ name: 's3', upstream: s3.url, role: 'reports-read', service: 's3', allow: [{ method: 'GET', path: '/reports-bucket/**' }, { method: 'HEAD', path: '/reports-bucket/**' }] }] });
    const leases = createGatewayLeases({ url: broker.url, log: () => {} });
    // Sidecar mode: the gateway asks with the agent's identity, for its task; the agent sends plain calls.
    const token = await t.tokenFor('agent-s3');
    gateway = createGateway({ config, leases, log: () => {}, sidecar: { asker: leases.self(createClient({ url: broker.url, token })), task } });
    base = `http://127.0.0.1:${await gateway.listen(0)}`;
  });
  afterAll(async () => {
    await gateway?.stop();
    await broker?.close();
    await s3?.close();
    await aws?.close();
    await database?.drop();
  });

  /** The AWS CLI v2 (Debian's), with dummy keys and the gateway's route as S3's endpoint. */
  async function awsCli(args: string[]) {
    const home = mkdtempSync(join(tmpdir(), 'tl-gw-aws-'));
    writeFileSync(join(home, 'config'), '[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n');
    const env = { PATH: process.env.PATH, HOME: home, AWS_CONFIG_FILE: join(home, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(home, 'none'), AWS_ACCESS_KEY_ID: 'AKIDUMMYGATEWAYKEY00', AWS_SECRET_ACCESS_KEY: 'dummy-secret-the-gateway-replaces', AWS_EC2_METADATA_DISABLED: 'true' };
    return run('/usr/bin/aws', ['--endpoint-url', `${base}/s3`, ...args], { env }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  }

  it('reads an object through the gateway: re-signed with the session keys, the dummy keys never reach S3', async () => {
    const out = await awsCli(['s3', 'cp', 's3://reports-bucket/2026/q4.csv', '-']);
    expect(out.stderr).toBe('');
    expect(out.stdout).toBe('region,total\nemea,42\n');
    const sent = s3.requests.at(-1)!;
    expect(sent.url).toBe('/reports-bucket/2026/q4.csv');
    expect(sent.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=ASIA/);
    expect(sent.headers.authorization).not.toContain('AKIDUMMYGATEWAYKEY00');
    expect(sent.headers['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD');
  });

  it("refuses another bucket by rule, and S3 itself refuses what the gateway did not sign (the CLI's own signature)", async () => {
    const denied = await awsCli(['s3', 'cp', 's3://other-bucket/x', '-']);
    expect(denied.code).not.toBe(0);
    expect(s3.requests.some((r) => r.url.startsWith('/other-bucket'))).toBe(false);
    // Straight to S3 with the dummy keys: refused there.
    const direct = await run('/usr/bin/aws', ['--endpoint-url', s3.url, 's3', 'cp', 's3://reports-bucket/2026/q4.csv', '-'], {
      env: { PATH: process.env.PATH, HOME: tmpdir(), AWS_ACCESS_KEY_ID: 'AKIDUMMYGATEWAYKEY00', AWS_SECRET_ACCESS_KEY: 'x', AWS_DEFAULT_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' },
    }).catch((e: { stderr: string }) => e);
    expect((direct as { stderr: string }).stderr).toMatch(/InvalidAccessKeyId|Forbidden|403/);
  });

  it('refuses the next call within a second of the task completing', async () => {
    const completed = Date.now();
    expect((await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' })).status).toBe(202);
    let status = 0;
    while (Date.now() - completed < 10_000) {
      status = (await fetch(`${base}/s3/reports-bucket/2026/q4.csv`)).status;
      if (status === 403) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`[gateway s3] task completed -> gateway refuses: ${Date.now() - completed} ms`);
    expect(status).toBe(403);
  });
});
