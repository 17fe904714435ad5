import type { Identity } from './types.js';

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
    set(identity: Identity, kid: string | undefined, until: Date = identity.expiresAt): void {
      if (maxEntries <= 0) return;
      entries.delete(identity.tokenSha256);
      entries.set(identity.tokenSha256, { identity, kid, until: until < identity.expiresAt ? until : identity.expiresAt });
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    size: () => entries.size,
  };
}
export type TokenCache = ReturnType<typeof createTokenCache>;
