import { randomBytes } from 'node:crypto';
import { and, eq, gt, lte, sql } from 'drizzle-orm';
import * as oauth from 'oauth4webapi';
import type { Clock } from '../clock.js';
import type { ConsoleOidcConfig } from '../config/console.js';
import type { Db } from '../db/client.js';
import { consoleLogins } from '../db/schema.js';
import { digestsEqual, sha256Hex } from '../ids.js';

/** How long a person has at the provider before the login must start again. */
export const LOGIN_SECONDS = 10 * 60;

/** Why a callback is refused: each is a 4xx page; none echoes what the provider or the browser sent. */
export type LoginRefusal = 'no_login' | 'wrong_state' | 'provider_error' | 'access_denied' | 'invalid_token_response';

export class LoginRefused extends Error {
  override name = 'LoginRefused';
  constructor(readonly reason: LoginRefusal) {
    super(reason);
  }
}

/** The provider cannot be reached or answers nonsense at discovery: an outage, not the person's fault. */
export class ProviderUnavailable extends Error {
  override name = 'ProviderUnavailable';
}

/** More logins are under way than `max_pending` allows: nobody starts another until some finish or expire. */
export class TooManyLogins extends Error {
  override name = 'TooManyLogins';
}

export interface OidcDeps {
  db: Db;
  clock: Clock;
  config: ConsoleOidcConfig;
  /** `<public_url>/console/callback`, registered at the provider. */
  redirectUri: string;
  /** `<public_url>/console/signed-out`, registered at the provider as a post-logout redirect URI. */
  postLogoutRedirectUri: string;
  /** Logins under way (unexpired rows) at most, across replicas; default unbounded. */
  maxPending?: number;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Derived from the login cookie's token with distinct labels, so nothing of
 * the login needs storing: the state (which travels in the URL and may be
 * logged by the provider) reveals neither the token nor the PKCE verifier.
 */
const derive = (label: string, token: string) => Buffer.from(sha256Hex(`tasklease console oidc ${label}\n${token}`), 'hex').toString('base64url');

/**
 * OpenID Connect login for people, with oauth4webapi: authorization code
 * flow, PKCE (S256), state and nonce. The browser holds a random token in a
 * short-lived HttpOnly cookie; the `console_logins` row keyed by its SHA-256
 * makes the login single-use and bounds its life. The ID token is verified
 * (signature against the provider's JWKS from discovery, iss, aud, nonce,
 * expiry) and then dropped: only the subject and claims leave this module.
 */
export function createOidcLogin({ db, clock, config, redirectUri, postLogoutRedirectUri, maxPending }: OidcDeps) {
  const issuerUrl = new URL(config.issuer);
  // Plain HTTP only to a provider on this machine (tests, a local provider); anywhere else TLS is required.
  const insecure = issuerUrl.protocol === 'http:' && LOOPBACK.has(issuerUrl.hostname);
  const http = { [oauth.allowInsecureRequests]: insecure, signal: () => AbortSignal.timeout(10_000) };
  const client: oauth.Client = { client_id: config.client_id };
  const auth = config.client_secret ? oauth.ClientSecretBasic(config.client_secret) : oauth.None();
  let server: Promise<oauth.AuthorizationServer> | undefined;

  /** Discovery, once; a failure is forgotten so the next login tries again. */
  function discover(): Promise<oauth.AuthorizationServer> {
    server ??= oauth
      .discoveryRequest(issuerUrl, { ...http, algorithm: 'oidc', signal: AbortSignal.timeout(10_000) })
      .then((res) => oauth.processDiscoveryResponse(issuerUrl, res))
      .then((as) => {
        if (!as.authorization_endpoint || !as.token_endpoint || !as.jwks_uri) throw new Error('the discovery document lacks an endpoint');
        return as;
      })
      .catch((err: unknown) => {
        server = undefined;
        throw new ProviderUnavailable(`the identity provider's discovery failed (${(err as Error).name})`);
      });
    return server;
  }

  return {
    /** Starts a login: the row, the cookie's token and the provider's URL to send the browser to. */
    async begin(): Promise<{ token: string; url: string }> {
      const as = await discover();
      const now = clock.now();
      // Anyone may start a login: the rows it leaves are bounded (a count over the expiry index; a race may pass it by a few).
      if (maxPending !== undefined) {
        const [pending] = await db.select({ n: sql<number>`count(*)::int` }).from(consoleLogins).where(gt(consoleLogins.expiresAt, now));
        if ((pending?.n ?? 0) >= maxPending) throw new TooManyLogins(`${maxPending} logins are under way`);
      }
      const token = randomBytes(32).toString('base64url');
      await db.insert(consoleLogins).values({ id: sha256Hex(token), createdAt: now, expiresAt: new Date(now.getTime() + LOGIN_SECONDS * 1000) });
      const url = new URL(as.authorization_endpoint!);
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('client_id', config.client_id);
      url.searchParams.set('redirect_uri', redirectUri);
      url.searchParams.set('scope', config.scopes.join(' '));
      url.searchParams.set('state', derive('state', token));
      url.searchParams.set('nonce', derive('nonce', token));
      url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(derive('pkce', token)));
      url.searchParams.set('code_challenge_method', 'S256');
      return { token, url: url.href };
    },

    /**
     * Finishes a login from the callback's query and the login cookie's token. The row goes first,
     * whatever follows, so a callback works once. Returns the verified subject and claims.
     */
    async finish(token: string | undefined, callback: URL): Promise<{ subject: string; claims: Record<string, unknown> }> {
      if (!token || !/^[A-Za-z0-9_-]{43}$/.test(token)) throw new LoginRefused('no_login');
      const [row] = await db
        .delete(consoleLogins)
        .where(and(eq(consoleLogins.id, sha256Hex(token)), gt(consoleLogins.expiresAt, clock.now())))
        .returning({ id: consoleLogins.id });
      if (!row) throw new LoginRefused('no_login');
      const state = callback.searchParams.get('state');
      if (typeof state !== 'string' || !digestsEqual(sha256Hex(state), sha256Hex(derive('state', token)))) throw new LoginRefused('wrong_state');
      const as = await discover();
      let params: URLSearchParams;
      try {
        params = oauth.validateAuthResponse(as, client, callback.searchParams, derive('state', token));
      } catch (err) {
        if (err instanceof oauth.AuthorizationResponseError) throw new LoginRefused(err.error === 'access_denied' ? 'access_denied' : 'provider_error');
        throw new LoginRefused('provider_error');
      }
      try {
        const res = await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUri, derive('pkce', token), http);
        const result = await oauth.processAuthorizationCodeResponse(as, client, res, { expectedNonce: derive('nonce', token), requireIdToken: true });
        // The ID token came straight from the token endpoint; its signature is checked all the same (the brief's identity model).
        await oauth.validateApplicationLevelSignature(as, res, http);
        const claims = oauth.getValidatedIdTokenClaims(result)!;
        const { sub, ...rest } = claims;
        return { subject: sub, claims: { sub, ...rest } };
      } catch (err) {
        // A replayed or expired code, a bad token: the person's login failed, not the broker. Nothing of the answer is kept.
        if (err instanceof oauth.ResponseBodyError || err instanceof oauth.OperationProcessingError || err instanceof oauth.WWWAuthenticateChallengeError) {
          throw new LoginRefused('invalid_token_response');
        }
        throw new ProviderUnavailable(`the identity provider's token endpoint failed (${(err as Error).name})`);
      }
    },

