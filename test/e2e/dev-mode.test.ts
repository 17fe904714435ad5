// The new-user flow, end to end: `tasklease serve` in dev mode as a real child
// process, driven over real HTTP with tokens from `tasklease dev token`, on
// embedded PGlite and on the real PostgreSQL.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  childEnv,
  createPgDatabase,
  EXIT_TIMEOUT_MS,
  killAllChildren,
  runCli,
  sleep,
  startBroker,
  within,
  type Broker,
} from '../support/child-broker.js';

const HTTP_TIMEOUT_MS = 10_000;
const REVOKE_POLL_MS = 3_000;

const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const DATABASES = ['pglite', 'postgres'] as const;

describe.each(DATABASES)('dev mode end to end on %s', (database) => {
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  let server: Broker | undefined;
  let dropDatabase: (() => Promise<void>) | undefined;
  const tokens: Record<string, string> = {};
  let taskId = '';
  let credential = '';
  let leaseId = '';

  const call = async (method: string, path: string, as: string, body?: unknown, form?: Record<string, string>) => {
    const headers: Record<string, string> = { authorization: `Bearer ${tokens[as]}` };
    let payload: string | undefined;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(form).toString();
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    return fetch(`${server!.url}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  };
  const introspect = async () => {
    const res = await call('POST', '/v1/introspect', 'agent-1', undefined, { token: credential });
    expect(res.status).toBe(200);
    return (await res.json()) as { active: boolean; jti?: string };
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), `tasklease-e2e-${database}-`));
    const extra: Record<string, string> = { TASKLEASE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' };
    if (database === 'postgres') {
      const pg = await createPgDatabase('e2e');
      dropDatabase = pg.drop;
      extra.DATABASE_URL = pg.url;
    }
    env = childEnv(extra);
    server = await startBroker(env);
    for (const subject of ['orchestrator', 'agent-1', 'agent-2', 'admin']) {
      const result = await runCli(['dev', 'token', subject], env);
      expect(result.code, `dev token ${subject}: ${result.stderr}`).toBe(0);
      const lines = result.stdout.split('\n').filter((l) => l !== '');
      expect(lines, `dev token ${subject} prints exactly one line`).toHaveLength(1);
      expect(result.stdout).toBe(`${lines[0]}\n`);
      expect(lines[0]).toMatch(JWT_RE);
      tokens[subject] = lines[0]!;
    }
  });

  afterAll(async () => {
    try {
      await killAllChildren();
    } finally {
      try {
        if (dropDatabase) await within(dropDatabase(), 30_000, 'dropping the test database');
      } finally {
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    }
  });

  it('prints the dev banner with the curl commands', () => {
    const out = server!.stdout();
    expect(out).toContain('NOT FOR PRODUCTION');
    expect(out).toContain(`curl -s ${server!.url}/v1/tasks -H "authorization: Bearer $ORCH"`);
    expect(out).toContain(`curl -s ${server!.url}/v1/credentials -H "authorization: Bearer $AGENT"`);
    expect(out).toContain(`curl -s ${server!.url}/v1/introspect`);
    expect(out).toContain(`curl -s ${server!.url}/v1/tasks/$TASK/complete`);
    expect(out).toContain('dev token orchestrator');
    expect(server!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(server!.url).not.toMatch(/:0$/);
  });

  it('orchestrator opens a task', async () => {
    const res = await call('POST', '/v1/tasks', 'orchestrator', {
      agent: { subject: 'agent-1' },
      roles: ['demo'],
      ttl_seconds: 600,
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const body = (await res.json()) as { task: { id: string; status: string } };
    expect(body.task).toMatchObject({ status: 'open' });
    taskId = body.task.id;
  });

  it('agent-1 gets a credential, not cached', async () => {
    const res = await call('POST', '/v1/credentials', 'agent-1', { task: taskId, role: 'demo' });
    expect(res.status, await res.clone().text()).toBe(201);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { lease: { id: string; status: string; task: string }; credentials: { token?: unknown } };
    expect(body.lease).toMatchObject({ task: taskId, status: 'active' });
    expect(typeof body.credentials.token).toBe('string');
    credential = body.credentials.token as string;
    leaseId = body.lease.id;
    expect(credential).toMatch(JWT_RE);
  });

  it('introspection says the credential is active, with jti = lease id', async () => {
    const result = await introspect();
    expect(result.active).toBe(true);
    expect(result.jti).toBe(leaseId);
  });

  it("agent-2 cannot see agent-1's lease", async () => {
    const res = await call('GET', `/v1/leases/${leaseId}`, 'agent-2');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const body = (await res.json()) as { status: number; code: string };
    expect(body.status).toBe(404);
  });

  it('completing the task revokes the credential', async () => {
    const started = performance.now();
    const res = await call('POST', `/v1/tasks/${taskId}/complete`, 'orchestrator', { outcome: 'success' });
    expect(res.status, await res.clone().text()).toBe(202);
    const body = (await res.json()) as { revoking: number; task: { status: string } };
    expect(body.revoking).toBe(1);
    expect(body.task.status).toBe('completed');

    let inactiveAt: number | undefined;
    let revokedAt: number | undefined;
    let lease: { id: string; status: string; reason: string | null } | undefined;
    while (performance.now() - started < REVOKE_POLL_MS && (inactiveAt === undefined || revokedAt === undefined)) {
      if (inactiveAt === undefined && (await introspect()).active === false) inactiveAt = performance.now() - started;
      if (revokedAt === undefined) {
        const got = await call('GET', `/v1/tasks/${taskId}`, 'orchestrator');
        expect(got.status).toBe(200);
        const view = (await got.json()) as { leases: { id: string; status: string; reason: string | null }[] };
        lease = view.leases.find((l) => l.id === leaseId);
        if (lease?.status === 'revoked') revokedAt = performance.now() - started;
      }
      if (inactiveAt === undefined || revokedAt === undefined) await sleep(25);
    }
    console.log(
      `[${database}] complete -> introspection inactive: ${inactiveAt?.toFixed(0) ?? 'never'} ms; ` +
        `complete -> lease revoked: ${revokedAt?.toFixed(0) ?? `not within ${REVOKE_POLL_MS}`} ms`,
    );
    expect(inactiveAt, 'introspection turned inactive').toBeDefined();
    expect(lease).toMatchObject({ id: leaseId, status: 'revoked', reason: 'task_completed' });
  });

  it("dev mode's resource server demo-api polls the security event of the ended credential, as the README shows", async () => {
    const res = await fetch(`${server!.url}/ssf/poll`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('demo-api:demo-api-dev-secret').toString('base64')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ returnImmediately: true }),
    });
    expect(res.status).toBe(200);
    const sets = Object.values(((await res.json()) as { sets: Record<string, string> }).sets);
    expect(sets.map((set) => (decodeJwt(set).sub_id as { jti: string }).jti)).toContain(leaseId);
  });

  it('suspending agent-1 mid-flow revokes its lease and refuses its next request with a clear reason; resume undoes it', async () => {
    const opened = await call('POST', '/v1/tasks', 'orchestrator', { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 });
    const task = ((await opened.json()) as { task: { id: string } }).task.id;
    const issued = await call('POST', '/v1/credentials', 'agent-1', { task, role: 'demo' });
    const lease = ((await issued.json()) as { lease: { id: string; agent: string; agent_owner: string } }).lease;
    // Dev mode registered agent-1 on first sight, owned by `dev`.
    expect(lease).toMatchObject({ agent: 'agent-1', agent_owner: 'dev' });

    const suspended = await call('POST', '/v1/agents/agent-1/suspend', 'admin', { reason: 'trying the switch' });
    expect(suspended.status, await suspended.clone().text()).toBe(200);
    expect(((await suspended.json()) as { revoking: number }).revoking).toBe(1);
    const refused = await call('POST', '/v1/credentials', 'agent-1', { task, role: 'demo' });
    expect(refused.status).toBe(403);
    const problem = (await refused.json()) as { code: string; detail: string; agent: string };
    expect(problem).toMatchObject({ code: 'agent_suspended', agent: 'agent-1' });
    expect(problem.detail).toContain('suspended');
    let status = '';
    for (let i = 0; i < REVOKE_POLL_MS / 25 && status !== 'revoked'; i++) {
      const got = await call('GET', `/v1/leases/${lease.id}`, 'admin');
      const view = (await got.json()) as { lease: { status: string; reason: string } };
      status = view.lease.status;
      expect(view.lease.reason).toBe('agent_suspended');
      if (status !== 'revoked') await sleep(25);
    }
    expect(status).toBe('revoked');
    // agent-2 is another agent: untouched.
    const other = await call('POST', '/v1/tasks', 'orchestrator', { agent: { subject: 'agent-2' }, roles: ['demo'], ttl_seconds: 600 });
    const otherTask = ((await other.json()) as { task: { id: string } }).task.id;
    expect((await call('POST', '/v1/credentials', 'agent-2', { task: otherTask, role: 'demo' })).status).toBe(201);

    expect((await call('POST', '/v1/agents/agent-1/resume', 'admin', { reason: 'done trying' })).status).toBe(200);
    expect((await call('POST', '/v1/credentials', 'agent-1', { task, role: 'demo' })).status).toBe(201);
  });

  it("refuses a write role on a production task by dev mode's Cedar policy, and the dry run names it", async () => {
    const opened = await call('POST', '/v1/tasks', 'orchestrator', { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600, labels: { environment: 'production' } });
    expect(opened.status).toBe(201);
    const prod = ((await opened.json()) as { task: { id: string } }).task.id;
    const refused = await call('POST', '/v1/credentials', 'agent-1', { task: prod, role: 'demo' });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ code: 'role_denied' });
    const dry = await call('POST', '/v1/policy/evaluate', 'admin', { identity: { issuer: 'dev', subject: 'agent-1' }, task: prod, role: 'demo' });
    expect(dry.status).toBe(200);
    expect(await dry.json()).toMatchObject({ decision: 'deny', code: 'role_denied', reason: 'forbidden by policy dev:no-writes-in-production', policies: ['dev:no-writes-in-production'], policy_set: expect.stringMatching(/^[0-9a-f]{16}$/) });
  });

  it('serves JWKS, health, readiness and the OpenAPI document', async () => {
    const get = (path: string) => fetch(`${server!.url}${path}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });

    const jwks = await get('/.well-known/jwks.json');
    expect(jwks.status).toBe(200);
    const keys = ((await jwks.json()) as { keys: unknown[] }).keys;
    expect(Array.isArray(keys)).toBe(true);
    expect(keys.length).toBeGreaterThan(0);

    expect((await get('/healthz')).status).toBe(200);
    const ready = await get('/readyz');
    expect(ready.status, await ready.clone().text()).toBe(200);

    // Readiness says ready or not, and which policy set this replica runs, nothing more; metrics are on their own listener only.
    expect(await ready.json()).toEqual({ status: 'ready', policy_set: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect((await get('/metrics')).status).toBe(404);
    const metricsUrl = server!
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; url?: string })
      .find((l) => l.msg === 'metrics listening')?.url;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const metrics = await fetch(metricsUrl!, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('tasklease_leases{status="active"}');

    const openapi = await get('/openapi.json');
    expect(openapi.status).toBe(200);
    expect(openapi.headers.get('content-type')).toMatch(/^application\/json/);
    const doc = (await openapi.json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toContain('/v1/credentials');
  });

  it('exits 0 on SIGTERM', async () => {
    expect(server!.child.kill('SIGTERM')).toBe(true);
    const { code, signal } = await within(server!.exited, EXIT_TIMEOUT_MS, 'waiting for the server to exit after SIGTERM');
    expect({ code, signal }, server!.stderr()).toEqual({ code: 0, signal: null });
    expect(server!.stdout()).toContain('"msg":"stopped"');
  });

  it('audit verify finds the chain intact', async () => {
    const result = await runCli(['audit', 'verify'], env);
    expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
    expect(result.stdout).toContain('intact');
  });
});
