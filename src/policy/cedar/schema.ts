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
 * - `Orchestrator`, `Approver`: the caller that opens a task, or decides an
 *   approval (`name` is its audit actor). Their tags are an OIDC caller's claims.
 * - `RequestCredential` context: the TTL asked for (or the role's default), at
 *   most the role's `max_ttl`, before the task's deadline cuts it; the roles
 *   held now in the task and by the agent across its tasks, and their labels
 *   as `key=value` (Cedar has no "any held role such that"); `approved`, true
 *   only where an approver's decision is weighed (an `@approval` gate lifted);
 *   the time (UTC, to the minute) with its weekday (`Mon` to `Sun`) and hour.
 * - `Renew` context: the lease, the seconds asked for, and whether the lease
 *   was redeemed from an approval.
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
    roles: Set<String>,
  } tags String;
  entity Orchestrator = {
    name: String,
    admin: Bool,
  } tags String;
  entity Approver = {
    name: String,
    admin: Bool,
  } tags String;
  type Request = {
    task: Task,
    ttl_seconds: Long,
    task_roles: Set<String>,
    agent_roles: Set<String>,
    task_role_labels: Set<String>,
    agent_role_labels: Set<String>,
    approved: Bool,
    on_behalf_of?: String,
    now: datetime,
    weekday: String,
    hour: Long,
  };
  type Renewal = {
    task: Task,
    lease: String,
    ttl_seconds: Long,
    approved: Bool,
    now: datetime,
    weekday: String,
    hour: Long,
  };
  type Opening = {
    agent_issuer: String,
    agent_subject: String,
    ttl_seconds: Long,
    now: datetime,
    weekday: String,
    hour: Long,
  };
  type Decision = {
    task: Task,
    requester: String,
    required_by: String,
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
  action Renew appliesTo {
    principal: [Agent],
    resource: [Role],
    context: Renewal,
  };
  action OpenTask appliesTo {
    principal: [Orchestrator],
    resource: [Task],
    context: Opening,
  };
  action Approve appliesTo {
    principal: [Approver],
    resource: [Role],
    context: Decision,
  };
}
`;

/** Entity type names as policies write them. */
export const T = {
  agent: 'Tasklease::Agent',
  role: 'Tasklease::Role',
  task: 'Tasklease::Task',
  orchestrator: 'Tasklease::Orchestrator',
  approver: 'Tasklease::Approver',
  action: 'Tasklease::Action',
} as const;
