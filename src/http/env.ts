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
