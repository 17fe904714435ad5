import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_SUBJECT_LENGTH, subjectProblem, wellFormedThroughout } from '../../src/identity/identity-text.js';

describe('subjectProblem', () => {
  it('accepts ordinary subjects, U+FFFD and non-BMP characters', () => {
    for (const s of ['agent-1', 'system:serviceaccount:ci:orchestrator', 'spiffe://example.org/agent', 'agent-\ufffd', 'agent-😀', 'a'.repeat(MAX_SUBJECT_LENGTH)]) {
      expect(subjectProblem(s), s).toBeUndefined();
    }
  });

  it('refuses what is not a string, empty, too long, ill-formed, control, format or separator', () => {
    for (const s of [undefined, 1, ['agent-1'], '', 'a'.repeat(MAX_SUBJECT_LENGTH + 1), 'a\ud800', '\udc00a', 'a\udc00\ud800', 'a\u0000', 'a\n', 'a\u0085', 'a\u200b', 'a\u200e', 'a\u202e', 'a\u2066', 'a\u061c', 'a\ufeff', 'a\u2028', 'a\u2029']) {
      expect(subjectProblem(s), JSON.stringify(s)).toBeDefined();
    }
  });

  it('accepts only subjects that survive UTF-8 encoding unchanged, as every database driver encodes them', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        if (subjectProblem(s) === undefined) expect(Buffer.from(s, 'utf8').toString('utf8')).toBe(s);
      }),
      { numRuns: 500 },
    );
  });
});

describe('wellFormedThroughout', () => {
  it('finds a lone surrogate in any string or key, at any depth', () => {
    expect(wellFormedThroughout({ sub: 'a', aud: ['x', 'y'], n: 1, ok: true, none: null, nested: { 'kubernetes.io': { ns: 'agents' } } })).toBe(true);
    expect(wellFormedThroughout({ aud: ['x', 'y\ud800'] })).toBe(false);
    expect(wellFormedThroughout({ a: { b: { c: '\udfff' } } })).toBe(false);
    expect(wellFormedThroughout({ ['k\ud800']: 1 })).toBe(false);
  });

  it('walks a payload nested deeper than the call stack would allow', () => {
    const deep = JSON.parse(`${'['.repeat(100_000)}"\\ud800"${']'.repeat(100_000)}`);
    expect(wellFormedThroughout(deep)).toBe(false);
  });
});
