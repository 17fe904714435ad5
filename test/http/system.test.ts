import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';

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
    expect((await t.call('GET', '/readyz', {})).status).toBe(200);
    const jwks = await t.call('GET', '/.well-known/jwks.json', {});
    expect(jwks.json.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.json.keys[0].d).toBeUndefined();
  });

  it('gives every response a request id, and echoes a sane one from the caller', async () => {
    const res = await t.broker.app.request('/healthz', { headers: { 'x-request-id': 'trace-123' } });
    expect(res.headers.get('x-request-id')).toBe('trace-123');
    const own = await t.call('GET', '/v1/nowhere', {});
    expect(own.headers.get('x-request-id')).toMatch(/[0-9a-f-]{36}/);
    expect(own.json.request_id).toBe(own.headers.get('x-request-id'));
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
  let database: TestDatabase;
  let t: TestBroker;
  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database);
  });
  afterAll(() => database?.drop());

  const gauge = async (status: string) => {
    const text = (await t.call('GET', '/metrics', {})).text;
    return Number(new RegExp(`^tasklease_leases\\{status="${status}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  };

  it('counts issuance, and the stuck-revocation gauge rises while a backend fails and falls once it recovers', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['flaky'], ttl_seconds: 600 })).json.task.id;
    await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'flaky' });
    expect((await t.call('GET', '/metrics', {})).text).toMatch(/tasklease_credentials_issued_total\{role="flaky",backend="fake"\} 1/);
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
    expect((await t.call('GET', '/metrics', {})).text).toMatch(/tasklease_revocations_total\{outcome="failed"\} [1-9]/);
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
