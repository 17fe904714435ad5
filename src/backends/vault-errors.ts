import { BackendError } from './types.js';
import { vaultMessage, vaultStatus } from './vault-session.js';

/**
 * What one answer of Vault (or OpenBao, which keeps Vault's handlers) means
 * for the broker. A refusal that will repeat whatever the broker does next
 * (a missing permission, a path or operation Vault does not have, a request
 * the broker itself malformed) is final: the sweeper parks the lease at once.
 * Anything else is retried with the normal backoff: in particular Vault's 400
 * `failed to revoke entry: ...`, which is how a synchronous revocation that
 * failed inside a secrets engine (its database down for a moment) comes back
 * (sys/leases/revoke answers every error of the expiration manager as
 * ErrInvalidRequest). The table, with sources, is in docs/vault.md; the
 * tests are in test/backends/vault-errors.test.ts and the sweeper-level one in
 * test/backends/vault.test.ts.
 */
export type VaultOperation = 'mint' | 'revoke' | 'renew';

/** Vault's wording for a request the broker built wrongly: the same request fails the same way. */
const MALFORMED = /lease_id must be specified|missing accessor|failed to parse JSON input|error converting input|unsupported operation/i;
/** A renewal that failed inside the secrets engine (renewEntry's wrapping), as opposed to a lease that cannot be renewed. */
const ENGINE_RENEW_FAILED = /failed to renew entry/i;

/** Which permission a 403 on this path means the broker lacks. */
function permissionError(path: string, capability: string): BackendError {
  return new BackendError('vault_permission_denied', `the broker's Vault token lacks '${capability}' on ${path}`, false);
}

/** Whether a 4xx (other than 403, 404, 405) that Vault gave for `op` is worth another try. */
function retryable400(op: VaultOperation, message: string): boolean {
  if (MALFORMED.test(message)) return false;
  // Revocation: every other 400 is the expiration manager reporting that the revocation failed (engine,
  // storage); a lease that is already gone answers 204. Retried with backoff, and parked after max_attempts.
  if (op === 'revoke') return true;
  // Issue and renewal: a 400 is Vault's refusal (unknown role, policies not allowed, lease not renewable,
  // past its max TTL), except a renewal that failed inside the engine.
  return op === 'renew' && ENGINE_RENEW_FAILED.test(message);
}

/** Maps a node-vault error for `op` on `path` to a BackendError that says whether trying again can help. */
export function toBackendError(err: unknown, op: VaultOperation, path: string, capability: string): BackendError {
  const status = vaultStatus(err);
  if (status === undefined) return new BackendError('vault_unavailable', 'Vault could not be reached', true);
  if (status === 403) return permissionError(path, capability);
  if (status === 404 || status === 405) return new BackendError('vault_path_unsupported', `Vault has no ${path} for this request (${status}): ${vaultMessage(err)}`, false);
  // 429 rate limited, 412 a standby not yet caught up, 5xx sealed/overloaded/internal, 502 upstream throttled.
  if (status === 429 || status === 412 || status >= 500) return new BackendError('vault_unavailable', `Vault answered ${status}: ${vaultMessage(err)}`, true);
  // 202 (a revocation queued, not confirmed) and other 2xx node-vault rejects: not confirmed yet, ask again.
  if (status < 300) return new BackendError('vault_unconfirmed', `Vault answered ${status} without confirming`, true);
  const message = vaultMessage(err);
  if (retryable400(op, message)) return new BackendError('vault_failed', `Vault answered ${status}: ${message}`, true);
  return new BackendError('vault_refused', `Vault answered ${status}: ${message}`, false);
}
