/**
 * The Cedar schema every policy is validated against (docs/policy.md). The
 * broker builds the entities and context it names for each decision
 * (policy/cedar/request.ts).
 *
 * - `Agent`: the workload identity. Its tags are the token's claims (a claim
 *   that is not a string as its JSON text; not `iat`, `nbf`, `exp`, `jti`); `labels` the registered agent's
 *   labels as `key=value`; `matches` the ids of the YAML allow rules it meets.
 * - `Role`: what is asked for. Its tags are the role's labels.
 * - `Task`: the task the request names. Its tags are the task's labels.
 * - Context: the TTL asked for (or the role's default), at most the role's
 *   `max_ttl`, before the task's deadline cuts it; the time (UTC, to the
 *   minute) with its weekday (`Mon` to `Sun`) and hour.
 */
export const CEDAR_SCHEMA = `namespace Tasklease {
  entity Agent = {
    issuer: String,
    subject: String,
    agent?: String,
    owner?: String,
    labels: Set<String>,
    matches: Set<String>,
  } tags String;
  entity Role = {
    backend: String,
    backend_type: String,
  } tags String;
  entity Task = {
    purpose: String,
    owner: String,
    created_by: String,
    created_at: datetime,
    deadline: datetime,
  } tags String;
  type Request = {
    task: Task,
    ttl_seconds: Long,
    now: datetime,
    weekday: String,
    hour: Long,
  };
  action RequestCredential appliesTo {
    principal: [Agent],
    resource: [Role],
    context: Request,
  };
}
`;

/** Entity type names as policies write them. */
export const T = {
  agent: 'Tasklease::Agent',
  role: 'Tasklease::Role',
  task: 'Tasklease::Task',
  action: 'Tasklease::Action',
} as const;
