/**
 * The token store: issuing, resolving, renewing and revoking service tokens,
 * with parents (a revoked or expired parent takes its children with it) and
 * the leases each token read (revoked with it, as Vault does).
 */
import { badRequest, base62, fromSec, goDuration, NEVER, rfc3339, sec } from './util.js';
import { SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL, withNsSuffix, type State } from './state.js';
import type { FakeToken } from './types.js';

export interface TokenSpec {
  policies: string[];
  noDefaultPolicy?: boolean;
  /** Seconds; 0 → system default (root-policy tokens: no expiry). */
  ttl: number;
  explicitMaxTtl?: number;
  /** Role / auth method max TTL, seconds (0: none besides the system max). */
  maxTtlCap?: number;
  numUses?: number;
  renewable?: boolean;
  meta?: Record<string, string>;
  displayName?: string;
  path: string;
  namespace: string;
  parent?: FakeToken;
  tokenRole?: string;
}

/** policyutil.SanitizePolicies: dedupe, sort, add 'default'; 'root' stands alone. */
export function sanitizePolicies(policies: string[], addDefault: boolean): string[] {
  const set = new Set(policies.map((p) => p.trim().toLowerCase()).filter(Boolean));
  if (set.has('root')) return ['root'];
  if (addDefault) set.add('default');
  return [...set].sort();
}

export function issueToken(state: State, spec: TokenSpec, now: Date): { token: FakeToken; warnings: string[] } {
  const warnings: string[] = [];
  const policies = sanitizePolicies(spec.policies, !spec.noDefaultPolicy);
  const isRoot = policies.length === 1 && policies[0] === 'root';
  const issued = sec(now);
  let ttl = spec.ttl;
  let maxTtl = SYSTEM_MAX_TTL;
  if (spec.explicitMaxTtl && spec.explicitMaxTtl < maxTtl) maxTtl = spec.explicitMaxTtl;
  if (spec.maxTtlCap && spec.maxTtlCap < maxTtl) maxTtl = spec.maxTtlCap;
  if (ttl === 0 && !isRoot) ttl = SYSTEM_DEFAULT_TTL;
  if (ttl > maxTtl) {
    warnings.push(`TTL of "${goDuration(ttl)}" exceeded the effective max_ttl of "${goDuration(maxTtl)}"; TTL value is capped accordingly`);
    ttl = maxTtl;
  }
  const neverExpires = isRoot && ttl === 0;
  const t: FakeToken = {
    accessor: withNsSuffix(state, base62(24), spec.namespace),
    token: withNsSuffix(state, `hvs.${base62(24)}`, spec.namespace),
    policies,
    meta: { ...(spec.meta ?? {}) },
    displayName: spec.displayName ?? 'token',
    issuedAt: fromSec(issued),
    expiresAt: neverExpires ? NEVER : fromSec(issued + ttl),
    ...(neverExpires ? {} : { maxExpiresAt: fromSec(issued + maxTtl) }),
    numUses: spec.numUses ?? 0,
    renewable: neverExpires ? false : spec.renewable ?? true,
    revoked: false,
    namespace: spec.namespace,
    ...(spec.parent ? { parentAccessor: spec.parent.accessor } : {}),
    path: spec.path,
    creationTtl: ttl,
    explicitMaxTtl: spec.explicitMaxTtl ?? 0,
    ...(spec.tokenRole ? { tokenRole: spec.tokenRole } : {}),
    orphan: !spec.parent,
  };
  lastTtl.set(t, ttl);
  state.tokens.set(t.accessor, t);
  state.byToken.set(t.token, t.accessor);
  return { token: t, warnings };
}

/** The TTL of the token's latest grant (creation, then each renewal): a renewal without increment repeats it. */
const lastTtl = new WeakMap<FakeToken, number>();

/** Alive: not revoked, not used up, not expired, and so is every parent. */
export function tokenAlive(state: State, t: FakeToken, now: Date): boolean {
  for (let cur: FakeToken | undefined = t, depth = 0; cur && depth < 64; depth++) {
    if (cur.revoked || cur.numUses < 0 || now.getTime() >= cur.expiresAt.getTime()) return false;
    cur = cur.parentAccessor ? state.tokens.get(cur.parentAccessor) : undefined;
  }
  return true;
}

export function findByToken(state: State, id: string): FakeToken | undefined {
  const acc = state.byToken.get(id);
  return acc ? state.tokens.get(acc) : undefined;
}

