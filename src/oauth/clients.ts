import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Clock } from '../clock.js';
import type { ResourceServerConfig } from '../config/oauth.js';
import { digestsEqual, sha256Hex } from '../ids.js';
import { OAuthError } from './errors.js';

export type ResourceServer = ResourceServerConfig;

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** The asymmetric algorithms a client assertion may be signed with. */
export const ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'RS256', 'PS256'];

/**
 * Resource servers as OAuth clients (RFC 7662 section 2.1, RFC 6749 section
 * 2.3, RFC 7523): `client_secret_basic`, `client_secret_post` against the
 * secret's SHA-256 (compared in constant time), or `private_key_jwt`, a
 * client assertion signed by one of the server's keys, for this broker
 * (`aud`), at most 5 minutes old. One method per request. Any failure is 401
 * `invalid_client`, saying nothing of which client ids exist
 * (test/oauth/introspection.test.ts).
 */
export function createClientAuthenticator(deps: { servers: ResourceServer[]; audiences: string[]; clock: Clock }) {
  const byId = new Map(deps.servers.map((s) => [s.client_id, s]));
  const keySets = new Map(deps.servers.flatMap((s) => (s.jwks ? [[s.client_id, createLocalJWKSet(s.jwks as unknown as JSONWebKeySet)] as const] : [])));
  const refuse = () => new OAuthError('invalid_client', 'the client could not be authenticated', 401);

  function bySecret(id: string, secret: string): ResourceServer {
    const server = byId.get(id);
    // Hashed whatever the id, so that an unknown one takes as long as a wrong secret.
    const hash = sha256Hex(secret);
    if (!server?.secret_sha256 || !digestsEqual(hash, server.secret_sha256)) throw refuse();
    return server;
  }

  async function byAssertion(assertion: string): Promise<ResourceServer> {
    let id: unknown;
    try {
      id = decodeJwt(assertion).iss;
    } catch {
      throw refuse();
    }
    const keys = typeof id === 'string' ? keySets.get(id) : undefined;
    if (typeof id !== 'string' || !keys) throw refuse();
    try {
      // 5 s of clock skew between the resource server and the broker, either way.
      const { payload } = await jwtVerify(assertion, keys, { issuer: id, subject: id, audience: deps.audiences, algorithms: ASSERTION_ALGORITHMS, maxTokenAge: '5m', clockTolerance: 5, requiredClaims: ['exp', 'jti'], currentDate: deps.clock.now() });
      if (typeof payload.jti !== 'string') throw refuse();
    } catch {
      throw refuse();
    }
    return byId.get(id)!;
  }

  return async function authenticate(authorization: string | undefined, form: URLSearchParams): Promise<ResourceServer> {
    const basic = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(authorization ?? '')?.[1];
    const methods = [basic !== undefined, form.has('client_secret'), form.has('client_assertion')].filter(Boolean).length;
    if (methods !== 1) throw methods === 0 ? refuse() : new OAuthError('invalid_request', 'use one client authentication method');
    if (basic !== undefined) {
      const decoded = Buffer.from(basic, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw refuse();
      // RFC 6749 section 2.3.1: both parts are form-encoded before they are joined.
      const [id, secret] = [decoded.slice(0, colon), decoded.slice(colon + 1)].map((p) => {
        try {
          return decodeURIComponent(p.replace(/\+/g, ' '));
        } catch {
          throw refuse();
        }
      });
      return bySecret(id!, secret!);
    }
    if (form.has('client_secret')) return bySecret(form.get('client_id') ?? '', form.get('client_secret') ?? '');
    if (form.get('client_assertion_type') !== JWT_BEARER) throw new OAuthError('invalid_request', `client_assertion_type must be ${JWT_BEARER}`);
    return byAssertion(form.get('client_assertion') ?? '');
  };
}
export type ClientAuthenticator = ReturnType<typeof createClientAuthenticator>;

/** A token's audiences meet the resource server's. */
export function meantFor(server: ResourceServer, aud: unknown): boolean {
  const auds = Array.isArray(aud) ? aud : [aud];
  return auds.some((a) => typeof a === 'string' && server.audiences.includes(a));
}
