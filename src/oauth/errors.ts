import { isDatabaseUnavailable } from '../db/errors.js';
import { AppError, type ErrorCode } from '../errors.js';
import { AuthError } from '../identity/types.js';

/** RFC 6749 section 5.2's error codes, RFC 8693's `invalid_target`, and RFC 7009's. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_token_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'invalid_dpop_proof'
  | 'temporarily_unavailable'
  | 'server_error';

/** An answer of an OAuth endpoint in RFC 6749's error format (not problem+json). */
export class OAuthError extends Error {
  override name = 'OAuthError';
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status = 400,
    readonly retryAfter?: number,
  ) {
    super(description);
  }
}

/**
 * The broker's refusals as OAuth errors. RFC 8693 section 2.2.2: a subject token that is invalid, or
 * unacceptable by policy, is `invalid_request`; a target the server will not issue for is `invalid_target`.
 * An agent the registry refuses is `unauthorized_client`. The description is the broker's own message,
 * which never carries secrets; `code` keeps the broker's stable code beside it.
 */
const BY_CODE: Partial<Record<ErrorCode, OAuthErrorCode>> = {
  task_not_found: 'invalid_request',
  task_not_open: 'invalid_request',
  task_expired: 'invalid_request',
  task_lease_limit: 'invalid_request',
  quota_exceeded: 'invalid_request',
  rate_limited: 'invalid_request',
  role_denied: 'invalid_target',
  role_conflict: 'invalid_target',
  policy_error: 'invalid_target',
  approval_required: 'invalid_target',
  approval_not_found: 'invalid_request',
  approval_not_redeemable: 'invalid_request',
  agent_suspended: 'unauthorized_client',
  agent_not_registered: 'unauthorized_client',
  not_agent: 'invalid_request',
  dpop_required: 'invalid_dpop_proof',
  dpop_invalid: 'invalid_dpop_proof',
  backend_error: 'server_error',
  backend_unavailable: 'temporarily_unavailable',
  issuer_unavailable: 'temporarily_unavailable',
};

export function asOAuthError(err: unknown): OAuthError | undefined {
  if (err instanceof OAuthError) return err;
  if (err instanceof AuthError) return new OAuthError('invalid_request', `subject_token: ${err.message}`);
  if (isDatabaseUnavailable(err)) return new OAuthError('temporarily_unavailable', 'the database is unavailable; retry', 503);
  if (err instanceof AppError) {
    const error = BY_CODE[err.code];
    if (!error) return undefined;
    const status = error === 'temporarily_unavailable' ? 503 : error === 'server_error' ? 502 : err.code === 'rate_limited' || err.code === 'quota_exceeded' ? 429 : 400;
    const retry = err.extra.retry_after;
    return new OAuthError(error, `${err.code}: ${err.message}`, status, typeof retry === 'number' ? retry : undefined);
  }
  return undefined;
}
