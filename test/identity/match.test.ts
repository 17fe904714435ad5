import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { IdentityRule } from '../../src/config/schema.js';
import { anchoredPattern, claimAt, compileRule, compileRules } from '../../src/identity/match.js';
import type { Identity } from '../../src/identity/types.js';

/** Escapes every regular-expression metacharacter so the pattern matches the literal text. */
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function identity(subject: string, claims: Record<string, unknown> = {}, issuer = 'k8s'): Identity {
  return {
    issuer,
    subject,
    claims: { sub: subject, ...claims },
    tokenSha256: '0'.repeat(64),
    expiresAt: new Date('2030-01-01T01:00:00Z'),
  };
}

describe('anchoredPattern', () => {
  describe('GHSA-mwqh-2vg8-rhj3 regression (octo-sts: alternation escaped the anchors)', () => {
    const pattern = anchoredPattern('main|develop');

    it('matches each alternative as a whole value', () => {
      expect(pattern.test('main')).toBe(true);
      expect(pattern.test('develop')).toBe(true);
    });

    it('does not match main-attacker or xdevelop', () => {
      expect(pattern.test('main-attacker')).toBe(false);
      expect(pattern.test('xdevelop')).toBe(false);
      expect(pattern.test('xmain')).toBe(false);
      expect(pattern.test('develop-x')).toBe(false);
      expect(pattern.test('main|develop')).toBe(false);
    });

    it('holds through compileRule for subject_pattern', () => {
      const matches = compileRule({ issuer: 'k8s', subject_pattern: 'main|develop' });
      expect(matches(identity('main'))).toBe(true);
      expect(matches(identity('main-attacker'))).toBe(false);
      expect(matches(identity('xdevelop'))).toBe(false);
    });
  });

  it('matches whole values only', () => {
    const pattern = anchoredPattern('system:serviceaccount:agents:.*');
    expect(pattern.test('system:serviceaccount:agents:reporter')).toBe(true);
    expect(pattern.test('system:serviceaccount:agents:')).toBe(true);
    expect(pattern.test('evil/system:serviceaccount:agents:reporter')).toBe(false);
    expect(anchoredPattern('abc').test('xabcx')).toBe(false);
    expect(anchoredPattern('a+').test('aaab')).toBe(false);
  });

  it('does not let a trailing newline pass the end anchor', () => {
    expect(anchoredPattern('main').test('main\n')).toBe(false);
    expect(anchoredPattern('main').test('\nmain')).toBe(false);
  });

  it('property: an escaped literal pattern matches exactly its own text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (s, p) => {
        expect(anchoredPattern(escapeRegExp(p)).test(s)).toBe(s === p);
        expect(anchoredPattern(escapeRegExp(p)).test(p)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('property: an escaped literal matches itself but not itself with extra text around it', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary', minLength: 1 }), (p, extra) => {
        const pattern = anchoredPattern(escapeRegExp(p));
        expect(pattern.test(p + extra)).toBe(false);
        expect(pattern.test(extra + p)).toBe(false);
      }),
    );
  });
});

describe('claimAt', () => {
  it('reads a top-level claim', () => {
    expect(claimAt({ repo: 'acme/app' }, 'repo')).toBe('acme/app');
  });

  it('follows a dotted path into nested objects', () => {
    expect(claimAt({ 'kubernetes.io': { namespace: 'x' } }, 'kubernetes.io.namespace')).toBe('x');
    expect(claimAt({ 'kubernetes.io': { serviceaccount: { name: 'sa' } } }, 'kubernetes.io.serviceaccount.name')).toBe('sa');
    expect(claimAt({ kubernetes: { io: { namespace: 'x' } } }, 'kubernetes.io.namespace')).toBe('x');
    expect(claimAt({ a: { b: { c: 3 } } }, 'a.b.c')).toBe(3);
  });

  it('prefers an exact dotted key over the nested path', () => {
    const claims = { 'kubernetes.io/namespace': 'exact', 'a.b': 'flat', a: { b: 'nested' } };
    expect(claimAt(claims, 'kubernetes.io/namespace')).toBe('exact');
    expect(claimAt(claims, 'a.b')).toBe('flat');
  });

  it('answers undefined for missing segments, arrays and non-objects', () => {
    expect(claimAt({ a: { b: 1 } }, 'a.c')).toBeUndefined();
    expect(claimAt({ a: 'text' }, 'a.length')).toBeUndefined();
    expect(claimAt({ a: ['x', 'y'] }, 'a.0')).toBeUndefined();
    expect(claimAt({ a: null }, 'a.b')).toBeUndefined();
    expect(claimAt({}, 'missing')).toBeUndefined();
  });

  it('never reads inherited properties', () => {
    expect(claimAt({}, 'constructor')).toBeUndefined();
    expect(claimAt({}, 'toString')).toBeUndefined();
    expect(claimAt({ a: {} }, 'a.__proto__')).toBeUndefined();
    expect(claimAt({ a: {} }, 'a.constructor.name')).toBeUndefined();
  });
});

