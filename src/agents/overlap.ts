import type { AgentConfig } from '../config/agents.js';
import type { IdentityRule } from '../config/identity-rule.js';
import { anchoredPattern } from '../identity/match.js';

/**
 * Whether one identity could match both rules. Decided where it can be
 * decided, and otherwise answered "yes": two agents must never claim one
 * identity, so an overlap this cannot rule out is reported as one, and the
 * admin writes narrower rules. (At request time an identity that matches two
 * agents anyway is refused: agents/registry.ts.)
 *
 * Disjoint when: the issuers differ; both subjects are exact and differ; an
 * exact subject does not match the other's pattern; two patterns' literal
 * prefixes diverge; or a claim both rules pin takes values neither shares.
 */
export function mayOverlap(a: IdentityRule, b: IdentityRule): boolean {
  if (a.issuer !== b.issuer) return false;
  if (a.subject !== undefined && b.subject !== undefined && a.subject !== b.subject) return false;
  if (a.subject !== undefined && b.subject_pattern !== undefined && !anchoredPattern(b.subject_pattern).test(a.subject)) return false;
  if (b.subject !== undefined && a.subject_pattern !== undefined && !anchoredPattern(a.subject_pattern).test(b.subject)) return false;
  if (a.subject_pattern !== undefined && b.subject_pattern !== undefined) {
    const [p, q] = [literalPrefix(a.subject_pattern), literalPrefix(b.subject_pattern)];
    if (!p.startsWith(q) && !q.startsWith(p)) return false;
  }
  for (const [key, want] of Object.entries(a.claims ?? {})) {
    const other = b.claims?.[key];
    if (other !== undefined && !valuesMeet(want, other)) return false;
    const pattern = b.claim_patterns?.[key];
    if (pattern !== undefined && !valuesOf(want).some((v) => typeof v === 'string' && anchoredPattern(pattern).test(v))) return false;
  }
  for (const [key, want] of Object.entries(b.claims ?? {})) {
    const pattern = a.claim_patterns?.[key];
    if (pattern !== undefined && !valuesOf(want).some((v) => typeof v === 'string' && anchoredPattern(pattern).test(v))) return false;
  }
  return true;
}

type ClaimValue = string | number | boolean | string[];
const valuesOf = (v: ClaimValue): (string | number | boolean)[] => (Array.isArray(v) ? v : [v]);
const valuesMeet = (a: ClaimValue, b: ClaimValue) => valuesOf(a).some((x) => valuesOf(b).some((y) => x === y && typeof x === typeof y));

/**
 * The characters every match of `pattern` starts with: up to the first
 * character with a meaning, less one if a quantifier follows it. A pattern
 * with an alternation anywhere has none (`main|develop` starts with either).
 */
export function literalPrefix(pattern: string): string {
  if (pattern.includes('|')) return '';
  // By code point: a quantifier after an astral character quantifies all of it, not its low surrogate.
  const chars = Array.from(pattern);
  const special = /[\\.[\](){}^$*+?]/u;
  let end = 0;
  while (end < chars.length && !special.test(chars[end]!)) end++;
  if (end < chars.length && /[*?{]/u.test(chars[end]!)) end = Math.max(0, end - 1);
  return chars.slice(0, end).join('');
}

/**
 * Problems with an agent's rules against the others': two agents one
 * identity could match, or an owner who could be an agent (an agent must
 * never be able to resume itself, or another). Shared by the config's check
 * and the API's.
 */
export function agentRuleProblems(agent: Pick<AgentConfig, 'name' | 'match' | 'owner'>, others: Pick<AgentConfig, 'name' | 'match' | 'owner'>[]): { overlapping: string[]; ownerIsAgent: string[] } {
  const rest = others.filter((o) => o.name !== agent.name);
  return {
    overlapping: rest.filter((o) => mayOverlap(o.match, agent.match)).map((o) => o.name),
    // Both ways: this agent's owners could be an agent, or another agent's owners could be this agent.
    ownerIsAgent: [
      ...[agent, ...rest].filter((o) => agent.owner.principals.some((p) => mayOverlap(p, o.match))).map((o) => o.name),
      ...rest.filter((o) => o.owner.principals.some((p) => mayOverlap(p, agent.match))).map((o) => o.name),
    ],
  };
}
