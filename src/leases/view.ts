import type { Approval, Lease, Task } from '../db/schema.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** A lease as its holder (and its task's orchestrator) sees it: references and state, never secret material. */
export function leaseView(lease: Lease) {
  return {
    id: lease.id,
    task: lease.taskId,
    role: lease.role,
    backend: lease.backend,
    issuer: lease.issuer,
    subject: lease.subject,
    status: lease.status,
    reason: lease.reason,
    credential_ref: lease.credentialRef,
    issued_at: lease.issuedAt.toISOString(),
    expires_at: lease.expiresAt.toISOString(),
    backend_expires_at: lease.backendExpiresAt.toISOString(),
    /** False: revoking ends the lease, but the credential itself works until backend_expires_at. */
    revocable: lease.revocable,
    revoke_requested_at: iso(lease.revokeRequestedAt),
    ended_at: iso(lease.endedAt),
    /** The registered agent the lease was issued to, and its owner then (null: no agent matched). */
    agent: lease.agent,
    agent_owner: lease.agentOwner,
  };
}
export type LeaseView = ReturnType<typeof leaseView>;

/**
 * A lease as an admin sees it: also how its revocation is going. These are
 * operator fields, kept from the holder: `last_error` is the backend's own
 * wording (a Vault path, a database host), not the agent's business.
 */
export function adminLeaseView(lease: Lease) {
  return {
    ...leaseView(lease),
    revoke_attempts: lease.attempts,
    next_attempt_at: iso(lease.nextAttemptAt),
    last_error: lease.lastError,
  };
}

export function taskView(task: Task) {
  return {
    id: task.id,
    external_id: task.externalId,
    agent: { issuer: task.agentIssuer, subject: task.agentSubject },
    roles: task.roles,
    status: task.status,
    outcome: task.outcome,
    created_by: task.createdBy,
    created_at: task.createdAt.toISOString(),
    deadline: task.deadline.toISOString(),
    completed_at: iso(task.completedAt),
    labels: task.labels,
    max_leases: task.maxLeases,
  };
}
export type TaskView = ReturnType<typeof taskView>;

export function approvalView(a: Approval) {
  return {
    id: a.id,
    task: a.taskId,
    role: a.role,
    requester: { issuer: a.issuer, subject: a.subject },
    status: a.status,
    required_by: a.requiredBy,
    requested_ttl_seconds: a.requestedTtl,
    decided_by: a.decidedBy,
    decision_reason: a.decisionReason,
    created_at: a.createdAt.toISOString(),
    expires_at: a.expiresAt.toISOString(),
    decided_at: iso(a.decidedAt),
    lease: a.leaseId,
  };
}
