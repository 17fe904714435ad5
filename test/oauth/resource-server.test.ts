// A resource server as its owners would write it, on jose alone, against the broker over real HTTP: it checks the
// token against the broker's JWKS (createRemoteJWKSet), its DPoP proof (RFC 9449 section 7), and drops the token
// once the SSF receiver of examples/ssf-receiver.mjs (the one docs/oauth.md shows) is told its lease ended.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSsfReceiver } from '../../examples/ssf-receiver.mjs';
import { freePort, serveOn } from '../console/oidc-support.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { listenLocal } from '../support/listen.js';
import { EXCHANGE, JWT_TYPE } from '../support/oauth.js';

const AUDIENCE = 'https://orders.example';
const SSF_AUTH = 'Bearer orders-ssf-push-credential-for-tests';

/**
 * The orders API: GET /orders with `Authorization: DPoP <token>` and a proof for this request, bound to the
 * token's cnf.jkt. Answers 200 or 401 with the reason.
 */
function ordersApi(broker: string, revoked: Set<string>) {
  const keys = createRemoteJWKSet(new URL(`${broker}/.well-known/jwks.json`));
  return createServer(async (req, res) => {
    const deny = (why: string) => res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ why }));
    const [scheme, token] = (req.headers.authorization ?? '').split(' ');
    try {
      const { payload } = await jwtVerify(token ?? '', keys, { issuer: broker, audience: AUDIENCE, typ: 'at+jwt' });
      if (revoked.has(payload.jti!)) return deny('revoked');
      const jkt = (payload.cnf as { jkt?: string } | undefined)?.jkt;
      if (!jkt) return res.writeHead(200).end('ok');
      if (scheme !== 'DPoP' || typeof req.headers.dpop !== 'string') return deny('dpop_required');
      const url = `http://${req.headers.host}${req.url}`;
      const proof = await jwtVerify(req.headers.dpop, EmbeddedJWK, { typ: 'dpop+jwt', maxTokenAge: '60s', algorithms: ['ES256', 'EdDSA'] });
      const ath = createHash('sha256').update(token!).digest('base64url');
      if (proof.payload.htm !== req.method || proof.payload.htu !== url.split('?')[0] || proof.payload.ath !== ath) return deny('dpop_mismatch');
      if ((await calculateJwkThumbprint(proof.protectedHeader.jwk as JWK, 'sha256')) !== jkt) return deny('dpop_wrong_key');
      res.writeHead(200).end('ok');
    } catch {
      deny('invalid_token');
    }
  });
}

