import type { RoleConfig } from '../config/schema.js';
import type { Identity } from '../identity/types.js';

export interface MintRequest {
  leaseId: string;
  taskId: string;
  role: RoleConfig;
  identity: Identity;
  /** Already clamped by policy; the backend must not grant longer. */
  ttlSeconds: number;
  /**
   * The most the credential may ever live, renewals included (role max_ttl, task deadline, approved
   * TTL; at least ttlSeconds): every backend parameter that bounds a renewable credential's life is
   * set to it, so the backend enforces it even if the broker is gone.
   */
  maxTtlSeconds: number;
  /** A narrower scope than the role's (jwt: space-separated, a subset of `jwt.scope`, checked by the caller). */
  scope?: string;
  /** jwt: the DPoP key's thumbprint (RFC 9449) the token is bound to, as `cnf.jkt`. */
  cnfJkt?: string;
  /** jwt, delegated (RFC 8693): the token's `sub` is the person's, and `act` names the agent (and earlier actors). */
  actFor?: { subject: string; act: Record<string, unknown> };
  now: Date;
}

export interface MintResult {
  /** Returned to the agent once and never stored. */
  credentials: Record<string, unknown>;
  /** What the lease row keeps to find the credential again (jti, session name, lease id, accessor). */
  ref: string;
  /** When the backend itself stops honouring the credential as granted (a shorter grant shortens the lease). */
  expiresAt: Date;
  /**
   * When the backend stops honouring it at the latest, if its holder can extend it without the broker
   * (a renewable Vault token's renew-self, up to explicit_max_ttl): the lease's backend_expires_at, and
   * how long a lease whose revocation is not confirmed counts as held. `expiresAt` when absent.
   */
  honouredUntil?: Date;
  /** False when revoke() cannot cut the credential off before `expiresAt` (said plainly on the lease). */
  revocable?: boolean;
}

/** What a backend needs to revoke a credential: no secrets, only the row's references. */
export interface RevokeTarget {
  leaseId: string;
  ref: string;
  role: string;
  /** The agent the credential was issued to, `issuer/subject` (the AWS backend bounds each agent's share of a role's deny policy). */
  agent: string;
  backendExpiresAt: Date;
}

/**
 * One credential source. `revoke` must be idempotent: revoking a credential
 * that is already revoked or expired resolves successfully.
 */
export interface Backend {
  readonly name: string;
  readonly type: string;
  mint(request: MintRequest): Promise<MintResult>;
  revoke(target: RevokeTarget): Promise<void>;
  /** Periodic clean-up (pruning expired revocation entries); the sweeper calls it on each pass. */
  housekeeping?(now: Date): Promise<void>;
  /** Extends a credential by up to `incrementSeconds`; the backend may grant less. */
  renew?(target: { ref: string; incrementSeconds: number }): Promise<{ expiresAt: Date }>;
  /** Whether the broker holds the permissions its roles need (for /readyz). */
  check?(): Promise<{ ok: boolean; missing: string[] }>;
}

/** A backend failure whose message is safe to store and show (never holds a secret). */
export class BackendError extends Error {
  override name = 'BackendError';
  constructor(
    /** Stable, backend-specific (`aws_access_denied`, `vault_permission_denied`, ...). */
    readonly code: string,
    message: string,
    /** Worth trying again later (throttling, outage), as opposed to a refusal that will repeat. */
    readonly retryable: boolean,
  ) {
    super(message);
  }
}
