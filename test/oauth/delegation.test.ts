// Delegation by RFC 8693 token exchange: a person's token as subject_token, the agent's workload token as
// actor_token. The token is the person's (`sub`), acted by the agent (`act`); the decision, the task and the
// lease are the agent's, and the person must be allowed to delegate the role.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { decodeJwt } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema.js';
import { startProvider } from '../console/oidc-support.js';
import { HARNESS_ROLES, startTestBroker, useTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { personIdToken } from '../support/person-login.js';
import { EXCHANGE, JWT_TYPE, useOAuthClient } from '../support/oauth.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
// Policy sees the person too: carol may delegate the role, but not to an agent whose token says it is in another team.
const policyFile = join(mkdtempSync(join(tmpdir(), 'tasklease-delegation-')), 'delegation.cedar');
writeFileSync(
  policyFile,
  `@id("carol-only-to-mail-agents")
forbid (principal, action == Tasklease::Action::"RequestCredential", resource == Tasklease::Role::"mailbox")
when { context has on_behalf_of && context.on_behalf_of == "test/person-carol" && !(principal.hasTag("team") && principal.getTag("team") == "mail") };
`,
);
const config = {
  roles: [
    ...HARNESS_ROLES,
    { name: 'mailbox', backend: 'local', allow: AGENTS, delegable_by: [{ issuer: 'test', subject: 'person-alice' }, { issuer: 'test', subject: 'person-carol' }], jwt: { audience: 'https://mail.example' } },
  ],
  policy: { cedar: { files: [policyFile] } },
};

/** A delegation exchange through oauth4webapi, for role `mailbox`: the token, or the error the broker answered. */
async function delegate(ctx: ReturnType<typeof useOAuthClient>, subjectToken: string, actorToken: string, extra: Record<string, string> = {}) {
  const body = { subject_token: subjectToken, subject_token_type: JWT_TYPE, actor_token: actorToken, actor_token_type: JWT_TYPE, audience: 'mailbox', ...extra };
  const res = await oauth.genericTokenEndpointRequest(ctx.as, ctx.client, oauth.None(), EXCHANGE, body, ctx.opts);
  try {
    return { token: await oauth.processGenericTokenEndpointResponse(ctx.as, ctx.client, res) };
  } catch (err) {
    if (err instanceof oauth.ResponseBodyError) return { error: err.error, description: err.error_description };
    throw err;
  }
}

describe('delegation: an agent acting for a person', () => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker('postgres', (d, b) => ((database = d), (t = b)), { config: config as never });
  const ctx = useOAuthClient(() => t);

  const openTask = async (agent: string) => (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['mailbox'], ttl_seconds: 3600 })).json.task.id as string;
  const exchange = (subjectToken: string, actorToken: string, extra: Record<string, string> = {}) => delegate(ctx, subjectToken, actorToken, extra);

  it("issues the person's token acted by the agent; the lease is the agent's, on behalf of the person, and audited so", async () => {
    const task = await openTask('agent-y1');
    const { token } = await exchange(await t.tokenFor('person-alice'), await t.tokenFor('agent-y1'));
    const claims = decodeJwt(token!.access_token);
    expect(claims).toMatchObject({ sub: 'person-alice', act: { sub: 'agent-y1' }, client_id: 'test/agent-y1', task });
    const [lease] = await database.db.select().from(leases).where(eq(leases.id, claims.jti!));
    expect(lease).toMatchObject({ subject: 'agent-y1', onBehalfOf: 'test/person-alice' });
    const [event] = (await t.call('GET', `/v1/audit?target=${encodeURIComponent(`lease:${claims.jti}`)}`, { subject: 'admin' })).json.items;
    expect(event).toMatchObject({ actor: 'test/agent-y1', action: 'credential.issued', details: { on_behalf_of: 'test/person-alice' } });
    expect((await t.call('GET', `/v1/leases/${claims.jti}`, { subject: 'agent-y1' })).json.lease.on_behalf_of).toBe('test/person-alice');
  });

  it('refuses a person who may not delegate the role, an actor for another agent, a chain too deep and a wrong actor type', async () => {
    const other = await openTask('agent-y3');
    await openTask('agent-y2');
    const agent = await t.tokenFor('agent-y2');
    expect(await exchange(await t.tokenFor('person-bob'), agent)).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/may not delegate/) });
    // A refusal made before the issuer is audited too.
    const refused = (await t.call('GET', `/v1/audit?target=${encodeURIComponent('oauth:token')}`, { subject: 'admin' })).json.items;
    expect(refused[0]).toMatchObject({ actor: 'test/person-bob', action: 'credential.denied', decision: 'deny', details: { code: 'invalid_target', via: 'token_exchange', role: 'mailbox' } });
    // agent-y2 names agent-y3's task: it is not its own.
    expect(await exchange(await t.tokenFor('person-alice'), agent, { task: other })).toMatchObject({ error: 'invalid_request', description: expect.stringMatching(/^task_not_found/) });
    // A subject token that already carries an actor: with max_delegation_depth 1, one more is too many.
    const delegated = await t.issuer.sign('person-alice', { act: { sub: 'someone-before' } }, t.clock.now());
    expect(await exchange(delegated, agent)).toMatchObject({ error: 'invalid_request', description: expect.stringMatching(/deeper than 1/) });
    expect(await exchange(await t.tokenFor('person-alice'), agent, { actor_token_type: 'urn:ietf:params:oauth:token-type:id_token' })).toMatchObject({ error: 'invalid_request' });
  });
});

