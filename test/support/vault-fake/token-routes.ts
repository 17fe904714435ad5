/** The `auth/token/*` endpoints. */
import { hasSudo } from './acl.js';
import { normalizeNamespace, asString, badRequest, envelope, multi, parseDurationSeconds, VaultHttpError } from './util.js';
import { authBlock, findByToken, issueToken, lookupData, renewToken, revokeToken, tokenAlive } from './tokens.js';
import type { Answer, Ctx, State } from './state.js';
import type { FakeToken } from './types.js';

const goQuoted = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(' ')}]`;

/** TypeCommaStringSlice: a list, or a comma-separated string. */
function stringList(v: unknown, field: string): string[] {
  if (v === undefined || v === null || v === '') return [];
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.map((s) => s.trim()).filter(Boolean);
  throw badRequest(`error converting input ${JSON.stringify(v)} for field "${field}"`);
}

function duration(v: unknown, field: string): number {
  const s = parseDurationSeconds(v);
  if (s === undefined) throw badRequest(`error converting input ${JSON.stringify(v)} for field "${field}"`);
  return s;
}

function bool(v: unknown, dflt: boolean, field: string): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw badRequest(`error converting input ${JSON.stringify(v)} for field "${field}"`);
}

/** A token's lifetime ended or it was revoked: Vault deleted it, so its accessor no longer resolves. */
function invalidAccessor(): VaultHttpError {
  return new VaultHttpError(400, [multi('invalid accessor')]);
}

function liveByAccessor(state: State, ctx: Ctx, accessor: string): FakeToken | undefined {
  const t = state.tokens.get(accessor);
  return t && tokenAlive(state, t, ctx.now) ? t : undefined;
}

/** POST auth/token/create, create-orphan, create/<role>. */
export function createToken(state: State, ctx: Ctx, variant: { orphanPath?: boolean; role?: string }): Answer {
  const parent = ctx.token!;
  const b = ctx.body;
  const sudo = hasSudo(ctx.caps);
  if (b.id !== undefined && b.id !== '' && !parent.policies.includes('root')) throw badRequest('root or sudo privileges required to specify token id');
  if (b.type !== undefined && b.type !== '' && b.type !== 'service' && b.type !== 'default') throw badRequest('the fake issues service tokens only');
  let policies = stringList(b.policies, 'policies');
  const numUses = Number(b.num_uses ?? 0);
  if (!Number.isInteger(numUses)) throw badRequest(`error converting input ${JSON.stringify(b.num_uses)} for field "num_uses"`);
  if (numUses < 0) throw badRequest('number of uses cannot be negative');
  const meta = (b.meta ?? {}) as Record<string, unknown>;
  if (typeof meta !== 'object' || Array.isArray(meta) || Object.values(meta).some((v) => typeof v !== 'string'))
    throw badRequest(`error converting input ${JSON.stringify(b.meta)} for field "meta"`);
  const ttl = duration(b.ttl ?? b.lease, 'ttl');
  const explicitMaxTtl = duration(b.explicit_max_ttl, 'explicit_max_ttl');
  let renewable = bool(b.renewable, true, 'renewable');
  const noDefaultPolicy = bool(b.no_default_policy, false, 'no_default_policy');
  const noParent = bool(b.no_parent, false, 'no_parent');
  const display = asString(b.display_name).replace(/[^a-zA-Z0-9-]/g, '-');

  let orphan = !!variant.orphanPath;
  let maxTtlCap = 0;
  if (variant.role !== undefined) {
    const role = state.tokenRoles.find((r) => r.name === variant.role && normalizeNamespace(r.namespace) === ctx.namespace);
    if (!role) throw badRequest(`unknown role ${variant.role}`);
    const allowed = [...new Set(role.allowedPolicies)].sort();
    if (policies.length === 0) policies = [...allowed];
    const wanted = policies.filter((p) => p !== 'default');
    if (!wanted.every((p) => allowed.includes(p)))
      throw badRequest(`token policies (${goQuoted([...new Set(wanted)].sort())}) must be subset of the role's allowed policies (${goQuoted(allowed)})`);
    orphan = !!role.orphan;
    if (role.renewable === false) renewable = false;
    maxTtlCap = role.maxTtl ?? 0;
  } else {
    if (policies.length === 0) policies = parent.policies.filter((p) => p !== 'default' || !noDefaultPolicy);
    const parentSet = new Set(parent.policies);
    if (!sudo && !policies.filter((p) => p !== 'default').every((p) => parentSet.has(p))) throw badRequest('child policies must be subset of parent');
    if (noParent) {
      if (!sudo) throw badRequest('root or sudo privileges required to create orphan token');
      orphan = true;
    }
  }

  const { token, warnings } = issueToken(
    state,
    {
      policies,
      noDefaultPolicy,
      ttl,
      explicitMaxTtl,
      maxTtlCap,
      numUses,
      renewable,
      meta: meta as Record<string, string>,
      displayName: display ? `token-${display}` : 'token',
      path: variant.role !== undefined ? `auth/token/create/${variant.role}` : variant.orphanPath ? 'auth/token/create-orphan' : 'auth/token/create',
      namespace: ctx.namespace,
      ...(orphan ? {} : { parent }),
      ...(variant.role !== undefined ? { tokenRole: variant.role } : {}),
    },
    ctx.now,
  );
  return { status: 200, body: envelope({ auth: authBlock(token, ctx.now), warnings, mountType: 'token' }) };
}

