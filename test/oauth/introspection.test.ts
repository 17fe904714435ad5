// Resource servers as OAuth clients: RFC 7662 introspection at /oauth2/introspect, authenticated by
// client_secret_basic, client_secret_post or private_key_jwt through oauth4webapi, and told only of tokens meant
// for their audiences. Bearer principals keep /v1/introspect.
import { exportJWK, generateKeyPair } from 'jose';
import * as oauth from 'oauth4webapi';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/ids.js';
import { HARNESS_ROLES, useTestBroker, type TestBroker } from '../support/broker.js';
import { EXCHANGE, JWT_TYPE, useOAuthClient } from '../support/oauth.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const rsKey = await generateKeyPair('ES256', { extractable: true });
const config = {
  roles: [...HARNESS_ROLES, { name: 'reports', backend: 'local', allow: AGENTS, jwt: { audience: 'https://reports.example', relying_parties_introspect: true } }],
  oauth: {
    resource_servers: [
      { client_id: 'rs-reports', secret_sha256: sha256Hex('s3cret+/: é'), audiences: ['https://reports.example'] },
      { client_id: 'rs-keys', jwks: { keys: [{ ...(await exportJWK(rsKey.publicKey)), kid: 'rs-1' }] }, audiences: ['https://reports.example'] },
      { client_id: 'rs-other', secret_sha256: sha256Hex('other'), audiences: ['https://other.example'] },
    ],
  },
};

describe('introspection by resource servers', () => {
  let t!: TestBroker;
  useTestBroker('postgres', (_d, b) => (t = b), { config: config as never });
  const ctx = useOAuthClient(() => t);

  async function token(agent: string) {
    await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['reports'], ttl_seconds: 3600 });
    const body = { subject_token: await t.tokenFor(agent), subject_token_type: JWT_TYPE, audience: 'reports' };
    return (await oauth.processGenericTokenEndpointResponse(ctx.as, ctx.client, await oauth.genericTokenEndpointRequest(ctx.as, ctx.client, oauth.None(), EXCHANGE, body, ctx.opts))).access_token;
  }
  /** `ahead`: how many seconds the resource server's clock runs ahead of the broker's. */
  const introspect = async (clientId: string, auth: oauth.ClientAuth, accessToken: string, ahead = 0) => {
    const client: oauth.Client = { client_id: clientId, [oauth.clockSkew]: Math.floor((t.clock.now().getTime() - Date.now()) / 1000) + ahead };
    return oauth.processIntrospectionResponse(ctx.as, client, await oauth.introspectionRequest(ctx.as, client, auth, accessToken, ctx.opts));
  };

  it('answers a resource server authenticated by a secret (basic or post) or a key, for its audience only', async () => {
    const access = await token('agent-i1');
    expect(await introspect('rs-reports', oauth.ClientSecretBasic('s3cret+/: é'), access)).toMatchObject({ active: true, sub: 'agent-i1', aud: 'https://reports.example' });
    expect(await introspect('rs-reports', oauth.ClientSecretPost('s3cret+/: é'), access)).toMatchObject({ active: true });
    expect(await introspect('rs-keys', oauth.PrivateKeyJwt({ key: rsKey.privateKey, kid: 'rs-1' }), access)).toMatchObject({ active: true });
    // Its clock a few seconds ahead of the broker's: the assertion's iat is in the broker's future, within the tolerance.
    expect(await introspect('rs-keys', oauth.PrivateKeyJwt({ key: rsKey.privateKey, kid: 'rs-1' }), access, 3)).toMatchObject({ active: true });
    // Another resource server's audience: as if the token did not exist.
    expect(await introspect('rs-other', oauth.ClientSecretBasic('other'), access)).toEqual({ active: false });
    // Bearer principals keep the /v1 endpoint.
    expect((await t.call('POST', '/v1/introspect', { subject: 'agent-i1' }, `token=${access}`, 'application/x-www-form-urlencoded')).json).toMatchObject({ active: true });
  });

  it('refuses a wrong secret, an unknown client, a key it does not hold and no authentication, all alike: 401 invalid_client', async () => {
    const access = await token('agent-i2');
    const other = await generateKeyPair('ES256');
    for (const [id, auth] of [
      ['rs-reports', oauth.ClientSecretBasic('wrong')],
      ['nobody', oauth.ClientSecretBasic('s3cret+/: é')],
      ['rs-keys', oauth.PrivateKeyJwt({ key: other.privateKey, kid: 'rs-1' })],
      ['rs-reports', oauth.None()],
    ] as const) {
      // The 401 carries a WWW-Authenticate challenge, which oauth4webapi reports as such.
      const err = await introspect(id, auth, access).catch((e: unknown) => e);
      expect(err, id).toBeInstanceOf(oauth.WWWAuthenticateChallengeError);
      expect((err as oauth.WWWAuthenticateChallengeError).status).toBe(401);
    }
    const raw = await t.broker.app.request('/oauth2/introspect', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('nobody:x').toString('base64')}` }, body: `token=${access}` });
    expect({ status: raw.status, body: await raw.json() }).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
  });
});
