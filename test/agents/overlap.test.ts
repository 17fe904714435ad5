import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { literalPrefix, mayOverlap } from '../../src/agents/overlap.js';
import type { IdentityRule } from '../../src/config/identity-rule.js';
import { compileRule } from '../../src/identity/match.js';

const rule = (r: Partial<IdentityRule>): IdentityRule => ({ issuer: 'k8s', ...r });

describe('whether two agents could claim one identity', () => {
  it.each([
    ['other issuers', rule({ subject: 'a' }), { ...rule({ subject: 'a' }), issuer: 'gh' }, false],
    ['two different subjects', rule({ subject: 'a' }), rule({ subject: 'b' }), false],
    ['the same subject', rule({ subject: 'a' }), rule({ subject: 'a' }), true],
    ['a subject the pattern matches', rule({ subject: 'agent-7' }), rule({ subject_pattern: 'agent-.*' }), true],
    ['a subject the pattern does not match', rule({ subject: 'robot-7' }), rule({ subject_pattern: 'agent-.*' }), false],
    ['patterns with diverging prefixes', rule({ subject_pattern: 'agent-a-.*' }), rule({ subject_pattern: 'agent-b-.*' }), false],
    ['patterns where one prefix extends the other', rule({ subject_pattern: 'agent-.*' }), rule({ subject_pattern: 'agent-x.*' }), true],
    ['an alternation (GHSA-mwqh-2vg8-rhj3 shape) against a prefix it contains', rule({ subject_pattern: 'main|develop' }), rule({ subject_pattern: 'develop-.*' }), true],
    ['a pinned claim with different values', rule({ subject: 'a', claims: { ns: 'x' } }), rule({ subject: 'a', claims: { ns: 'y' } }), false],
    ['a pinned claim with a shared value', rule({ subject: 'a', claims: { ns: ['x', 'y'] } }), rule({ subject: 'a', claims: { ns: 'y' } }), true],
    ['a claim the other pins and one does not', rule({ subject: 'a', claims: { ns: 'x' } }), rule({ subject: 'a' }), true],
    ['a pinned claim the other pattern refuses', rule({ subject: 'a', claims: { ns: 'prod' } }), rule({ subject: 'a', claim_patterns: { ns: 'dev-.*' } }), false],
  ] as const)('%s', (_what, a, b, expected) => {
    expect(mayOverlap(a, b)).toBe(expected);
    expect(mayOverlap(b, a)).toBe(expected);
  });

  it('takes a quantified character out of the prefix', () => {
    expect(literalPrefix('ab?c')).toBe('a');
    expect(literalPrefix('ab*')).toBe('a');
    expect(literalPrefix('ab+c')).toBe('ab');
    expect(literalPrefix('ab{2}')).toBe('a');
    expect(literalPrefix('a|b')).toBe('');
    expect(literalPrefix('team\\.a')).toBe('team');
  });

  // The property that matters: "no overlap" is never said of two rules one identity matches.
  it('never calls two rules disjoint when a subject matches both', () => {
    const alphabet = fc.constantFrom('a', 'b', '-', '.', '1');
    const word = fc.string({ unit: alphabet, maxLength: 5 });
    const pattern = fc.oneof(
      word.map((w) => `${w.replace(/\./g, '\\.')}.*`),
      fc.tuple(word, word).map(([x, y]) => `${x.replace(/\./g, '\\.')}|${y.replace(/\./g, '\\.')}`),
      fc.tuple(word, fc.constantFrom('?', '*', '+')).map(([w, q]) => `${w.replace(/\./g, '\\.')}${w ? q : ''}`),
    );
    const side = fc.oneof(word.filter((w) => w.length > 0).map((subject) => rule({ subject })), pattern.map((p) => rule({ subject_pattern: p })));
    fc.assert(
      fc.property(side, side, word, (a, b, subject) => {
        const identity = { issuer: 'k8s', subject, claims: {}, tokenSha256: '', expiresAt: new Date() };
        if (compileRule(a)(identity) && compileRule(b)(identity)) expect(mayOverlap(a, b)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
