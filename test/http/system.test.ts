import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { auditEvents } from '../../src/db/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { ADMIN_STATIC_TOKEN, startTestBroker, useTestBroker, type TestBroker } from '../support/broker.js';

describe('system endpoints and the HTTP envelope', () => {
  let database: TestDatabase;
  let t: TestBroker;
  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database);
  });
  afterAll(() => database?.drop());

  it('publishes an OpenAPI document generated from the route schemas', async () => {
    const res = await t.call('GET', '/openapi.json', {});
    expect(res.status).toBe(200);
    expect(res.json.openapi).toBe('3.1.0');
    for (const path of ['/v1/credentials', '/v1/leases/{id}', '/v1/tasks', '/v1/tasks/{id}/complete', '/v1/leases', '/v1/revocations', '/v1/audit', '/v1/introspect']) {
      expect(Object.keys(res.json.paths), path).toContain(path);
    }
    expect(res.json.components.schemas.CredentialRequest.required).toEqual(['task', 'role']);
  });

  it('serves health, readiness and the JWKS without a token', async () => {
    expect((await t.call('GET', '/healthz', {})).json).toEqual({ status: 'ok' });
    const ready = await t.call('GET', '/readyz', {});
    expect({ status: ready.status, json: ready.json }).toEqual({ status: 200, json: { status: 'ready', policy_set: expect.stringMatching(/^[0-9a-f]{16}$/) } });
    const jwks = await t.call('GET', '/.well-known/jwks.json', {});
    expect(jwks.json.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.json.keys[0].d).toBeUndefined();
  });

  it('names every request itself, and records a sane caller X-Request-Id beside its own in the log and the audit event', async () => {
    const own = await t.call('GET', '/v1/nowhere', {});
    expect(own.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(own.json.request_id).toBe(own.headers.get('x-request-id'));

    const open = async (clientId: string) => {
      const res = await t.broker.app.request('/v1/tasks', {
        method: 'POST',
        headers: { authorization: `Bearer ${await t.tokenFor('orchestrator')}`, 'content-type': 'application/json', 'x-request-id': clientId },
        body: JSON.stringify({ agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 }),
      });
      const body = (await res.json()) as { task: { id: string } };
      expect(res.status).toBe(201);
      const serverId = res.headers.get('x-request-id')!;
      const [event] = await database.db.select().from(auditEvents).where(eq(auditEvents.target, `task:${body.task.id}`));
      const line = t.logs.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'request' && l.reqId === serverId);
      return { serverId, event: event!, line };
    };

    // A caller's id is its own field: it cannot become, or collide with, the id audit events are found by.
    const first = await open('trace-123');
    const second = await open('trace-123');
    expect(first.serverId).not.toBe('trace-123');
    expect(second.serverId).not.toBe(first.serverId);
    expect(first.event.requestId).toBe(first.serverId);
    expect(first.event.details).toMatchObject({ client_request_id: 'trace-123' });
    expect(first.line).toMatchObject({ reqId: first.serverId, client_request_id: 'trace-123' });

    // One that could forge a log line or fill a row is not recorded at all.
    for (const hostile of ['a'.repeat(129), 'x","msg":"forged', '<script>', 'a b']) {
      const { serverId, event, line } = await open(hostile);
      expect(event.requestId).toBe(serverId);
      expect(event.details).not.toHaveProperty('client_request_id');
      expect(line).not.toHaveProperty('client_request_id');
    }
  });

  it('answers unknown routes and oversized bodies with problem+json', async () => {
    const missing = await t.call('GET', '/nowhere', {});
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toContain('application/problem+json');
    const huge = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, JSON.stringify({ task: 'x'.repeat(100_000), role: 'demo' }));
    expect(huge.status).toBe(413);
    expect(huge.json.code).toBe('payload_too_large');
  });

  it('introspection needs a caller and answers inactive for foreign or garbage tokens', async () => {
    const form = 'application/x-www-form-urlencoded';
    expect((await t.call('POST', '/v1/introspect', {}, 'token=x', form)).status).toBe(401);
    const foreign = await t.issuer.sign('agent-1');
    expect((await t.call('POST', '/v1/introspect', { subject: 'agent-1' }, `token=${foreign}`, form)).json).toEqual({ active: false });
    expect((await t.call('POST', '/v1/introspect', { subject: 'agent-1' }, 'token=garbage', form)).json).toEqual({ active: false });
  });
});

