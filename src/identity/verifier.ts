import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../clock.js';
import type { IssuerConfig } from '../config/schema.js';
import { sha256Hex } from '../ids.js';
import { fetchJsonCapped } from './fetch-json.js';
import { subjectProblem, wellFormedThroughout } from './identity-text.js';
import { createJwksCache, IssuerUnavailableError } from './jwks-cache.js';
import { createTokenCache } from './token-cache.js';
import { AuthError, type Identity } from './types.js';

export interface TokenVerifier {
  verify(token: string): Promise<Identity>;
  /** How often each issuer's keys have been fetched (tests, metrics). */
  keyFetches(issuer: string): number;
}

export interface VerifierOptions {
  issuers: IssuerConfig[];
  /** The audience accepted when an issuer lists none: the broker's own public URL. */
  defaultAudience: string;
  clock: Clock;
  /** Verified tokens kept to skip re-verification (0 turns the cache off). */
  tokenCacheSize?: number;
}

export const MAX_TOKEN_BYTES = 16 * 1024;
const MAX_DISCOVERY_BYTES = 64 * 1024;
const MAX_JWKS_BYTES = 256 * 1024;

interface KeySource {
  getKey: JWTVerifyGetKey;
  hasKid(kid: string | undefined): boolean;
  fetches(): number;
}

/** OIDC Discovery 1.0 §4: the document's `issuer` must be exactly the issuer asked about. */
async function discoverJwksUri(issuer: IssuerConfig): Promise<string> {
  const url = `${issuer.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const doc = (await fetchJsonCapped(url, { timeoutMs: issuer.fetch_timeout * 1000, maxBytes: MAX_DISCOVERY_BYTES })) as {
    issuer?: unknown;
    jwks_uri?: unknown;
  };
  if (doc?.issuer !== issuer.issuer) throw new Error('discovery issuer mismatch');
  if (typeof doc.jwks_uri !== 'string' || !/^https?:\/\//.test(doc.jwks_uri)) throw new Error('discovery has no jwks_uri');
  return doc.jwks_uri;
}

function keySource(issuer: IssuerConfig, clock: Clock): KeySource {
  if (issuer.jwks) {
    const jwks = issuer.jwks as unknown as JSONWebKeySet;
    const kids = new Set(jwks.keys.map((k) => k.kid));
    return { getKey: createLocalJWKSet(jwks), hasKid: (kid) => kids.has(kid), fetches: () => 0 };
  }
  let jwksUri = issuer.jwks_uri;
  return createJwksCache({
    clock,
    maxAgeMs: issuer.jwks_cache_max_age * 1000,
    cooldownMs: issuer.jwks_refresh_cooldown * 1000,
    async load() {
      const uri = jwksUri ?? (await discoverJwksUri(issuer));
      try {
        const jwks = (await fetchJsonCapped(uri, { timeoutMs: issuer.fetch_timeout * 1000, maxBytes: MAX_JWKS_BYTES })) as JSONWebKeySet;
        if (!issuer.jwks_uri) jwksUri = uri;
        return jwks;
      } catch (err) {
        if (!issuer.jwks_uri) jwksUri = undefined; // rediscover next time
        throw err;
      }
    },
  });
}

/** Maps jose's failures to stable codes without echoing anything from the token. */
function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  if (err instanceof IssuerUnavailableError) return new AuthError('issuer_unavailable', "the issuer's keys could not be fetched");
  if (err instanceof errors.JWTExpired) return new AuthError('token_expired', 'the token has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new AuthError('token_invalid', `the token's ${err.claim} claim is not accepted`);
  }
  if (err instanceof errors.JOSEError) return new AuthError('token_invalid', 'the token could not be verified');
  if (err instanceof TypeError || err instanceof SyntaxError) return new AuthError('token_malformed', 'the token could not be decoded');
  return new AuthError('token_invalid', 'the token could not be verified');
}

