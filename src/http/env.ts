import type { RequestIdVariables } from 'hono/request-id';
import type { Principal } from '../identity/principals.js';
import type { Identity } from '../identity/types.js';

/** Variables every handler can read from the Hono context. */
export type AppEnv = {
  Variables: RequestIdVariables & {
    principal: Principal;
    /** Set by requireAgent: the caller's verified workload identity. */
    identity: Identity;
  };
};

/** The caller as services take it: actor, admin flag, orchestrator scopes and the request id. */
export function callerOf(c: { get<K extends keyof AppEnv['Variables']>(key: K): AppEnv['Variables'][K] }) {
  const principal = c.get('principal');
  return { actor: principal.actor, admin: principal.admin, scopes: principal.scopes, requestId: c.get('requestId') };
}
