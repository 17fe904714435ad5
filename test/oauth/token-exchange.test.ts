// The OAuth surface through a real client library, oauth4webapi, as any OAuth client would use it: discovery
// (RFC 8414), token exchange (RFC 8693) and revocation (RFC 7009), with the broker's app as the client's fetch.
import { and, eq } from 'drizzle-orm';
import { createLocalJWKSet, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema.js';
import { HARNESS_ROLES, useTestBroker, type TestBroker } from '../support/broker.js';
import { EXCHANGE, JWT_TYPE as JWT, useOAuthClient } from '../support/oauth.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

const config = {
  roles: [
    ...HARNESS_ROLES,
    { name: 'reports', backend: 'local', ttl: '10m', max_ttl: '1h', allow: AGENTS, jwt: { audience: 'https://reports.example', scope: 'reports:read reports:write', relying_parties_introspect: true } },
    { name: 'gated', backend: 'local', requires_approval: true, allow: AGENTS },
    { name: 'fake-role', backend: 'fake', allow: AGENTS },
    { name: 'demo-twin', backend: 'local', allow: AGENTS, jwt: { audience: 'demo-api' } },
  ],
};

describe.each(DRIVERS)('OAuth token exchange and revocation on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config: config as never });

  const ctx = useOAuthClient(() => t);
  const { opts, client } = ctx;

  async function openTask(agent: string, roles: string[]) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles, ttl_seconds: 3600 });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }

  async function exchange(agent: string, params: Record<string, string>) {
    const body = new URLSearchParams({ subject_token: await t.tokenFor(agent), subject_token_type: JWT, ...params });
    return oauth.processGenericTokenEndpointResponse(ctx.as, client, await oauth.genericTokenEndpointRequest(ctx.as, client, oauth.None(), EXCHANGE, body, opts));
  }

  async function refusal(agent: string, params: Record<string, string>) {
    try {
      await exchange(agent, params);
    } catch (err) {
      if (err instanceof oauth.ResponseBodyError) return { error: err.error, description: err.error_description, status: err.status };
      throw err;
    }
    throw new Error('the exchange succeeded');
  }

  it('discovers the endpoints and grant type from the metadata', () => {
    expect(ctx.as).toMatchObject({
      issuer: t.config.public_url,
      token_endpoint: `${t.config.public_url}/oauth2/token`,
      revocation_endpoint: `${t.config.public_url}/oauth2/revoke`,
      introspection_endpoint: `${t.config.public_url}/oauth2/introspect`,
      jwks_uri: `${t.config.public_url}/.well-known/jwks.json`,
      grant_types_supported: [EXCHANGE],
    });
  });

  it('exchanges a workload token for a task-bound JWT: by resource, with a narrower scope, the one open task inferred', async () => {
    const task = await openTask('agent-x1', ['reports']);
    const token = await exchange('agent-x1', { resource: 'https://reports.example', scope: 'reports:read' });
    expect(token).toMatchObject({ token_type: 'bearer', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope: 'reports:read' });
    expect(token.expires_in).toBe(600);
    const jwks = createLocalJWKSet((await t.call('GET', '/.well-known/jwks.json', {})).json);
    // An RFC 9068 access token, as its validators check it.
    const { payload } = await jwtVerify(token.access_token, jwks, {
      issuer: t.config.public_url,
      audience: 'https://reports.example',
      typ: 'at+jwt',
      requiredClaims: ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'],
      currentDate: t.clock.now(),
    });
    expect(payload).toMatchObject({ sub: 'agent-x1', client_id: 'test/agent-x1', task, role: 'reports', scope: 'reports:read' });
    // Recorded before released, like any credential: the lease and its audit event.
    const [lease] = await database.db.select().from(leases).where(eq(leases.id, payload.jti!));
    expect(lease).toMatchObject({ taskId: task, role: 'reports', status: 'active' });
    const audit = (await t.call('GET', `/v1/audit?target=${encodeURIComponent(`lease:${payload.jti}`)}`, { subject: 'admin' })).json.items;
    expect(audit[0]).toMatchObject({ action: 'credential.issued', details: { scope: 'reports:read' } });
  });

  it("revokes its own token (holder_revoked), answers 200 for another agent's token and leaves that lease alone", async () => {
    const mine = await openTask('agent-x2', ['reports']);
    const theirs = await openTask('agent-x3', ['reports']);
    const own = await exchange('agent-x2', { audience: 'reports', task: mine });
    const other = await exchange('agent-x3', { audience: 'reports', task: theirs });
    // The agent's client authentication is its workload token, as a Bearer: a ClientAuth of oauth4webapi's.
    const bearerAuth = (token: string): oauth.ClientAuth => (_as, _client, _body, headers) => headers.set('authorization', `Bearer ${token}`);
    const revoke = async (agent: string, token: string) =>
      oauth.processRevocationResponse(await oauth.revocationRequest(ctx.as, client, bearerAuth(await t.tokenFor(agent)), token, opts));
    await revoke('agent-x2', other.access_token);
    const [untouched] = await database.db.select().from(leases).where(and(eq(leases.taskId, theirs)));
    expect(untouched!.status).toBe('active');
    await revoke('agent-x2', own.access_token);
    const [ended] = await database.db.select().from(leases).where(and(eq(leases.taskId, mine)));
    expect(ended).toMatchObject({ reason: 'holder_revoked' });
    expect(ended!.status).not.toBe('active');
    // Again, and a token that is not one: still 200, as RFC 7009 says.
    await revoke('agent-x2', own.access_token);
    await revoke('agent-x2', 'not-a-token');
    const introspected = await t.call('POST', '/v1/introspect', { subject: 'agent-x2' }, `token=${own.access_token}`, 'application/x-www-form-urlencoded');
    expect(introspected.json).toEqual({ active: false });
    // Without the agent's Bearer: invalid_client.
    const bare = await t.broker.app.request('/oauth2/revoke', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${own.access_token}` });
    expect(bare.status).toBe(401);
    expect(await bare.json()).toMatchObject({ error: 'invalid_client' });
  });

  it("answers refusals in RFC 6749 form, with the broker's code in the description", async () => {
    const task = await openTask('agent-x4', ['reports', 'gated']);
    expect(await refusal('agent-x4', { audience: 'reports', scope: 'reports:admin' })).toMatchObject({ error: 'invalid_scope', status: 400 });
    expect(await refusal('agent-x4', { audience: 'nope' })).toMatchObject({ error: 'invalid_target' });
    expect(await refusal('agent-x4', { audience: 'demo', resource: 'https://reports.example' })).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/different roles/) });
    // demo and demo-twin share an audience: the resource alone does not say which.
    expect(await refusal('agent-x4', { resource: 'demo-api', task })).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/several roles/) });
    expect(await refusal('agent-x4', { audience: 'fake-role' })).toMatchObject({ error: 'invalid_target' }); // not a jwt backend
    expect(await refusal('agent-x4', { audience: 'demo', task })).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/^role_denied/) }); // the task does not list it
    expect(await refusal('agent-x4', { audience: 'gated', task })).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/^approval_required/) });
    expect(await refusal('agent-x4', { audience: 'reports', task: 'no-such-task' })).toMatchObject({ error: 'invalid_request', description: expect.stringMatching(/^task_not_found/) });
    await openTask('agent-x4', ['reports']);
    expect(await refusal('agent-x4', { audience: 'reports' })).toMatchObject({ error: 'invalid_request', description: expect.stringMatching(/several open tasks/) });
    expect(await refusal('agent-x4', { audience: 'reports', subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' })).toMatchObject({ error: 'invalid_request' });
    expect(await refusal('agent-x4', { audience: 'reports', task, actor_token: 'x', actor_token_type: JWT })).toMatchObject({ error: 'invalid_request' });
    expect(await refusal('agent-x4', { audience: 'reports', task, subject_token: 'not.a.jwt' })).toMatchObject({ error: 'invalid_request', description: expect.stringMatching(/^subject_token/) });
  });

  it('audits a refusal repeated by one identity once per window, then its count', async () => {
    const denied = async () => (await t.call('GET', `/v1/audit?action=credential.denied&actor=${encodeURIComponent('test/agent-x5')}`, { subject: 'admin' })).json.items as { target: string; details: Record<string, unknown> }[];
    for (let i = 0; i < 5; i++) expect(await refusal('agent-x5', { audience: 'nope' })).toMatchObject({ error: 'invalid_target' });
    expect((await denied()).map((e) => e.target)).toEqual(['oauth:token']);
    t.clock.advance(61_000);
    await t.broker.refusals.flushDue();
    const events = await denied();
    expect(events).toHaveLength(2);
    expect(events.find((e) => e.target === 'agent:test/agent-x5')?.details).toMatchObject({ code: 'invalid_target', via: 'token_exchange', count: 4 });
  });

  it('refuses another grant type, a repeated parameter and a JSON body, in the same form', async () => {
    const post = (body: string, type = 'application/x-www-form-urlencoded') => t.broker.app.request('/oauth2/token', { method: 'POST', headers: { 'content-type': type }, body });
    const grant = await post('grant_type=client_credentials');
    expect({ status: grant.status, body: await grant.json() }).toMatchObject({ status: 400, body: { error: 'unsupported_grant_type' } });
    expect(await (await post(`grant_type=${encodeURIComponent(EXCHANGE)}&scope=a&scope=b`)).json()).toMatchObject({ error: 'invalid_request' });
    const json = await post('{}', 'application/json');
    expect({ status: json.status, cache: json.headers.get('cache-control'), body: await json.json() }).toMatchObject({ status: 400, cache: 'no-store', body: { error: 'invalid_request' } });
  });
});
