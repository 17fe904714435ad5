import type { Identity } from './types.js';

/** The longest a verified token is served without verifying it again. */
export const MAX_CACHE_SECONDS = 600;

interface Entry {
  identity: Identity;
  kid: string | undefined;
  /** The earliest of the token's `exp` and its `iat` plus the issuer's max token age. */
  until: Date;
}

/**
 * Verified tokens by their SHA-256, bounded (least recently used goes first).
 * An entry is served only until the token's `exp`, and only while its key is
 * still in its issuer's key set, so an agent that reuses its token skips
 * signature verification without ever outliving what verification would say.
 * Whatever `exp` says, an entry lives at most MAX_CACHE_SECONDS, and an expiry
 * that is not a valid date (it compares false with every time) is never cached.
 */
export function createTokenCache(maxEntries: number) {
  const entries = new Map<string, Entry>();
  return {
    get(tokenSha256: string, now: Date, keyStillPublished: (issuer: string, kid: string | undefined) => boolean): Identity | undefined {
      const entry = entries.get(tokenSha256);
      if (!entry) return undefined;
      if (entry.until <= now || !keyStillPublished(entry.identity.issuer, entry.kid)) {
        entries.delete(tokenSha256);
        return undefined;
      }
      // Re-insert to mark as most recently used.
      entries.delete(tokenSha256);
      entries.set(tokenSha256, entry);
      return entry.identity;
    },
    set(identity: Identity, kid: string | undefined, now: Date, until: Date = identity.expiresAt): void {
      entries.delete(identity.tokenSha256);
      const end = Math.min(until.getTime(), identity.expiresAt.getTime(), now.getTime() + MAX_CACHE_SECONDS * 1000);
      if (maxEntries <= 0 || !Number.isFinite(end)) return;
      entries.set(identity.tokenSha256, { identity, kid, until: new Date(end) });
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    size: () => entries.size,
  };
}
export type TokenCache = ReturnType<typeof createTokenCache>;
