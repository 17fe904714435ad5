// DPoP (RFC 9449): a credential bound to the key of the proof that asked for it, through oauth4webapi's own DPoP
// handle on the token exchange and a proof on POST /v1/credentials; and the proofs that must be refused.
import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import * as oauth from 'oauth4webapi';
import { describe, expect, it } from 'vitest';
import { HARNESS_ROLES, useTestBroker, type TestBroker } from '../support/broker.js';
import { EXCHANGE, JWT_TYPE as JWT, useOAuthClient } from '../support/oauth.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const config = {
  roles: [
    ...HARNESS_ROLES,
    { name: 'bound', backend: 'local', allow: AGENTS, jwt: { audience: 'https://bound.example', require_dpop: true, relying_parties_introspect: true } },
    { name: 'open', backend: 'local', allow: AGENTS, jwt: { audience: 'https://open.example' } },
  ],
};

describe('DPoP-bound credentials', () => {
  let t!: TestBroker;
  useTestBroker('postgres', (_d, b) => (t = b), { config: config as never });

  const ctx = useOAuthClient(() => t);
  const { opts, client } = ctx;

  const openTask = async (agent: string, roles: string[]) => (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles, ttl_seconds: 3600 })).json.task.id as string;
  const params = async (agent: string, extra: Record<string, string>) => ({ subject_token: await t.tokenFor(agent), subject_token_type: JWT, ...extra });

  /** A proof made by hand, for the cases a client library would never send. */
  async function proof(key: Awaited<ReturnType<typeof generateKeyPair>>, claims: Record<string, unknown>, alg = 'ES256') {
    const jwk = await exportJWK(key.publicKey);
    const iat = Math.floor(t.clock.now().getTime() / 1000);
    return new SignJWT({ htm: 'POST', htu: `${t.config.public_url}/oauth2/token`, jti: crypto.randomUUID(), iat, ...claims }).setProtectedHeader({ alg, typ: 'dpop+jwt', jwk }).sign(key.privateKey);
  }
  async function exchangeWith(dpopHeader: string | undefined, body: Record<string, string>) {
    const res = await t.broker.app.request('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(dpopHeader ? { dpop: dpopHeader } : {}) },
      body: new URLSearchParams({ grant_type: EXCHANGE, ...body }).toString(),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  it('binds the exchanged token to the key of the proof oauth4webapi signs (cnf.jkt), says DPoP, and introspection shows cnf', async () => {
    await openTask('agent-d1', ['bound']);
    const keys = await oauth.generateKeyPair('ES256');
    // The broker's clock is the test's: the library's proofs are dated by it.
    client[oauth.clockSkew] = Math.round((t.clock.now().getTime() - Date.now()) / 1000);
    const response = await oauth.genericTokenEndpointRequest(ctx.as, client, oauth.None(), EXCHANGE, await params('agent-d1', { resource: 'https://bound.example' }), { ...opts, DPoP: oauth.DPoP(client, keys) });
    const token = await oauth.processGenericTokenEndpointResponse(ctx.as, client, response);
    expect(token.token_type).toBe('dpop');
    const jkt = await calculateJwkThumbprint(await exportJWK(keys.publicKey), 'sha256');
    const jwks = createLocalJWKSet((await t.call('GET', '/.well-known/jwks.json', {})).json);
    const { payload } = await jwtVerify(token.access_token, jwks, { currentDate: t.clock.now() });
    expect(payload.cnf).toEqual({ jkt });
    const introspected = await t.call('POST', '/v1/introspect', { subject: 'agent-d1' }, `token=${token.access_token}`, 'application/x-www-form-urlencoded');
    expect(introspected.json).toMatchObject({ active: true, cnf: { jkt } });
  });

  it('binds a credential from POST /v1/credentials to the proof on it; a role that requires DPoP refuses a request without one', async () => {
    const task = await openTask('agent-d2', ['bound', 'open']);
    const refused = await t.call('POST', '/v1/credentials', { subject: 'agent-d2' }, { task, role: 'bound' });
    expect({ status: refused.status, code: refused.json.code }).toEqual({ status: 400, code: 'dpop_required' });
    const key = await generateKeyPair('ES256');
    const res = await t.broker.app.request('/v1/credentials', {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.tokenFor('agent-d2')}`, 'content-type': 'application/json', dpop: await proof(key, { htu: `${t.config.public_url}/v1/credentials` }) },
      body: JSON.stringify({ task, role: 'bound' }),
    });
    const body = (await res.json()) as { credentials: { token: string; token_type: string } };
    expect(res.status).toBe(201);
    expect(body.credentials.token_type).toBe('DPoP');
    expect(decodeJwt(body.credentials.token).cnf).toEqual({ jkt: await calculateJwkThumbprint(await exportJWK(key.publicKey), 'sha256') });
    // A role that does not require it is still issued without a proof, as a Bearer token.
    expect((await exchangeWith(undefined, await params('agent-d2', { audience: 'open', task }))).json).toMatchObject({ token_type: 'Bearer' });
  });

  it('refuses replayed, stale, future, other-URL, other-method, symmetric and unsigned proofs with invalid_dpop_proof', async () => {
    const task = await openTask('agent-d3', ['bound']);
    const key = await generateKeyPair('ES256');
    const body = await params('agent-d3', { audience: 'bound', task });
    const once = await proof(key, {});
    expect((await exchangeWith(once, body)).status).toBe(200);
    const now = Math.floor(t.clock.now().getTime() / 1000);
    const cases: [string, string][] = [
      ['replayed', once],
      ['stale', await proof(key, { iat: now - 120 })],
      ['future', await proof(key, { iat: now + 60 })],
      ['another URL', await proof(key, { htu: `${t.config.public_url}/oauth2/revoke` })],
      ['another method', await proof(key, { htm: 'GET' })],
      ['no jti', await proof(key, { jti: undefined })],
      ['HS256', await new SignJWT({ htm: 'POST', htu: `${t.config.public_url}/oauth2/token`, jti: crypto.randomUUID(), iat: now }).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt' }).sign(new TextEncoder().encode('s'.repeat(32)))],
      ['not a JWS', 'not-a-proof'],
    ];
    for (const [name, p] of cases) {
      const answer = await exchangeWith(p, body);
      expect({ name, status: answer.status, error: answer.json.error }).toEqual({ name, status: 400, error: 'invalid_dpop_proof' });
    }
    // Without any proof, the role that requires one: the same error, with the broker's code.
    expect((await exchangeWith(undefined, body)).json).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/^dpop_required/) });
  });
});
