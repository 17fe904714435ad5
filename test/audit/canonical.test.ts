import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/audit/chain.js';

/** The plain definition the hash chain has always used: sorted keys at every depth, undefined members left out. */
function reference(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

describe('canonical JSON of audit events', () => {
  it('renders any value as the plain definition does, and as JSON that parses back to it', () => {
    const member = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(undefined), fc.date({ noInvalidDate: true }));
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.dictionary(fc.string({ maxLength: 8 }), member, { maxKeys: 8 }), fc.array(member, { maxLength: 5 }));
    fc.assert(
      fc.property(value, (v) => {
        const out = canonicalJson(v);
        expect(out).toBe(reference(v));
        expect(JSON.parse(out)).toEqual(JSON.parse(JSON.stringify(v ?? null)));
      }),
      { numRuns: 500 },
    );
  });

  it('sorts keys by UTF-16 code units at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null }, B: 'x', é: 1, '': 0 })).toBe('{"":0,"B":"x","a":{"c":null,"d":[{"y":2,"z":1}]},"b":1,"é":1}');
  });
});