describe('delegation seen by policy', () => {
  let t!: TestBroker;
  useTestBroker('postgres', (_d, b) => (t = b), { config: config as never });
  const ctx = useOAuthClient(() => t);

  it('a Cedar policy reads context.on_behalf_of: carol delegates only to agents of the mail team', async () => {
    for (const agent of ['agent-mail', 'agent-other']) {
      await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['mailbox'], ttl_seconds: 3600 });
    }
    const carol = await t.tokenFor('person-carol');
    const mailAgent = await t.issuer.sign('agent-mail', { team: 'mail' }, t.clock.now());
    expect((await delegate(ctx, carol, mailAgent)).token?.access_token).toBeTypeOf('string');
    expect(await delegate(ctx, carol, await t.tokenFor('agent-other'))).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/^role_denied/) });
    const [denied] = (await t.call('GET', `/v1/audit?action=credential.denied&actor=${encodeURIComponent('test/agent-other')}`, { subject: 'admin' })).json.items;
    expect(denied).toMatchObject({ details: { policies: ['carol-only-to-mail-agents'], on_behalf_of: 'test/person-carol' } });
    // Alice is not named by the policy, and the same agent acting for itself is not delegated at all.
    expect((await delegate(ctx, await t.tokenFor('person-alice'), await t.tokenFor('agent-other'))).token?.access_token).toBeTypeOf('string');
  });
});

describe("delegation with a person's ID token from a real OpenID provider (oidc-provider)", () => {
  const client = { client_id: 'mail-app', client_secret: 'mail-app-secret-for-tests-only', redirect_uri: 'http://127.0.0.1:9/callback' };
  let provider!: { url: string; close: () => Promise<void> };
  let database!: TestDatabase;
  let t!: TestBroker;
  let ctx!: ReturnType<typeof useOAuthClient>;

  beforeAll(async () => {
    provider = await startProvider('http://127.0.0.1:9', {
      clients: [{ ...client, redirect_uris: [client.redirect_uri], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic' }],
    });
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, {
      config: {
        // The people's issuer: its ID tokens are for the mail app, which hands them on as subject tokens.
        issuers: [{ name: 'corp', issuer: provider.url, jwks_uri: `${provider.url}/jwks`, algorithms: ['RS256'], audiences: [client.client_id] }],
        roles: [...HARNESS_ROLES, { name: 'mailbox', backend: 'local', allow: AGENTS, delegable_by: [{ issuer: 'corp', subject: 'alice' }], jwt: { audience: 'https://mail.example' } }],
      },
    });
  });
  afterAll(async () => {
    await database?.drop();
    await provider?.close();
  });
  ctx = useOAuthClient(() => t);

  it("issues alice's token acted by the agent; bob, signed in the same way, may not delegate", async () => {
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: 'agent-oidc' }, roles: ['mailbox'], ttl_seconds: 3600 });
    expect(opened.status, opened.text).toBe(201);
    const exchange = async (personToken: string) => delegate(ctx, personToken, await t.tokenFor('agent-oidc'));
    const alice = await personIdToken(provider.url, client, 'alice');
    const { token, ...refused } = await exchange(alice);
    expect(refused).toEqual({});
    expect(decodeJwt(token!.access_token)).toMatchObject({ sub: 'alice', act: { sub: 'agent-oidc', iss: 'https://issuer.test.invalid' }, client_id: 'test/agent-oidc' });
    const [lease] = await database.db.select().from(leases).where(eq(leases.id, decodeJwt(token!.access_token).jti!));
    expect(lease).toMatchObject({ subject: 'agent-oidc', onBehalfOf: 'corp/alice' });
    expect(await exchange(await personIdToken(provider.url, client, 'bob'))).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/may not delegate/) });
  });
});