/** Revoke the token, its children (recursively) and every lease it read. */
export function revokeToken(state: State, t: FakeToken, now: Date): void {
  if (!t.revoked) {
    t.revoked = true;
    t.revokedAt = now;
  }
  for (const lease of state.leases.values()) {
    if (lease.tokenAccessor === t.accessor && !lease.revoked) {
      lease.revoked = true;
      lease.revokedAt = now;
    }
  }
  for (const child of state.tokens.values()) {
    if (child.parentAccessor === t.accessor && !child.revoked) revokeToken(state, child, now);
  }
}

/** Seconds left, never negative. */
const ttlLeft = (t: FakeToken, now: Date): number =>
  t.expiresAt === NEVER ? 0 : Math.max(0, Math.floor((t.expiresAt.getTime() - now.getTime()) / 1000));

/** auth/token/lookup* data. `withId` is false for lookup-accessor (Vault blanks the id). */
export function lookupData(t: FakeToken, now: Date, withId: boolean): Record<string, unknown> {
  const never = t.expiresAt === NEVER;
  return {
    accessor: t.accessor,
    creation_time: sec(t.issuedAt),
    creation_ttl: t.creationTtl,
    display_name: t.displayName,
    entity_id: '',
    expire_time: never ? null : rfc3339(t.expiresAt),
    explicit_max_ttl: t.explicitMaxTtl,
    id: withId ? t.token : '',
    issue_time: rfc3339(t.issuedAt),
    meta: Object.keys(t.meta).length ? { ...t.meta } : null,
    num_uses: Math.max(0, t.numUses),
    orphan: t.orphan,
    path: t.path,
    policies: [...t.policies],
    renewable: t.renewable,
    ttl: ttlLeft(t, now),
    type: 'service',
    ...(t.tokenRole ? { role: t.tokenRole } : {}),
  };
}

/** The `auth` block of a login, token creation or renewal. */
export function authBlock(t: FakeToken, now: Date, opts: { withToken?: boolean; metadata?: Record<string, string> | null } = {}) {
  const meta = opts.metadata !== undefined ? opts.metadata : Object.keys(t.meta).length ? { ...t.meta } : null;
  return {
    client_token: opts.withToken === false ? '' : t.token,
    accessor: t.accessor,
    policies: [...t.policies],
    token_policies: [...t.policies],
    metadata: meta,
    lease_duration: ttlLeft(t, now),
    renewable: t.renewable,
    entity_id: '',
    token_type: 'service',
    orphan: t.orphan,
    mfa_requirement: null,
    num_uses: Math.max(0, t.numUses),
  };
}

/**
 * framework.CalculateTTL: the increment (or the previous grant) capped by
 * what is left before issue + max TTL; a warning when capped.
 */
export function calculateTtl(
  increment: number,
  backendTtl: number,
  maxExpiresAt: Date,
  now: Date,
): { ttl: number; warnings: string[] } {
  const warnings: string[] = [];
  let ttl = increment > 0 ? increment : backendTtl > 0 ? backendTtl : SYSTEM_DEFAULT_TTL;
  const maxValid = sec(maxExpiresAt) - sec(now);
  if (maxValid <= 0) throw badRequest('past the max TTL, cannot renew');
  if (maxValid < ttl) {
    warnings.push(`TTL of "${goDuration(ttl)}" exceeded the effective max_ttl of "${goDuration(maxValid)}"; TTL value is capped accordingly`);
    ttl = maxValid;
  }
  return { ttl, warnings };
}

/** ExpirationManager.RenewToken. */
export function renewToken(state: State, t: FakeToken, increment: number, now: Date): { warnings: string[] } {
  if (t.expiresAt === NEVER || !t.maxExpiresAt) throw badRequest('invalid lease ID');
  if (!tokenAlive(state, t, now)) throw badRequest('lease not found');
  if (!t.renewable) throw badRequest('lease is not renewable');
  // The token store repeats the token's latest grant; auth methods (AppRole, JWT) their role's TTL.
  const backend = t.path.startsWith('auth/token/') ? lastTtl.get(t) ?? t.creationTtl : t.creationTtl;
  const { ttl, warnings } = calculateTtl(increment, backend, t.maxExpiresAt, now);
  lastTtl.set(t, ttl);
  t.expiresAt = fromSec(sec(now) + ttl);
  return { warnings };
}