describe('a resource server on jose, and its SSF receiver, against the broker over HTTP', () => {
  let database!: TestDatabase;
  let t!: TestBroker;
  let broker!: { url: string; close: () => Promise<void> };
  const servers: Server[] = [];
  let api!: string;
  let revoked!: Set<string>;

  beforeAll(async () => {
    const port = await freePort();
    const brokerUrl = `http://127.0.0.1:${port}`;
    const receiverPort = await freePort();
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, {
      config: {
        public_url: brokerUrl,
        roles: [...HARNESS_ROLES, { name: 'orders', backend: 'local', allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }], jwt: { audience: AUDIENCE, require_dpop: true } }],
        oauth: {
          resource_servers: [
            {
              client_id: 'orders-api',
              secret_sha256: 'a'.repeat(64),
              audiences: [AUDIENCE],
              security_events: { delivery: 'push', endpoint_url: `http://127.0.0.1:${receiverPort}/ssf`, authorization_header: SSF_AUTH },
            },
          ],
        },
      },
    });
    broker = await serveOn(t, port);
    const receiver = createSsfReceiver({ transmitter: brokerUrl, clientId: 'orders-api', authorization: SSF_AUTH });
    revoked = receiver.revoked;
    servers.push(receiver.server);
    await new Promise<void>((resolve) => receiver.server.listen(receiverPort, '127.0.0.1', () => resolve()));
    const apiServer = ordersApi(brokerUrl, revoked);
    servers.push(apiServer);
    api = `http://127.0.0.1:${await listenLocal(apiServer)}/orders`;
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    await broker?.close();
    await database?.drop();
  });

  it('accepts the DPoP-bound token, refuses it without its proof or with a wrong one, and drops it on the pushed SET', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-rs' }, roles: ['orders'], ttl_seconds: 3600 })).json.task.id as string;
    // The agent: discovery, then a DPoP-bound token exchange, all through oauth4webapi over HTTP.
    const opts = { [oauth.allowInsecureRequests]: true };
    const issuer = new URL(t.config.public_url);
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...opts }));
    const client: oauth.Client = { client_id: 'agent' };
    client[oauth.clockSkew] = Math.round((t.clock.now().getTime() - Date.now()) / 1000);
    const keys = await oauth.generateKeyPair('ES256');
    const dpop = oauth.DPoP(client, keys);
    const params = { subject_token: await t.tokenFor('agent-rs'), subject_token_type: JWT_TYPE, audience: 'orders', task };
    const token = (await oauth.processGenericTokenEndpointResponse(as, client, await oauth.genericTokenEndpointRequest(as, client, oauth.None(), EXCHANGE, params, { ...opts, DPoP: dpop }))).access_token;

    const call = (headers: Record<string, string>) => fetch(api, { headers }).then(async (r) => ({ status: r.status, body: await r.text() }));
    // With its proof, through the library's own protected-resource call.
    const ok = await oauth.protectedResourceRequest(token, 'GET', new URL(api), new Headers(), null, { ...opts, DPoP: dpop });
    expect(ok.status).toBe(200);
    // As a plain Bearer, or DPoP without a proof: refused.
    expect(await call({ authorization: `Bearer ${token}` })).toMatchObject({ status: 401, body: expect.stringContaining('dpop_required') });
    expect(await call({ authorization: `DPoP ${token}` })).toMatchObject({ status: 401, body: expect.stringContaining('dpop_required') });
    // A proof made with another key (a thief's), and one made for another URL.
    const thief = await generateKeyPair('ES256');
    const proof = async (key: Parameters<SignJWT['sign']>[0], jwk: JWK, htu: string) =>
      new SignJWT({ htm: 'GET', htu, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ath: createHash('sha256').update(token).digest('base64url') })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(key);
    expect(await call({ authorization: `DPoP ${token}`, dpop: await proof(thief.privateKey, await exportJWK(thief.publicKey), api) })).toMatchObject({ status: 401, body: expect.stringContaining('dpop_wrong_key') });
    expect(await call({ authorization: `DPoP ${token}`, dpop: await proof(keys.privateKey, await exportJWK(keys.publicKey), `${api}/elsewhere`) })).toMatchObject({ status: 401, body: expect.stringContaining('dpop_mismatch') });

    // The task completes: the sweeper ends the lease, the transmitter pushes the SET, the receiver records it.
    expect((await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' })).status).toBe(202);
    await t.broker.sweeper.runOnce();
    expect(await t.broker.transmitter.runOnce()).toEqual({ delivered: 1, failed: 0 });
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    expect(revoked.has(jti)).toBe(true);
    // The same token, with a good proof, signature and exp still valid: dropped.
    const after = await oauth.protectedResourceRequest(token, 'GET', new URL(api), new Headers(), null, { ...opts, DPoP: dpop });
    expect({ status: after.status, body: await after.text() }).toEqual({ status: 401, body: JSON.stringify({ why: 'revoked' }) });
  });

  it('the receiver refuses a SET it cannot verify, and a push without its credential', async () => {
    const receiverUrl = (t.config.oauth.resource_servers[0]!.security_events as { endpoint_url: string }).endpoint_url;
    const forged = await new SignJWT({ sub_id: { format: 'jwt_id', iss: t.config.public_url, jti: 'x' } })
      .setProtectedHeader({ alg: 'ES256', typ: 'secevent+jwt' })
      .sign((await generateKeyPair('ES256')).privateKey);
    const push = (body: string, authorization: string) => fetch(receiverUrl, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt', authorization }, body });
    expect((await push(forged, SSF_AUTH)).status).toBe(400);
    expect((await push(forged, 'Bearer wrong')).status).toBe(401);
    expect(revoked.has('x')).toBe(false);
  });
});

describe('docs/oauth.md', () => {
  it('shows examples/ssf-receiver.mjs as it is', () => {
    const docs = readFileSync(new URL('../../docs/oauth.md', import.meta.url), 'utf8');
    expect(docs).toContain(readFileSync(new URL('../../examples/ssf-receiver.mjs', import.meta.url), 'utf8'));
  });
});
