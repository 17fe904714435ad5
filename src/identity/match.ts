import type { IdentityRule } from '../config/schema.js';
import type { Identity } from './types.js';

export type IdentityMatcher = (identity: Identity) => boolean;

/**
 * Compiles a pattern so it must match the whole value: `^(?:p)$`. Without the
 * group, `main|develop` would match `main-attacker` (GHSA-mwqh-2vg8-rhj3).
 */
export function anchoredPattern(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, 'u');
}

/** A claim by exact key first (`kubernetes.io/namespace`), then by dotted path into nested objects. */
export function claimAt(claims: Record<string, unknown>, key: string): unknown {
  if (Object.hasOwn(claims, key)) return claims[key];
  let current: unknown = claims;
  for (const part of key.split('.')) {
    if (!current || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, part)) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

/** Strings match strings, numbers numbers, booleans booleans: no coercion; a list means any of. */
function claimMatches(actual: unknown, expected: string | number | boolean | string[]): boolean {
  if (Array.isArray(expected)) return typeof actual === 'string' && expected.includes(actual);
  return typeof actual === typeof expected && actual === expected;
}

export function compileRule(rule: IdentityRule): IdentityMatcher {
  const pattern = rule.subject_pattern === undefined ? undefined : anchoredPattern(rule.subject_pattern);
  const claims = Object.entries(rule.claims ?? {});
  return (identity) =>
    identity.issuer === rule.issuer &&
    (rule.subject === undefined || identity.subject === rule.subject) &&
    (pattern === undefined || pattern.test(identity.subject)) &&
    claims.every(([key, expected]) => claimMatches(claimAt(identity.claims, key), expected));
}

/** Matches when any of the rules does. */
export function compileRules(rules: IdentityRule[]): IdentityMatcher {
  const matchers = rules.map(compileRule);
  return (identity) => matchers.some((m) => m(identity));
}
