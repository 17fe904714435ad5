import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../clock.js';

export interface JwksCacheOptions {
  /** Loads the issuer's current key set (discovery + jwks_uri, with timeouts and size caps). */
  load: () => Promise<JSONWebKeySet>;
  clock: Clock;
  /** Keys are refetched once older than this. */
  maxAgeMs: number;
  /** An unknown kid triggers at most one refetch per this interval, however many tokens carry one. */
  cooldownMs: number;
}

export interface JwksCache {
  /** For jose's jwtVerify: resolves the key for a token header. */
  getKey: JWTVerifyGetKey;
  /**
   * True while `kid` is in a key set that is still fresh. The verified-token
   * cache serves a token only while this holds, so a key the issuer removed
   * stops working within the cache's max age even for a token reused forever.
   */
  hasKid(kid: string | undefined): boolean;
  /** How many times the issuer has been fetched (for tests and metrics). */
  fetches(): number;
}

export class IssuerUnavailableError extends Error {
  override name = 'IssuerUnavailableError';
}

/**
 * One issuer's keys. Fresh keys are used as they are; stale keys are
 * refreshed, and if the issuer is down the stale keys keep working (an
 * outage of the issuer is not an outage of the broker). A token with an
 * unknown kid refetches at most once per cooldown, so a flood of random kids
 * costs the issuer one request. Header URLs (`jku`, `x5u`) are never looked at.
 */
export function createJwksCache(options: JwksCacheOptions): JwksCache {
  let keys: { set: JWTVerifyGetKey; kids: Set<string | undefined>; fetchedAt: number } | undefined;
  let lastAttempt = -Infinity;
  let inflight: Promise<void> | undefined;
  let count = 0;

  function refresh(): Promise<void> {
    inflight ??= (async () => {
      lastAttempt = options.clock.now().getTime();
      count++;
      try {
        const jwks = await options.load();
        if (!jwks || !Array.isArray(jwks.keys)) throw new Error('not a JWKS');
        keys = {
          set: createLocalJWKSet(jwks),
          kids: new Set(jwks.keys.map((k) => k.kid)),
          fetchedAt: options.clock.now().getTime(),
        };
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  }

  async function ensureKeys(): Promise<void> {
    const now = options.clock.now().getTime();
    if (keys && now - keys.fetchedAt < options.maxAgeMs) return;
    if (keys && now - lastAttempt < options.cooldownMs) return; // stale, but the issuer failed a moment ago
    try {
      await refresh();
    } catch (err) {
      if (!keys) throw new IssuerUnavailableError(`keys could not be fetched: ${(err as Error).message}`);
    }
  }

  return {
    async getKey(header, token) {
      await ensureKeys();
      try {
        return await keys!.set(header, token);
      } catch (err) {
        const unknownKid = err instanceof errors.JWKSNoMatchingKey;
        if (!unknownKid || options.clock.now().getTime() - lastAttempt < options.cooldownMs) throw err;
        await refresh().catch(() => {});
        return keys!.set(header, token);
      }
    },
    hasKid: (kid) => !!keys && options.clock.now().getTime() - keys.fetchedAt < options.maxAgeMs && keys.kids.has(kid),
    fetches: () => count,
  };
}
