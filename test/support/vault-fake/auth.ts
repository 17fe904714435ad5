/**
 * The broker's own logins: AppRole (`auth/<mount>/login` with role_id and
 * secret_id) and JWT / Kubernetes (`auth/jwt/login`, `auth/kubernetes/login`
 * with role and jwt). Login tokens are orphans, as in Vault.
 *
 * JWTs are NOT verified: the payload is decoded and its `sub` compared with
 * the role's configured subject; signature, issuer, audience and expiry are
 * ignored.
 */
import { authBlock, issueToken } from './tokens.js';
import type { Answer, Ctx, State } from './state.js';
import type { AppRoleOptions, JwtRoleOptions } from './types.js';
import { asString, badRequest, envelope, normalizeNamespace, VaultHttpError } from './util.js';

export const approleMounts = (state: State, ns: string): Set<string> =>
  new Set(state.approles.filter((a) => normalizeNamespace(a.namespace) === ns).map((a) => a.mount ?? 'approle'));
export const jwtMounts = (state: State, ns: string): Set<string> =>
  new Set(state.jwtRoles.filter((r) => normalizeNamespace(r.namespace) === ns).map((r) => r.mount));

export function approleLogin(state: State, ctx: Ctx, mount: string): Answer {
  const roleId = asString(ctx.body.role_id);
  const secretId = asString(ctx.body.secret_id);
  if (!roleId) throw badRequest('missing role_id');
  const role: AppRoleOptions | undefined = state.approles.find(
    (a) => (a.mount ?? 'approle') === mount && normalizeNamespace(a.namespace) === ctx.namespace && a.roleId === roleId,
  );
  if (!role || role.secretId !== secretId) throw badRequest('invalid role or secret ID');
  const roleName = role.roleName ?? 'broker';
  const { token, warnings } = issueToken(
    state,
    {
      policies: role.policies,
      ttl: role.ttl,
      maxTtlCap: role.maxTtl ?? 0,
      meta: { role_name: roleName },
      displayName: mount,
      path: `auth/${mount}/login`,
      namespace: ctx.namespace,
    },
    ctx.now,
  );
  return { status: 200, body: envelope({ auth: authBlock(token, ctx.now), warnings, mountType: 'approle' }) };
}

function jwtClaims(jwt: string): Record<string, unknown> | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function jwtLogin(state: State, ctx: Ctx, mount: 'jwt' | 'kubernetes'): Answer {
  const roleName = asString(ctx.body.role);
  const jwt = asString(ctx.body.jwt);
  if (!roleName) throw badRequest('missing role');
  if (!jwt) throw badRequest(mount === 'jwt' ? 'missing token' : 'missing jwt');
  const role: JwtRoleOptions | undefined = state.jwtRoles.find(
    (r) => r.mount === mount && r.role === roleName && normalizeNamespace(r.namespace) === ctx.namespace,
  );
  if (!role) throw badRequest(mount === 'jwt' ? `role "${roleName}" could not be found` : `invalid role name "${roleName}"`);
  const claims = jwtClaims(jwt);
  if (!claims) throw badRequest(mount === 'jwt' ? 'error validating token: invalid JWT' : 'not a compact JWS');
  const sub = asString(claims.sub);
  if (sub !== role.subject) {
    if (mount === 'jwt') throw badRequest('error validating claims: claim "sub" does not match bound subject');
    throw new VaultHttpError(403, ['service account name not authorized']);
  }
  let metadata: Record<string, string> = { role: roleName };
  if (mount === 'kubernetes') {
    const [, , saNamespace = '', saName = ''] = sub.split(':');
    metadata = {
      role: roleName,
      service_account_name: saName,
      service_account_namespace: saNamespace,
      service_account_secret_name: '',
      service_account_uid: asString((claims['kubernetes.io'] as { serviceaccount?: { uid?: string } } | undefined)?.serviceaccount?.uid),
    };
  }
  const { token, warnings } = issueToken(
    state,
    {
      policies: role.policies,
      ttl: role.ttl,
      maxTtlCap: role.maxTtl ?? 0,
      meta: metadata,
      displayName: `${mount}-${sub}`.slice(0, 64),
      path: `auth/${mount}/login`,
      namespace: ctx.namespace,
    },
    ctx.now,
  );
  return { status: 200, body: envelope({ auth: authBlock(token, ctx.now), warnings, mountType: mount }) };
}
