/**
 * A small version of Vault's ACL: a token's policies are merged path by path
 * (capabilities unioned, `deny` winning), and a request path takes the rules
 * of the single most specific matching policy path, by Vault's priority
 * rules (exact beats glob; a later first wildcard, a trailing non-glob, fewer
 * `+` segments and a longer path each win).
 */

export type Policies = Record<string, Record<string, string[]>>;

/** Vault's built-in `default` policy (the parts that are paths a token can use here). */
export const DEFAULT_POLICY: Record<string, string[]> = {
  'auth/token/lookup-self': ['read'],
  'auth/token/renew-self': ['update'],
  'auth/token/revoke-self': ['update'],
  'sys/capabilities-self': ['update'],
  'sys/internal/ui/resultant-acl': ['read'],
  'sys/renew': ['update'],
  'sys/leases/renew': ['update'],
  'sys/leases/lookup': ['update'],
  'cubbyhole/*': ['create', 'read', 'update', 'delete', 'list'],
  'sys/wrapping/wrap': ['update'],
  'sys/wrapping/lookup': ['update'],
  'sys/wrapping/unwrap': ['update'],
  'sys/tools/hash': ['update'],
  'sys/tools/hash/*': ['update'],
};

export type Operation = 'read' | 'list' | 'update' | 'create' | 'delete' | 'patch';

function matches(rule: string, path: string): boolean {
  const glob = rule.endsWith('*');
  const body = glob ? rule.slice(0, -1) : rule;
  if (!body.includes('+')) return glob ? path.startsWith(body) : path === body;
  const ruleSegs = body.split('/');
  const pathSegs = path.split('/');
  for (let i = 0; i < ruleSegs.length; i++) {
    const r = ruleSegs[i]!;
    const p = pathSegs[i];
    if (p === undefined) return false;
    const last = i === ruleSegs.length - 1;
    if (r === '+') continue;
    if (last && glob) {
      if (!p.startsWith(r)) return false;
    } else if (r !== p) return false;
  }
  return glob ? pathSegs.length >= ruleSegs.length : pathSegs.length === ruleSegs.length;
}

/** Vault's "which matching path is more specific" ordering: positive when a wins. */
function specificity(a: string, b: string): number {
  const firstWild = (p: string) => {
    const i = p.search(/[+*]/);
    return i < 0 ? Infinity : i;
  };
  if (firstWild(a) !== firstWild(b)) return firstWild(a) - firstWild(b);
  const aGlob = a.endsWith('*');
  const bGlob = b.endsWith('*');
  if (aGlob !== bGlob) return aGlob ? -1 : 1;
  const plus = (p: string) => p.split('+').length - 1;
  if (plus(a) !== plus(b)) return plus(b) - plus(a);
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The capabilities these policies grant on `path` (sorted, as sys/capabilities-self reports them):
 * ['root'] for the root policy, ['deny'] when nothing matches.
 */
export function capabilitiesOn(policyNames: string[], defs: Policies, path: string): string[] {
  if (policyNames.includes('root')) return ['root'];
  const merged = new Map<string, Set<string>>();
  for (const name of policyNames) {
    const def = defs[name] ?? (name === 'default' ? DEFAULT_POLICY : undefined);
    if (!def) continue;
    for (const [rule, caps] of Object.entries(def)) {
      const key = rule.replace(/^\/+/, '');
      const set = merged.get(key) ?? new Set<string>();
      for (const c of caps) set.add(c);
      merged.set(key, set);
    }
  }
  let best: string | undefined;
  for (const rule of merged.keys()) {
    if (!matches(rule, path)) continue;
    if (best === undefined || specificity(rule, best) > 0) best = rule;
  }
  const caps = best === undefined ? undefined : merged.get(best);
  if (!caps || caps.size === 0 || caps.has('deny')) return ['deny'];
  return [...caps].sort();
}

export function allows(caps: string[], op: Operation): boolean {
  if (caps.includes('root')) return true;
  if (caps.includes('deny')) return false;
  return caps.includes(op);
}

export const hasSudo = (caps: string[]): boolean => caps.includes('root') || caps.includes('sudo');
