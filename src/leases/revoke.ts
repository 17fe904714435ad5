import { and, eq, type SQL } from 'drizzle-orm';
import { appendAudit, requestRef, type AuditInput } from '../audit/append.js';
import type { Db } from '../db/client.js';
import { leases } from '../db/schema.js';

export interface RevokeRequest {
  /** Which leases; only the active ones among them move. */
  where: SQL | undefined;
  /** The lease's reason: task_completed, released, admin. */
  reason: string;
  actor: string;
  now: Date;
  requestId?: string | null;
  clientRequestId?: string | null;
  /** Free text from an admin, kept in the audit trail only. */
  note?: string;
  /** Events of the same commit that belong before these (the audit append must come last in a transaction). */
  precedingEvents?: AuditInput[];
}

/** The agent and owner a lease's audit events name (none for a lease no agent matched). */
export const agentOf = (lease: { agent: string | null; agentOwner: string | null }) => (lease.agent ? { agent: lease.agent, owner: lease.agentOwner } : {});

/**
 * Moves matching active leases to `revoking` and audits each, inside the
 * caller's transaction. The sweeper does the backend call; a lease leaves
 * `revoking` only when the backend confirms. Returns the ids that moved.
 */
export async function markRevoking(tx: Db, request: RevokeRequest): Promise<string[]> {
  const moved = await tx
    .update(leases)
    .set({
      status: 'revoking',
      reason: request.reason,
      revokeRequestedAt: request.now,
      nextAttemptAt: request.now,
      attempts: 0,
      lastError: null,
    })
    .where(and(eq(leases.status, 'active'), request.where))
    .returning({ id: leases.id, taskId: leases.taskId, role: leases.role, agent: leases.agent, agentOwner: leases.agentOwner });
  await appendAudit(tx, [
    ...(request.precedingEvents ?? []),
    ...moved.map((lease) => ({
      at: request.now,
      actor: request.actor,
      action: 'lease.revoke_requested',
      target: `lease:${lease.id}`,
      decision: 'allow' as const,
      reason: request.reason,
      details: { task: lease.taskId, role: lease.role, ...agentOf(lease), ...(request.note ? { note: request.note } : {}) },
      ...requestRef(request),
    })),
  ]);
  return moved.map((l) => l.id);
}