    /**
     * Where to send the browser after the console's session has ended, to end the provider's session too
     * (OpenID Connect RP-Initiated Logout 1.0): the discovery document's `end_session_endpoint` with
     * `client_id` and `post_logout_redirect_uri`. No `id_token_hint`: the broker keeps no token, so the
     * provider asks the person to confirm (as the spec has it without a hint). No `state` either: the page
     * the provider returns to is the same fixed page for anyone. Undefined when `logout: local` or when the
     * provider offers no endpoint (oauth4webapi reads the metadata but builds no end-session URL); throws
     * ProviderUnavailable when discovery fails or the endpoint is not a usable URL. Either way the caller
     * shows the console's own Signed out page: the console's session has ended by then.
     */
    async logoutUrl(): Promise<string | undefined> {
      if (config.logout === 'local') return undefined;
      const endpoint = (await discover()).end_session_endpoint;
      if (!endpoint) return undefined;
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        throw new ProviderUnavailable("the identity provider's end_session_endpoint is not a URL");
      }
      // As for the provider itself: TLS, or plain HTTP to a provider on this machine.
      if (url.protocol !== 'https:' && !(insecure && url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
        throw new ProviderUnavailable("the identity provider's end_session_endpoint is not https");
      }
      url.searchParams.set('client_id', config.client_id);
      url.searchParams.set('post_logout_redirect_uri', postLogoutRedirectUri);
      return url.href;
    },

    /** Deletes logins never finished (the sweeper's housekeeping). */
    async prune(): Promise<number> {
      const gone = await db.delete(consoleLogins).where(lte(consoleLogins.expiresAt, clock.now())).returning({ id: consoleLogins.id });
      return gone.length;
    },
  };
}
export type OidcLogin = ReturnType<typeof createOidcLogin>;
