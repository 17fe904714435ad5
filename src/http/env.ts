import type { Principal } from '../identity/principals.js';
import type { Identity } from '../identity/types.js';

/** Variables every handler can read from the Hono context. */
export type AppEnv = {
  Variables: {
    /** The broker's own id for the request (http/request-id.ts). */
    requestId: string;
    /** The caller's X-Request-Id, when it sent a sane one: recorded beside requestId, never in its place. */
    clientRequestId?: string;
    principal: Principal;
    /** Set by requireAgent: the caller's verified workload identity. */
    identity: Identity;
  };
};

type ContextReader = { get<K extends keyof AppEnv['Variables']>(key: K): AppEnv['Variables'][K] };

/** The request's ids as services record them in audit events. */
export function requestOf(c: ContextReader) {
  return { requestId: c.get('requestId'), clientRequestId: c.get('clientRequestId') };
}

/** The caller as services take it: actor, admin flag, orchestrator scopes, an OIDC caller's identity and the request's ids. */
export function callerOf(c: ContextReader) {
  const principal = c.get('principal');
  return { actor: principal.actor, admin: principal.admin, scopes: principal.scopes, ...(principal.identity ? { identity: principal.identity } : {}), ...requestOf(c) };
}
