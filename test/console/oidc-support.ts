import type { Server } from 'node:http';
import { createServer } from 'node:net';
import { serve } from '@hono/node-server';
import Provider from 'oidc-provider';
import type { ConfigInput } from '../../src/config/schema.js';
import { HARNESS_ROLES, type TestBroker } from '../support/broker.js';

export const CLIENT_ID = 'tasklease-console';
export const CLIENT_SECRET = 'console-secret-for-tests-only';

/** A free loopback port: the broker's public_url (and so the redirect URI) must name its port before it starts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * A real OpenID Connect provider (oidc-provider) on a loopback port: one confidential client whose only
 * redirect URI is the broker's callback, PKCE required (S256 only), its dev interactions as the login and
 * consent screens (any login name becomes the subject; the account's email is `<subject>@example.com`), and
 * RP-initiated logout returning to the broker's /console/signed-out (without it when `endSession: false`).
 */
export async function startProvider(brokerUrl: string, options: { endSession?: boolean; clients?: Record<string, unknown>[] } = {}): Promise<{ url: string; close: () => Promise<void> }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const provider = new Provider(url, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${brokerUrl}/console/callback`],
        post_logout_redirect_uris: [`${brokerUrl}/console/signed-out`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      ...(options.clients ?? []),
    ],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email'] },
    // The scopes' claims go into the ID token itself (by default only into userinfo): the broker reads only the ID token.
    conformIdTokenClaims: false,
    findAccount: async (_ctx: unknown, id: string) => ({ accountId: id, claims: async () => ({ sub: id, email: `${id}@example.com` }) }),
    // RP-initiated logout (on by default): its end_session_endpoint asks the person to confirm, then returns to the console.
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: options.endSession ?? true } },
  });
  const server: Server = await new Promise((resolve) => {
    const s = provider.listen(port, '127.0.0.1', () => resolve(s));
  });
  return { url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Serves a test broker on the given loopback port. */
export async function serveOn(t: TestBroker, port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: t.broker.app.fetch, port, hostname: '127.0.0.1' }, () => resolve(s as Server)) as Server;
  });
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * A broker whose console signs people in through the provider at `providerUrl` as issuer `corp`:
 * corp/alice is an admin; whoever has the email bob@example.com approves `gated` (a claim rule, so the
 * session must keep the ID token's claims); anybody else is nothing to the console.
 */
export function oidcConsoleConfig(brokerUrl: string, providerUrl: string): Partial<ConfigInput> {
  return {
    public_url: brokerUrl,
    issuers: [{ name: 'corp', issuer: providerUrl, jwks_uri: `${providerUrl}/jwks`, algorithms: ['RS256'] }],
    principals: {
      orchestrators: [{ issuer: 'test', subject: 'orchestrator' }],
      admins: [{ issuer: 'corp', subject: 'alice' }],
    },
    roles: [
      ...HARNESS_ROLES,
      {
        name: 'gated',
        backend: 'local',
        allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }],
        requires_approval: true,
        approvers: [{ issuer: 'corp', claims: { email: 'bob@example.com' } }],
      },
    ],
    console: { oidc: { issuer: providerUrl, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, scopes: ['openid', 'email'], issuer_name: 'corp' } },
  };
}
