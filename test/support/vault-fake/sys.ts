/** sys/health and sys/capabilities-self. */
import { capabilitiesOn } from './acl.js';
import type { Answer, Ctx, State } from './state.js';
import { badRequest, sec } from './util.js';

const CLUSTER_ID = '6d1a4a3c-4f1e-4b8e-9a55-1f0c6a7e2b10';

/** The body of sys/health; `status` picks what it describes (503 sealed, 501 uninitialised, 429 standby). */
export function healthBody(now: Date, status: number): Record<string, unknown> {
  return {
    initialized: status !== 501,
    sealed: status === 503,
    standby: status === 429 || status === 473,
    performance_standby: status === 473,
    replication_performance_mode: 'disabled',
    replication_dr_mode: 'disabled',
    server_time_utc: sec(now),
    version: '1.20.0',
    enterprise: false,
    cluster_name: 'vault-cluster-fake',
    cluster_id: CLUSTER_ID,
    echo_duration_ms: 0,
    clock_skew_ms: 0,
    replication_primary_canary_age_ms: 0,
    removed_from_cluster: false,
  };
}

/** Always initialised, unsealed and active; `activecode` changes the status as in Vault. */
export function health(_state: State, ctx: Ctx): Answer {
  const code = Number(ctx.query.get('activecode') ?? 200);
  const status = Number.isInteger(code) && code >= 200 && code < 600 ? code : 200;
  return { status, body: ctx.method === 'HEAD' ? undefined : healthBody(ctx.now, 200) };
}

/**
 * POST sys/capabilities-self {paths}: each path's capabilities for the calling token, both at the
 * top level (as the docs show) and under `data` (as Vault's client libraries read it), plus
 * `capabilities` when one path was asked.
 */
export function capabilitiesSelf(state: State, ctx: Ctx): Answer {
  const raw = ctx.body.paths ?? ctx.body.path;
  const paths = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : Array.isArray(raw) ? raw.map(String) : [];
  if (paths.length === 0) throw badRequest('paths must be supplied');
  const data: Record<string, string[]> = {};
  for (const p of paths) data[p] = capabilitiesOn(ctx.token!.policies, state.policies, ctx.aclPath(p.replace(/^\/+/, '')));
  if (paths.length === 1) data.capabilities = data[paths[0]!]!;
  const body = {
    ...data,
    request_id: globalThis.crypto.randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data,
    wrap_info: null,
    warnings: null,
    auth: null,
    mount_type: 'system',
  };
  return { status: 200, body };
}
