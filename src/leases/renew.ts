import { and, eq, gt } from 'drizzle-orm';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import { BackendError, type Backend } from '../backends/types.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { leases, tasks, type Lease } from '../db/schema.js';
import { AppError } from '../errors.js';
import { actorOf, type Identity } from '../identity/types.js';
import type { Policy } from '../policy/decide.js';

export interface RenewDeps {
  db: Db;
  clock: Clock;
  policy: Policy;
  backends: ReadonlyMap<string, Backend>;
}

/**
 * Extends an agent's own active lease, within the role's `max_ttl` from when
 * the lease was issued and the task's deadline, through the backend's own
 * renewal (Vault `sys/leases/renew`). The new end is the earlier of what was
 * asked and what the backend granted; the change is audited with the lease.
 */
export function createRenewer({ db, clock, policy, backends }: RenewDeps) {
  return async function renew(identity: Identity, id: string, incrementSeconds: number | undefined, request: RequestRef = {}): Promise<Lease> {
    const now = clock.now();
    const [row] = await db
      .select({ lease: leases, task: tasks })
      .from(leases)
      .innerJoin(tasks, eq(tasks.id, leases.taskId))
      .where(and(eq(leases.id, id), eq(leases.issuer, identity.issuer), eq(leases.subject, identity.subject)));
    if (!row) throw new AppError('lease_not_found', 'no such lease');
    const { lease, task } = row;
    if (lease.status !== 'active' || lease.expiresAt <= now || task.status !== 'open') throw new AppError('lease_not_active', 'only an active lease of an open task can be renewed');
    const role = policy.role(lease.role);
    const backend = backends.get(lease.backend);
    if (!role || !backend?.renew) throw new AppError('not_renewable', 'credentials of this role cannot be renewed');
    const limit = Math.min(lease.issuedAt.getTime() + role.max_ttl * 1000, task.deadline.getTime());
    const want = Math.min(now.getTime() + (incrementSeconds ?? role.ttl) * 1000, limit);
    if (want <= lease.expiresAt.getTime()) throw new AppError('renew_limit', "the lease is already at the role's maximum or the task's deadline");

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
        .set({ expiresAt: newEnd, backendExpiresAt: granted })
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
          details: { task: lease.taskId, from: lease.expiresAt.toISOString(), to: newEnd.toISOString(), backend_expires_at: granted.toISOString() },
          ...requestRef(request),
        },
      ]);
      return updated;
    });
  };
}
export type Renewer = ReturnType<typeof createRenewer>;