export function lookupSelf(_state: State, ctx: Ctx): Answer {
  return { status: 200, body: envelope({ data: lookupData(ctx.token!, ctx.now, true), mountType: 'token' }) };
}

export function lookup(state: State, ctx: Ctx): Answer {
  const id = asString(ctx.body.token);
  if (!id) throw badRequest('missing token');
  const t = findByToken(state, id);
  if (!t || !tokenAlive(state, t, ctx.now)) throw new VaultHttpError(403, ['bad token']);
  return { status: 200, body: envelope({ data: lookupData(t, ctx.now, true), mountType: 'token' }) };
}

export function lookupAccessor(state: State, ctx: Ctx): Answer {
  const accessor = asString(ctx.body.accessor);
  if (!accessor) throw badRequest('missing accessor');
  const t = liveByAccessor(state, ctx, accessor);
  if (!t) throw invalidAccessor();
  return { status: 200, body: envelope({ data: lookupData(t, ctx.now, false), mountType: 'token' }) };
}

function incrementOf(ctx: Ctx): number {
  return duration(ctx.body.increment, 'increment');
}

function renewed(t: FakeToken, ctx: Ctx, warnings: string[], withToken: boolean): Answer {
  return { status: 200, body: envelope({ auth: authBlock(t, ctx.now, { withToken }), warnings, mountType: 'token' }) };
}

export function renewSelf(state: State, ctx: Ctx): Answer {
  const t = ctx.token!;
  const { warnings } = renewToken(state, t, incrementOf(ctx), ctx.now);
  return renewed(t, ctx, warnings, true);
}

export function renew(state: State, ctx: Ctx): Answer {
  const id = asString(ctx.body.token);
  if (!id) throw badRequest('token must be specified');
  const t = findByToken(state, id);
  if (!t || !tokenAlive(state, t, ctx.now)) throw badRequest('token not found');
  const { warnings } = renewToken(state, t, incrementOf(ctx), ctx.now);
  return renewed(t, ctx, warnings, true);
}

/** Documented in Vault's token API: renews by accessor; the answer leaves client_token empty. */
export function renewAccessor(state: State, ctx: Ctx): Answer {
  const accessor = asString(ctx.body.accessor);
  if (!accessor) throw badRequest('missing accessor');
  const t = liveByAccessor(state, ctx, accessor);
  if (!t) throw invalidAccessor();
  const { warnings } = renewToken(state, t, incrementOf(ctx), ctx.now);
  return renewed(t, ctx, warnings, false);
}

export function revokeSelf(state: State, ctx: Ctx): Answer {
  revokeToken(state, ctx.token!, ctx.now);
  return { status: 204 };
}

export function revoke(state: State, ctx: Ctx): Answer {
  const id = asString(ctx.body.token);
  if (!id) throw badRequest('token must be specified');
  const t = findByToken(state, id);
  if (t) revokeToken(state, t, ctx.now);
  return { status: 204 };
}

/** Idempotent since Vault 1.10 (an accessor that is gone answers 204); `legacyRevokeAccessor` restores the old 400. */
export function revokeAccessor(state: State, ctx: Ctx): Answer {
  const accessor = asString(ctx.body.accessor);
  if (!accessor) throw badRequest('missing accessor');
  const t = liveByAccessor(state, ctx, accessor);
  if (!t) {
    if (state.legacyRevokeAccessor) throw invalidAccessor();
    return { status: 204 };
  }
  revokeToken(state, t, ctx.now);
  return { status: 204 };
}
