import { describe, expect, it } from 'vitest';
import { createTokenCache, MAX_CACHE_SECONDS } from '../../src/identity/token-cache.js';
import type { Identity } from '../../src/identity/types.js';

const identity = (tokenSha256: string, expiresAt: Date): Identity => ({ issuer: 'corp', subject: 'agent-1', claims: {}, tokenSha256, expiresAt });
const published = () => true;

describe('createTokenCache', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  const later = (seconds: number) => new Date(now.getTime() + seconds * 1000);

  it('serves an entry until the token expires', () => {
    const cache = createTokenCache(10);
    cache.set(identity('a', later(60)), 'k', now);
    expect(cache.get('a', later(59), published)).toBeDefined();
    expect(cache.get('a', later(60), published)).toBeUndefined();
  });

  it('never keeps an entry past its bound, however far away exp is', () => {
    const cache = createTokenCache(10);
    cache.set(identity('far', later(10 * 365 * 86400)), 'k', now);
    expect(cache.get('far', later(MAX_CACHE_SECONDS - 1), published)).toBeDefined();
    expect(cache.get('far', later(MAX_CACHE_SECONDS), published)).toBeUndefined();
  });

  it('does not cache an identity whose expiry is not a valid date', () => {
    const cache = createTokenCache(10);
    cache.set(identity('nan', new Date(8.64e15 + 1000)), 'k', now);
    expect(cache.size()).toBe(0);
    expect(cache.get('nan', now, published)).toBeUndefined();
  });
});