describe('compileRule', () => {
  it('requires the issuer to match by name', () => {
    const matches = compileRule({ issuer: 'k8s', subject: 'agent' });
    expect(matches(identity('agent'))).toBe(true);
    expect(matches(identity('agent', {}, 'github'))).toBe(false);
  });

  it('compares subject exactly, with no pattern semantics', () => {
    const matches = compileRule({ issuer: 'k8s', subject: 'a.c' });
    expect(matches(identity('a.c'))).toBe(true);
    expect(matches(identity('abc'))).toBe(false);
    expect(matches(identity('a.cd'))).toBe(false);
  });

  it('matches claims by type with no coercion', () => {
    const numeric = compileRule({ issuer: 'k8s', claims: { run: 1 } });
    expect(numeric(identity('s', { run: 1 }))).toBe(true);
    expect(numeric(identity('s', { run: '1' }))).toBe(false);

    const text = compileRule({ issuer: 'k8s', claims: { run: '1' } });
    expect(text(identity('s', { run: '1' }))).toBe(true);
    expect(text(identity('s', { run: 1 }))).toBe(false);

    const flag = compileRule({ issuer: 'k8s', claims: { protected: true } });
    expect(flag(identity('s', { protected: true }))).toBe(true);
    expect(flag(identity('s', { protected: 'true' }))).toBe(false);
    expect(flag(identity('s', { protected: 1 }))).toBe(false);
    expect(flag(identity('s'))).toBe(false);

    const falsy = compileRule({ issuer: 'k8s', claims: { protected: false } });
    expect(falsy(identity('s', { protected: false }))).toBe(true);
    expect(falsy(identity('s', { protected: 0 }))).toBe(false);
    expect(falsy(identity('s'))).toBe(false);
  });

  it('treats a list as any-of, for string claims only', () => {
    const matches = compileRule({ issuer: 'k8s', claims: { ref: ['refs/heads/main', 'refs/heads/develop'] } });
    expect(matches(identity('s', { ref: 'refs/heads/main' }))).toBe(true);
    expect(matches(identity('s', { ref: 'refs/heads/develop' }))).toBe(true);
    expect(matches(identity('s', { ref: 'refs/heads/feature' }))).toBe(false);
    expect(matches(identity('s', { ref: ['refs/heads/main'] }))).toBe(false);
    expect(matches(identity('s'))).toBe(false);
  });

  it('reads nested and exact dotted claim keys', () => {
    const nested = compileRule({ issuer: 'k8s', claims: { 'kubernetes.io.namespace': 'agents' } });
    expect(nested(identity('s', { kubernetes: { io: { namespace: 'agents' } } }))).toBe(true);
    expect(nested(identity('s', { 'kubernetes.io.namespace': 'agents' }))).toBe(true);
    expect(nested(identity('s', { 'kubernetes.io': { namespace: 'agents' } }))).toBe(true);
    expect(nested(identity('s', { 'kubernetes.io': { namespace: 'other' } }))).toBe(false);
    expect(nested(identity('s', { kubernetes: { io: { namespace: 'other' } } }))).toBe(false);
  });

  it('requires every condition: subject pattern and all claims', () => {
    const rule: IdentityRule = {
      issuer: 'k8s',
      subject_pattern: 'system:serviceaccount:agents:.+',
      claims: { aud: 'tasklease', env: 'prod' },
    };
    const matches = compileRule(rule);
    const subject = 'system:serviceaccount:agents:reporter';
    expect(matches(identity(subject, { aud: 'tasklease', env: 'prod' }))).toBe(true);
    expect(matches(identity(subject, { aud: 'tasklease', env: 'dev' }))).toBe(false);
    expect(matches(identity(subject, { aud: 'tasklease' }))).toBe(false);
    expect(matches(identity('system:serviceaccount:ci:reporter', { aud: 'tasklease', env: 'prod' }))).toBe(false);
  });
});

describe('compileRules', () => {
  it('matches when any rule does', () => {
    const matches = compileRules([
      { issuer: 'k8s', subject: 'alice' },
      { issuer: 'github', subject_pattern: 'repo:acme/.+' },
    ]);
    expect(matches(identity('alice'))).toBe(true);
    expect(matches(identity('repo:acme/app', {}, 'github'))).toBe(true);
    expect(matches(identity('repo:acme/app'))).toBe(false);
    expect(matches(identity('bob'))).toBe(false);
  });

  it('matches nothing when there are no rules', () => {
    expect(compileRules([])(identity('anyone'))).toBe(false);
  });
});
