import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../clock.js';
import type { IssuerConfig } from '../config/schema.js';
import { sha256Hex } from '../ids.js';
import { AuthError, type Identity } from './types.js';

export interface TokenVerifier {
  verify(token: string): Promise<Identity>;
}

export interface VerifierOptions {
  issuers: IssuerConfig[];
  /** The audience accepted when an issuer lists none: the broker's own public URL. */
  defaultAudience: string;
  /** Network timeout for discovery and JWKS requests, in milliseconds. */
  fetchTimeoutMs?: number;
  clock: Clock;
}

const MAX_DISCOVERY_BYTES = 64 * 1024;

async function discoverJwksUri(issuer: string, timeoutMs: number): Promise<URL> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  if (!response.ok) throw new Error(`discovery answered ${response.status}`);
  const text = await response.text();
  if (text.length > MAX_DISCOVERY_BYTES) throw new Error('discovery document too large');
  const doc = JSON.parse(text) as { issuer?: unknown; jwks_uri?: unknown };
  // OIDC Discovery 4.3: the document's issuer must be the one we asked.
  if (doc.issuer !== issuer) throw new Error('discovery issuer mismatch');
  if (typeof doc.jwks_uri !== 'string') throw new Error('discovery has no jwks_uri');
  return new URL(doc.jwks_uri);
}

/** Key source for one issuer: inline JWKS, a jwks_uri, or discovery (resolved once, retried on failure). */
function keySource(issuer: IssuerConfig, timeoutMs: number): JWTVerifyGetKey {
  if (issuer.jwks) return createLocalJWKSet(issuer.jwks as Parameters<typeof createLocalJWKSet>[0]);
  const remote = (url: URL) => createRemoteJWKSet(url, { timeoutDuration: timeoutMs, cooldownDuration: 30_000 });
  if (issuer.jwks_uri) return remote(new URL(issuer.jwks_uri));
  let resolved: Promise<JWTVerifyGetKey> | undefined;
  return async (header, token) => {
    resolved ??= discoverJwksUri(issuer.issuer, timeoutMs).then(remote);
    try {
      return await (await resolved)(header, token);
    } catch (err) {
      if (!(err instanceof errors.JOSEError)) resolved = undefined;
      throw err;
    }
  };
}

/** Maps jose's failures to stable codes without echoing anything from the token. */
function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  if (err instanceof errors.JWTExpired) return new AuthError('token_expired', 'the token has expired');
  if (err instanceof errors.JWKSTimeout) return new AuthError('issuer_unavailable', 'the issuer did not answer in time');
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new AuthError('token_invalid', `the token's ${err.claim} claim is not accepted`);
  }
  if (err instanceof errors.JOSEError) return new AuthError('token_invalid', 'the token could not be verified');
  return new AuthError('issuer_unavailable', "the issuer's keys could not be fetched");
}

export function createTokenVerifier(options: VerifierOptions): TokenVerifier {
  const timeoutMs = options.fetchTimeoutMs ?? 5000;
  const byIssuer = new Map(
    options.issuers.map((issuer) => [
      issuer.issuer,
      { config: issuer, keys: keySource(issuer, timeoutMs), audiences: issuer.audiences ?? [options.defaultAudience] },
    ]),
  );
  return {
    async verify(token) {
      let iss: string | undefined;
      try {
        iss = decodeJwt(token).iss;
      } catch {
        throw new AuthError('token_malformed', 'the bearer token is not a JWT');
      }
      const entry = iss === undefined ? undefined : byIssuer.get(iss);
      if (!entry) throw new AuthError('issuer_unknown', 'the token was not issued by a trusted issuer');
      try {
        const { payload } = await jwtVerify(token, entry.keys, {
          issuer: entry.config.issuer,
          audience: entry.audiences,
          algorithms: entry.config.algorithms,
          clockTolerance: entry.config.clock_tolerance,
          requiredClaims: ['sub', 'exp'],
          currentDate: options.clock.now(),
        });
        // jose checks that `sub` is present, not that it is a string: an array or number must not reach the matchers.
        if (typeof payload.sub !== 'string' || payload.sub.length === 0) {
          throw new AuthError('token_invalid', "the token's sub claim is not accepted");
        }
        return {
          issuer: entry.config.name,
          subject: payload.sub,
          claims: payload,
          tokenSha256: sha256Hex(token),
          expiresAt: new Date(payload.exp! * 1000),
        };
      } catch (err) {
        throw toAuthError(err);
      }
    },
  };
}
