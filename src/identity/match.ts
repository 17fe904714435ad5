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

/**
 * A claim by a dotted path. Keys may themselves contain dots, as Kubernetes'
 * `kubernetes.io` does, so at each level the longest key that matches a
 * prefix of the remaining path is tried first: `kubernetes.io.namespace`
 * finds `{"kubernetes.io": {"namespace": ...}}`. Only own properties are read.
 */
export function claimAt(claims: unknown, key: string): unknown {
  return resolve(claims, key.split('.'));
}

function resolve(node: unknown, parts: string[]): unknown {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return undefined;
  for (let i = parts.length; i >= 1; i--) {
    const head = parts.slice(0, i).join('.');
    if (!Object.hasOwn(node, head)) continue;
    const value = (node as Record<string, unknown>)[head];
    if (i === parts.length) return value;
    const found = resolve(value, parts.slice(i));
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Strings match strings, numbers numbers, booleans booleans: no coercion; a list means any of. */
function claimMatches(actual: unknown, expected: string | number | boolean | string[]): boolean {
  if (Array.isArray(expected)) return typeof actual === 'string' && expected.includes(actual);
  return typeof actual === typeof expected && actual === expected;
}

/** The token's `aud` (a string or a list of strings) contains `expected`. */
function audienceHas(aud: unknown, expected: string): boolean {
  return aud === expected || (Array.isArray(aud) && aud.includes(expected));
}

/**
 * A rule matches when every condition it sets holds: issuer, subject (exact
 * or pattern), audience, exact claims, and claim patterns. A claim that is
 * missing or of another type than the rule expects never matches.
 */
export function compileRule(rule: IdentityRule): IdentityMatcher {
  const pattern = rule.subject_pattern === undefined ? undefined : anchoredPattern(rule.subject_pattern);
  const claims = Object.entries(rule.claims ?? {});
  const claimPatterns = Object.entries(rule.claim_patterns ?? {}).map(([key, p]) => [key, anchoredPattern(p)] as const);
  return (identity) => {
    if (identity.issuer !== rule.issuer) return false;
    if (rule.subject !== undefined && identity.subject !== rule.subject) return false;
    if (pattern !== undefined && !pattern.test(identity.subject)) return false;
    if (rule.audience !== undefined && !audienceHas(identity.claims.aud, rule.audience)) return false;
    for (const [key, expected] of claims) if (!claimMatches(claimAt(identity.claims, key), expected)) return false;
    for (const [key, re] of claimPatterns) {
      const actual = claimAt(identity.claims, key);
      if (typeof actual !== 'string' || !re.test(actual)) return false;
    }
    return true;
  };
}

/**
 * What of `items` matches the identity, in order. Matchers are called from loops, never from an array
 * builtin's callback (`some`, `filter`, `every`): Node 20.20's V8 crashes ("unreachable code" in the
 * deoptimizer) when optimized code that inlined such a builtin is deoptimized inside a callback that tests a
 * RegExp, after some thousands of calls (`npm run bench:cedar` met it in the Cedar decision).
 */
export function matchAll<T extends { matches: IdentityMatcher }>(items: Iterable<T>, identity: Identity): T[] {
  const out: T[] = [];
  for (const item of items) if (item.matches(identity)) out.push(item);
  return out;
}

/** Matches when any of the rules does. */
export function compileRules(rules: IdentityRule[]): IdentityMatcher {
  const matchers = rules.map(compileRule);
  return (identity) => {
    for (const m of matchers) if (m(identity)) return true;
    return false;
  };
}
