/**
 * Dynamic secrets (`<mount>/creds/<role>` for database and AWS roles) and
 * the `sys/leases/*` endpoints that look them up, renew and revoke them.
 */
import { randomBytes } from 'node:crypto';
import { hasSudo } from './acl.js';
import { calculateTtl, tokenAlive } from './tokens.js';
import { SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL, withNsSuffix, type Answer, type Ctx, type State } from './state.js';
import type { DynamicRoleOptions, FakeLease } from './types.js';
import { asString, badRequest, base62, envelope, fromSec, goDuration, normalizeNamespace, parseDurationSeconds, permissionDenied, rfc3339, sec } from './util.js';

const lastRenewals = new WeakMap<FakeLease, Date>();

const upperAlnum = (n: number) => base62(n * 2).toUpperCase().replace(/[^A-Z0-9]/g, '').slice(0, n).padEnd(n, 'Q');

function secretData(role: DynamicRoleOptions, displayName: string, issued: number): Record<string, unknown> {
  if (role.kind === 'database') {
    // The database engine's default username template: v-{{display_name 8}}-{{role 8}}-{{random 20}}-{{unix}}.
    const trunc = (s: string) => s.slice(0, 8);
    return { username: `v-${trunc(displayName)}-${trunc(role.role)}-${base62(20)}-${issued}`, password: base62(20) };
  }
  const secret = randomBytes(30).toString('base64');
  if ((role.credentialType ?? 'iam_user') === 'iam_user') return { access_key: `AKIA${upperAlnum(16)}`, secret_key: secret, security_token: null };
  return {
    access_key: `ASIA${upperAlnum(16)}`,
    secret_key: secret,
    security_token: randomBytes(180).toString('base64'),
    arn: `arn:aws:sts::123456789012:assumed-role/${role.role}/vault-${base62(10)}`,
  };
}

/** GET <mount>/creds/<role>: a new secret under a new lease, owned by the calling token. */
export function readCreds(state: State, ctx: Ctx, mount: string, roleName: string): Answer {
  const role = state.dynamicRoles.find((r) => r.mount === mount && r.role === roleName && normalizeNamespace(r.namespace) === ctx.namespace);
  if (!role) {
    const kind = state.dynamicRoles.find((r) => r.mount === mount)?.kind;
    throw badRequest(kind === 'aws' ? `Role "${roleName}" not found` : `unknown role: ${roleName}`);
  }
  const token = ctx.token!;
  const warnings: string[] = [];
  const maxTtl = role.maxTtl > 0 ? role.maxTtl : SYSTEM_MAX_TTL;
  let ttl = role.defaultTtl > 0 ? role.defaultTtl : SYSTEM_DEFAULT_TTL;
  if (ttl > maxTtl) {
    warnings.push(`TTL of "${goDuration(ttl)}" exceeded the effective max_ttl of "${goDuration(maxTtl)}"; TTL value is capped accordingly`);
    ttl = maxTtl;
  }
  const issued = sec(ctx.now);
  const renewable = !(role.kind === 'aws' && role.credentialType === 'assumed_role');
  const lease: FakeLease = {
    leaseId: withNsSuffix(state, `${mount}/creds/${roleName}/${base62(24)}`, ctx.namespace),
    path: `${mount}/creds/${roleName}`,
    issuedAt: fromSec(issued),
    expiresAt: fromSec(issued + ttl),
    maxExpiresAt: fromSec(issued + maxTtl),
    revoked: false,
    renewals: 0,
    namespace: ctx.namespace,
    renewable,
    data: secretData(role, token.displayName, issued),
    tokenAccessor: token.accessor,
    kind: role.kind,
  };
  state.leases.set(lease.leaseId, lease);
  return {
    status: 200,
    body: envelope({ data: { ...lease.data }, leaseId: lease.leaseId, leaseDuration: ttl, renewable, warnings, mountType: role.kind }),
  };
}

/** Not revoked, not expired, and the token that read it still alive (Vault revokes a token's leases with it). */
export function leaseLive(state: State, lease: FakeLease, now: Date): boolean {
  if (lease.revoked || now.getTime() >= lease.expiresAt.getTime()) return false;
  const owner = state.tokens.get(lease.tokenAccessor);
  return !owner || tokenAlive(state, owner, now);
}

/** The lease id from the body, or the URL form `sys/leases/<op>/<lease id>` (the body wins, as in Vault). */
function leaseIdOf(ctx: Ctx, urlId: string): string {
  const fromBody = asString(ctx.body.lease_id);
  return fromBody || urlId;
}