/**
 * Decides whether a Bearer token is the workload it claims to be. The
 * token's `iss` picks exactly one configured issuer (unknown issuers are
 * refused before any network call); then signature, algorithm allow-list,
 * audience, time claims and required claims are checked in that order.
 */
export function createTokenVerifier(options: VerifierOptions): TokenVerifier {
  const { clock } = options;
  const byIssuer = new Map(
    options.issuers.map((issuer) => [
      issuer.issuer,
      { config: issuer, keys: keySource(issuer, clock), audiences: issuer.audiences ?? [options.defaultAudience] },
    ]),
  );
  const byName = new Map([...byIssuer.values()].map((e) => [e.config.name, e]));
  const cache = createTokenCache(options.tokenCacheSize ?? 10_000);
  const keyStillPublished = (issuer: string, kid: string | undefined) => byName.get(issuer)?.keys.hasKid(kid) ?? false;

  async function verifyUncached(token: string, tokenSha256: string): Promise<{ identity: Identity; kid: string | undefined }> {
    let iss: string | undefined;
    let kid: string | undefined;
    try {
      iss = decodeJwt(token).iss;
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new AuthError('token_malformed', 'the bearer token is not a JWT');
    }
    const entry = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
    if (!entry) throw new AuthError('issuer_unknown', 'the token was not issued by a trusted issuer');
    const { config } = entry;
    const now = clock.now();
    const { payload } = await jwtVerify(token, entry.keys.getKey, {
      issuer: config.issuer,
      audience: entry.audiences,
      algorithms: config.algorithms,
      clockTolerance: config.clock_tolerance,
      requiredClaims: ['sub', 'exp', ...config.required_claims],
      currentDate: now,
      ...(config.max_token_age !== undefined ? { maxTokenAge: config.max_token_age } : {}),
    });
    // jose checks that `sub` is present, not that it is a string: an array or number must not reach the matchers.
    // The rule is the one tasks are bound with (identity-text.ts); the refusal names it, never the token's text.
    const subProblem = subjectProblem(payload.sub);
    if (subProblem || typeof payload.sub !== 'string') throw new AuthError('token_invalid', `the token's sub claim is not accepted: it ${subProblem}`);
    // iss, aud and the claims rules match on: a lone surrogate anywhere would reach the database as U+FFFD.
    if (!wellFormedThroughout(payload)) throw new AuthError('token_invalid', "the token's claims are not well-formed Unicode");
    if (payload.iat !== undefined && payload.iat > now.getTime() / 1000 + config.clock_tolerance) {
      throw new AuthError('token_invalid', "the token's iat claim is in the future");
    }
    if (config.preset === 'spiffe' && !payload.sub.startsWith('spiffe://')) {
      throw new AuthError('token_invalid', "the token's sub claim is not a SPIFFE ID");
    }
    // An exp past the ECMAScript date range (8.64e12 s) makes an Invalid Date, which no time is ever past.
    const expiresAt = new Date(payload.exp! * 1000);
    if (Number.isNaN(expiresAt.getTime())) throw new AuthError('token_invalid', "the token's exp claim is not accepted");
    return { kid, identity: { issuer: config.name, subject: payload.sub, claims: payload, tokenSha256, expiresAt } };
  }

  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_BYTES) throw new AuthError('token_malformed', 'the bearer token is too long');
      const tokenSha256 = sha256Hex(token);
      const cached = cache.get(tokenSha256, clock.now(), keyStillPublished);
      if (cached) return cached;
      try {
        const { identity, kid } = await verifyUncached(token, tokenSha256);
        const entry = byName.get(identity.issuer)!.config;
        const iat = identity.claims.iat;
        const maxAgeEnd = entry.max_token_age !== undefined && iat !== undefined ? new Date((iat + entry.max_token_age) * 1000) : undefined;
        cache.set(identity, kid, clock.now(), maxAgeEnd);
        return identity;
      } catch (err) {
        throw toAuthError(err);
      }
    },
    keyFetches: (issuer) => byName.get(issuer)?.keys.fetches() ?? 0,
  };
}
