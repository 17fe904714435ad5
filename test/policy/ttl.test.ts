import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clampTtl, credentialCeiling } from '../../src/policy/ttl.js';

const now = new Date('2030-01-01T00:00:00Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);

describe('clampTtl', () => {
  it('uses the requested TTL when it is within every bound', () => {
    expect(clampTtl({ requested: 300, roleDefault: 900, roleMax: 3600, deadline: at(7200), now })).toBe(300);
  });

  it("uses the role's default when nothing is requested", () => {
    expect(clampTtl({ requested: undefined, roleDefault: 900, roleMax: 3600, deadline: at(7200), now })).toBe(900);
  });

  it("clamps to the role's maximum", () => {
    expect(clampTtl({ requested: 86400, roleDefault: 900, roleMax: 3600, deadline: at(7200), now })).toBe(3600);
  });

  it("clamps to the time left before the task's deadline, in whole seconds rounded down", () => {
    expect(clampTtl({ requested: undefined, roleDefault: 900, roleMax: 3600, deadline: at(120), now })).toBe(120);
    const deadline = new Date(now.getTime() + 120_999);
    expect(clampTtl({ requested: 3600, roleDefault: 900, roleMax: 3600, deadline, now })).toBe(120);
  });

  it('answers zero or less when the deadline is here or past', () => {
    expect(clampTtl({ requested: 60, roleDefault: 900, roleMax: 3600, deadline: now, now })).toBe(0);
    expect(clampTtl({ requested: 60, roleDefault: 900, roleMax: 3600, deadline: new Date(now.getTime() + 999), now })).toBe(0);
    expect(clampTtl({ requested: 60, roleDefault: 900, roleMax: 3600, deadline: at(-30), now })).toBeLessThan(1);
  });

  it('property: result is min(requested ?? default, max, floor(time left)) and never exceeds a bound', () => {
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: 1, max: 7 * 86400 }), { nil: undefined }),
        fc.integer({ min: 1, max: 86400 }),
        fc.integer({ min: 1, max: 7 * 86400 }),
        fc.integer({ min: -86_400_000, max: 8 * 86_400_000 }),
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        (requested, roleDefault, roleMax, leftMs, nowMs) => {
          const current = new Date(nowMs);
          const deadline = new Date(nowMs + leftMs);
          const ttl = clampTtl({ requested, roleDefault, roleMax, deadline, now: current });
          const left = Math.floor(leftMs / 1000);
          expect(ttl).toBe(Math.min(requested ?? roleDefault, roleMax, left));
          expect(Number.isInteger(ttl)).toBe(true);
          expect(ttl).toBeLessThanOrEqual(roleMax);
          expect(ttl).toBeLessThanOrEqual(requested ?? roleDefault);
          // A credential never outlives the task: now + ttl is at or before the deadline.
          expect(nowMs + ttl * 1000).toBeLessThanOrEqual(deadline.getTime());
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('credentialCeiling', () => {
  it("is the earliest of the role's max_ttl from issue, the task's deadline and the approved TTL", () => {
    expect(credentialCeiling({ issuedAt: now, roleMaxTtl: 3600, deadline: at(7200) })).toEqual(at(3600));
    expect(credentialCeiling({ issuedAt: now, roleMaxTtl: 3600, deadline: at(120) })).toEqual(at(120));
    expect(credentialCeiling({ issuedAt: now, roleMaxTtl: 3600, deadline: at(7200), approvedTtl: 60 })).toEqual(at(60));
    expect(credentialCeiling({ issuedAt: now, roleMaxTtl: 3600, deadline: at(7200), approvedTtl: null })).toEqual(at(3600));
  });

  it('is never earlier than the end of the TTL clampTtl grants for the same bounds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 86400 }), fc.integer({ min: 1, max: 86400 }), fc.integer({ min: 1000, max: 86_400_000 }), (requested, roleMax, leftMs) => {
        const deadline = new Date(now.getTime() + leftMs);
        const ttl = clampTtl({ requested, roleDefault: 900, roleMax, deadline, now });
        fc.pre(ttl >= 1);
        expect(credentialCeiling({ issuedAt: now, roleMaxTtl: roleMax, deadline }).getTime()).toBeGreaterThanOrEqual(now.getTime() + ttl * 1000);
      }),
    );
  });
});
