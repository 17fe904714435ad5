/**
 * The closed set of error codes the API answers with. Each maps to one HTTP
 * status in http/problem.ts; the code is the stable contract, the message is
 * for humans and never carries secrets or internal error text.
 */
export const ERROR_STATUS = {
  bad_request: 400,
  validation_failed: 400,
  unknown_role: 400,
  dpop_required: 400,
  dpop_invalid: 400,
  task_id_not_accepted: 400,
  token_missing: 401,
  token_malformed: 401,
  token_invalid: 401,
  token_expired: 401,
  issuer_unknown: 401,
  not_agent: 403,
  not_orchestrator: 403,
  not_admin: 403,
  role_denied: 403,
  role_conflict: 403,
  self_approval: 403,
  policy_denied: 403,
  policy_error: 403,
  approval_required: 403,
  agent_suspended: 403,
  agent_not_registered: 403,
  not_agent_owner: 403,
  not_found: 404,
  task_not_found: 404,
  lease_not_found: 404,
  approval_not_found: 404,
  agent_not_found: 404,
  suspension_not_found: 404,
  method_not_allowed: 405,
  task_exists: 409,
  task_not_open: 409,
  task_expired: 409,
  task_lease_limit: 409,
  lease_not_active: 409,
  not_renewable: 409,
  renew_limit: 409,
  approval_not_pending: 409,
  approval_not_redeemable: 409,
  audit_chain_broken: 409,
  agent_exists: 409,
  agent_ambiguous: 409,
  agent_from_config: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  quota_exceeded: 429,
  rate_limited: 429,
  internal: 500,
  backend_error: 502,
  issuer_unavailable: 503,
  backend_unavailable: 503,
  database_unavailable: 503,
  request_timeout: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}