describe('metrics', () => {
  const METRICS_TOKEN = 'tl-metrics-scrape-token-for-tests';
  let t: TestBroker;
  useTestBroker('postgres', (_db, broker) => (t = broker), { config: { metrics: { listen: 'off', token_sha256: sha256Hex(METRICS_TOKEN) } } });

  const scrape = async () => {
    const res = await t.call('GET', '/metrics', { bearer: METRICS_TOKEN });
    expect(res.status).toBe(200);
    return res.text;
  };
  const gauge = async (status: string) => Number(new RegExp(`^tasklease_leases\\{status="${status}"\\} (\\d+)$`, 'm').exec(await scrape())?.[1]);

  it('counts issuance, and the stuck-revocation gauge rises while a backend fails and falls once it recovers', async () => {
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['flaky'], ttl_seconds: 600 });
    const task = opened.json.task.id as string;
    await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'flaky' });
    expect(await scrape()).toMatch(/tasklease_credentials_issued_total\{role="flaky",backend="fake"\} 1/);
    expect(await gauge('active')).toBe(1);
    t.fake.failNextRevokes(100);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'x' });
    for (let i = 0; i < 4; i++) {
      await t.broker.sweeper.runOnce();
      t.clock.advance(600);
    }
    expect(await gauge('revoke_failed')).toBe(1);
    t.fake.failNextRevokes(0);
    await t.broker.sweeper.runOnce();
    expect(await gauge('revoke_failed')).toBe(0);
    expect(await scrape()).toMatch(/tasklease_revocations_total\{outcome="failed"\} [1-9]/);
  });

  it('reports readiness by check, as /readyz decides it (the alert rules read it)', async () => {
    const text = await scrape();
    for (const check of ['database', 'migrations', 'backends', 'policy']) expect(text).toMatch(new RegExp(`^tasklease_ready\\{check="${check}"\\} 1$`, 'm'));
  });

  it('needs the scrape token on both listeners; no other token opens it', async () => {
    for (const fetchMetrics of [
      (authorization?: string) => t.broker.app.request('/metrics', { headers: authorization ? { authorization } : {} }),
      (authorization?: string) => t.broker.metricsApp.request('/metrics', { headers: authorization ? { authorization } : {} }),
    ]) {
      const refusals = await Promise.all([undefined, 'Bearer wrong', `Bearer ${ADMIN_STATIC_TOKEN}`, `Bearer ${await t.tokenFor('admin')}`, METRICS_TOKEN].map(fetchMetrics));
      expect(refusals.map((r) => r.status)).toEqual([401, 401, 401, 401, 401]);
      const bodies = await Promise.all(refusals.map((r) => r.json()));
      expect(bodies.map((b) => (b as { code: string }).code)).toEqual(['token_missing', 'token_invalid', 'token_invalid', 'token_invalid', 'token_missing']);
      for (const r of refusals) expect(r.headers.get('content-type')).toContain('application/problem+json');
      const ok = await fetchMetrics(`Bearer ${METRICS_TOKEN}`);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('tasklease_leases');
    }
  });
});

describe('metrics without a scrape token', () => {
  let t: TestBroker;
  useTestBroker('postgres', (_db, broker) => (t = broker));

  it('/metrics is not on the main listener without a scrape token; the metrics listener serves it, and only it', async () => {
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['flaky'], ttl_seconds: 600 });
    expect((await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: opened.json.task.id, role: 'flaky' })).status).toBe(201);
    for (const as of [{}, { subject: 'agent-1' }, { subject: 'admin' }]) {
      const res = await t.call('GET', '/metrics', as);
      expect(res.status).toBe(404);
      expect(res.text).not.toContain('flaky');
    }
    const scraped = await t.broker.metricsApp.request('/metrics');
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toMatch(/tasklease_credentials_issued_total\{role="flaky",backend="fake"\} 1/);
    for (const path of ['/', '/healthz', '/v1/leases', '/metrics/']) expect((await t.broker.metricsApp.request(path)).status, path).toBe(404);
  });
});

describe('the shipped example config', () => {
  it('is valid', () => {
    const config = loadConfigFile('tasklease.example.yaml', {
      DATABASE_URL: 'postgres://tasklease@db/tasklease',
      TASKLEASE_ADMIN_TOKEN_SHA256: 'a'.repeat(64),
    });
    expect(config.roles.map((r) => r.name)).toEqual(['reports-api', 'public-upload']);
    expect(config.database_url).toBe('postgres://tasklease@db/tasklease');
  });
});
