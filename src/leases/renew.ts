import { and, eq, gt } from 'drizzle-orm';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import { BackendError, type Backend } from '../backends/types.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { approvals, leases, tasks, type Lease } from '../db/schema.js';
import { AppError } from '../errors.js';
import { actorOf, type Identity } from '../identity/types.js';
import type { Resolution } from '../agents/registry.js';
import { agentOf } from './revoke.js';
import { agentRefusal, outsideCeiling, type Policy } from '../policy/decide.js';
import { credentialCeiling } from '../policy/ttl.js';

export interface RenewDeps {
  db: Db;
  clock: Clock;
  policy: Policy;
  backends: ReadonlyMap<string, Backend>;
  agents: { resolve(identity: Identity): Promise<Resolution> };
}

/**
 * Extends an agent's own active lease, never past its credential's ceiling
 * (the role's `max_ttl` from issue, the task's deadline, and the TTL the
 * approver saw when the lease was redeemed from an approval: the same
 * ceiling issuance gave the backend), through the backend's own renewal
 * (Vault `sys/leases/renew`). The new end is the earlier of what was asked
 * and what the backend granted; the change is audited with the lease.
 */
export function createRenewer({ db, clock, policy, backends, agents }: RenewDeps) {
  return async function renew(identity: Identity, id: string, incrementSeconds: number | undefined, request: RequestRef = {}): Promise<Lease> {
    const now = clock.now();
    // A suspended agent extends nothing (its suspension moved its leases to revoking, so the update below would find none anyway).
    const agent = await agents.resolve(identity);
    const barred = agentRefusal(agent, policy.requireRegistration);
    if (barred) throw new AppError(barred.code, barred.code === 'agent_suspended' ? 'this agent is suspended: its owner or an admin can resume it' : 'this identity may not renew credentials');
    const [row] = await db
      .select({ lease: leases, task: tasks, approval: approvals.id, approvedTtl: approvals.requestedTtl })
      .from(leases)
      .innerJoin(tasks, eq(tasks.id, leases.taskId))
      // The approval this lease was redeemed from, if any: what the approver saw is read where it is kept.
      .leftJoin(approvals, eq(approvals.leaseId, leases.id))
      .where(and(eq(leases.id, id), eq(leases.issuer, identity.issuer), eq(leases.subject, identity.subject)));
    if (!row) throw new AppError('lease_not_found', 'no such lease');
    const { lease, task, approval, approvedTtl } = row;
    if (lease.status !== 'active' || lease.expiresAt <= now || task.status !== 'open') throw new AppError('lease_not_active', 'only an active lease of an open task can be renewed');
    // A ceiling narrowed since the lease was issued: it is not extended (it ends at its expiry).
    if (outsideCeiling(agent, lease.role)) throw new AppError('role_denied', "this role is outside the agent's ceiling now: the lease is not extended");
    const role = policy.role(lease.role);
    const backend = backends.get(lease.backend);
    if (!role || !backend?.renew) throw new AppError('not_renewable', 'credentials of this role cannot be renewed');
    const limit = credentialCeiling({ issuedAt: lease.issuedAt, roleMaxTtl: role.max_ttl, deadline: task.deadline, approvedTtl }).getTime();
    const want = Math.min(now.getTime() + (incrementSeconds ?? role.ttl) * 1000, limit);
    if (want <= lease.expiresAt.getTime()) {
      throw new AppError('renew_limit', "the lease is already at its limit: the role's maximum, the task's deadline or the approved TTL");
    }
    // Policy on the renewal (Cedar's `Renew`): refused ones are answered with the policies, and audited.
    const permission = policy.mayRenew({ identity, agent, task, role, lease: lease.id, ttlSeconds: incrementSeconds ?? role.ttl, approved: approval !== null, now });
    const decidedBy = { policies: permission.policies, policy_set: policy.cedar.hash.slice(0, 16) };
    if (!permission.allow) {
      await appendAudit(db, [
        { at: now, actor: actorOf(identity), action: 'lease.renew_refused', target: `lease:${id}`, decision: 'deny', reason: permission.reason, details: { task: lease.taskId, ...agentOf(lease), ...decidedBy }, ...requestRef(request) },
      ]);
      throw new AppError('policy_denied', `policy does not let this lease be renewed: ${permission.reason}`, decidedBy);
    }

    let granted: Date;
    try {
      granted = (await backend.renew({ ref: lease.credentialRef, incrementSeconds: Math.ceil((want - now.getTime()) / 1000) })).expiresAt;
    } catch (err) {
      if (err instanceof BackendError && !err.retryable) throw new AppError('not_renewable', `the backend refused to renew: ${err.message}`, { backend_code: err.code });
      throw new AppError('backend_unavailable', 'the backend could not renew the credential', { backend_code: err instanceof BackendError ? err.code : 'unknown' });
    }
    const newEnd = new Date(Math.min(want, granted.getTime()));
    return db.transaction(async (tx) => {
      const [updated] = await tx
        .update(leases)
        .set({ expiresAt: newEnd, backendExpiresAt: new Date(Math.max(granted.getTime(), lease.backendExpiresAt.getTime())) })
        .where(and(eq(leases.id, id), eq(leases.status, 'active'), gt(leases.expiresAt, now)))
        .returning();
      if (!updated) throw new AppError('lease_not_active', 'the lease ended while it was being renewed');
      await appendAudit(tx, [
        {
          at: now,
          actor: actorOf(identity),
          action: 'lease.renewed',
          target: `lease:${id}`,
          decision: 'allow',
          details: { task: lease.taskId, ...agentOf(lease), from: lease.expiresAt.toISOString(), to: newEnd.toISOString(), backend_expires_at: granted.toISOString(), ...decidedBy },
          ...requestRef(request),
        },
      ]);
      return updated;
    });
  };
}
export type Renewer = ReturnType<typeof createRenewer>;