export function renewLease(state: State, ctx: Ctx, urlId: string): Answer {
  const leaseId = leaseIdOf(ctx, urlId);
  if (!leaseId) throw badRequest('lease_id must be specified');
  const increment = parseDurationSeconds(ctx.body.increment);
  if (increment === undefined) throw badRequest(`error converting input ${JSON.stringify(ctx.body.increment)} for field "increment"`);
  const lease = state.leases.get(leaseId);
  // Vault deletes a lease when it is revoked or runs out; renewing it then finds nothing.
  if (!lease || !leaseLive(state, lease, ctx.now)) throw badRequest('lease not found');
  if (!lease.renewable) throw badRequest('lease is not renewable');
  if (lease.namespace !== ctx.namespace) throw badRequest('cannot renew a lease across namespaces');
  const role = state.dynamicRoles.find((r) => `${r.mount}/creds/${r.role}` === lease.path && normalizeNamespace(r.namespace) === lease.namespace);
  const backendTtl = role && role.defaultTtl > 0 ? role.defaultTtl : SYSTEM_DEFAULT_TTL;
  const { ttl, warnings } = calculateTtl(increment, backendTtl, lease.maxExpiresAt, ctx.now);
  lease.expiresAt = fromSec(sec(ctx.now) + ttl);
  lease.renewals += 1;
  lastRenewals.set(lease, ctx.now);
  return { status: 200, body: envelope({ leaseId: lease.leaseId, renewable: true, leaseDuration: ttl, warnings, mountType: 'system' }) };
}

export function revokeLease(state: State, ctx: Ctx, urlId: string): Answer {
  const leaseId = leaseIdOf(ctx, urlId);
  if (!leaseId) throw badRequest('lease_id must be specified');
  // `sync` defaults to true on the server (the API docs say false; the path's field schema says true).
  const sync = ctx.body.sync === undefined ? true : ctx.body.sync === true || ctx.body.sync === 'true';
  const lease = state.leases.get(leaseId);
  // An unknown, already revoked or expired lease: Vault finds no entry and answers success all the same.
  if (lease && !lease.revoked) {
    const mount = lease.path.split('/')[0]!;
    const failure = state.engineRevokeFailures.get(mount);
    // Only a synchronous revocation of a lease Vault still holds calls the engine while the request waits.
    if (sync && failure && failure.left > 0 && leaseLive(state, lease, ctx.now)) {
      failure.left -= 1;
      // ExpirationManager.revokeEntry wraps the engine's error; handleRevoke answers it as ErrInvalidRequest,
      // and the HTTP layer sends the response's error text as it is. The lease stays, as in Vault.
      throw badRequest(`failed to revoke entry: resp: (*logical.Response)(nil) err: ${failure.cause}`);
    }
    lease.revoked = true;
    lease.revokedAt = ctx.now;
  }
  return { status: sync ? 204 : 202 };
}

/** sys/leases/revoke-prefix/<prefix> (sudo). */
export function revokePrefix(state: State, ctx: Ctx, prefix: string): Answer {
  if (!hasSudo(ctx.caps)) throw permissionDenied();
  const sync = ctx.body.sync === undefined ? true : ctx.body.sync === true || ctx.body.sync === 'true';
  for (const lease of state.leases.values()) {
    if (lease.namespace === ctx.namespace && lease.leaseId.startsWith(prefix) && !lease.revoked) {
      lease.revoked = true;
      lease.revokedAt = ctx.now;
    }
  }
  return { status: sync ? 204 : 202 };
}

export function lookupLease(state: State, ctx: Ctx): Answer {
  const leaseId = asString(ctx.body.lease_id);
  if (!leaseId) throw badRequest('lease_id must be specified');
  const lease = state.leases.get(leaseId);
  if (!lease || !leaseLive(state, lease, ctx.now)) throw badRequest('invalid lease');
  const lastRenewal = lease.renewals > 0 ? lastRenewals.get(lease) : undefined;
  return {
    status: 200,
    body: envelope({
      data: {
        id: lease.leaseId,
        issue_time: rfc3339(lease.issuedAt),
        expire_time: rfc3339(lease.expiresAt),
        last_renewal: lastRenewal ? rfc3339(lastRenewal) : null,
        renewable: lease.renewable,
        ttl: Math.max(0, sec(lease.expiresAt) - sec(ctx.now)),
      },
      mountType: 'system',
    }),
  };
}

