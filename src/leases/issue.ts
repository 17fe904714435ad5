import { eq, sql } from 'drizzle-orm';
import type { Backend, MintResult } from '../backends/types.js';
import { BackendError } from '../backends/types.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { tasks, type Lease, type leases } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { newId } from '../ids.js';
import type { Logger } from '../log.js';
import type { Policy } from '../policy/decide.js';
import type { LeaseWriter } from './writer.js';

export interface IssueDeps {
  db: Db;
  clock: Clock;
  policy: Policy;
  backends: ReadonlyMap<string, Backend>;
  writer: LeaseWriter;
  log: Logger;
}

export interface IssueInput {
  identity: Identity;
  taskId: string;
  roleName: string;
  ttlSeconds?: number;
  requestId?: string | null;
}

const DENY_MESSAGES = {
  task_not_found: 'no such task',
  task_not_bound: 'this task is bound to another agent',
  task_not_open: 'this task is no longer open',
  task_expired: 'this task has passed its deadline',
  role_denied: 'this identity may not request this role for this task',
} as const;

/**
 * Issues one credential. The promise, in order: decide (fail closed), mint,
 * then commit the lease row and its audit event together; only a committed
 * lease releases the credential. If the commit fails, the minted credential
 * is revoked (best effort) and the caller gets an error.
 */
export function createIssuer(deps: IssueDeps) {
  const { db, clock, policy, backends, writer, log } = deps;
  // Prepared once: building this query per request cost more than running it.
  const taskById = db.select().from(tasks).where(eq(tasks.id, sql.placeholder('id'))).prepare('tl_issue_task_by_id');
  const actorOf = (identity: Identity) => `${identity.issuer}/${identity.subject}`;

  async function deny(input: IssueInput, code: string, reason: string, now: Date) {
    await writer.audit([
      {
        at: now,
        actor: actorOf(input.identity),
        action: 'credential.denied',
        target: `task:${input.taskId}`,
        decision: 'deny',
        reason,
        details: { code, role: input.roleName, token_sha256: input.identity.tokenSha256 },
        requestId: input.requestId ?? null,
      },
    ]);
  }

  return async function issue(input: IssueInput): Promise<{ lease: Lease; credentials: Record<string, unknown> }> {
    const now = clock.now();
    const [task] = await taskById.execute({ id: input.taskId });
    const decision = policy.decide({
      identity: input.identity,
      task,
      roleName: input.roleName,
      requestedTtl: input.ttlSeconds,
      now,
    });
    if (!decision.allow) {
      await deny(input, decision.code, decision.reason, now);
      throw new AppError(decision.code, DENY_MESSAGES[decision.code]);
    }
    // Config validation guarantees every role's backend exists.
    const backend = backends.get(decision.role.backend)!;

    const leaseId = newId(clock);
    let minted: MintResult;
    try {
      minted = await backend.mint({
        leaseId,
        taskId: input.taskId,
        role: decision.role,
        identity: input.identity,
        ttlSeconds: decision.ttlSeconds,
        now,
      });
    } catch (err) {
      const safe = err instanceof BackendError ? err.message : 'backend failed';
      log.warn({ err: safe, backend: backend.name, lease: leaseId }, 'mint failed');
      await deny(input, 'backend_error', `mint failed: ${safe}`, now).catch(() => {});
      throw new AppError(err instanceof BackendError && !err.retryable ? 'backend_error' : 'backend_unavailable', `the ${backend.type} backend could not issue a credential`);
    }

    const row: typeof leases.$inferInsert = {
      id: leaseId,
      taskId: input.taskId,
      role: decision.role.name,
      backend: backend.name,
      issuer: input.identity.issuer,
      subject: input.identity.subject,
      tokenSha256: input.identity.tokenSha256,
      status: 'active',
      credentialRef: minted.ref,
      issuedAt: now,
      expiresAt: new Date(now.getTime() + decision.ttlSeconds * 1000),
      backendExpiresAt: minted.expiresAt,
    };
    let lease: Lease;
    try {
      lease = await writer.recordLease(row, {
        at: now,
        actor: actorOf(input.identity),
        action: 'credential.issued',
        target: `lease:${leaseId}`,
        decision: 'allow',
        details: {
          task: input.taskId,
          role: decision.role.name,
          backend: backend.name,
          ttl_seconds: decision.ttlSeconds,
          credential_ref: minted.ref,
          token_sha256: input.identity.tokenSha256,
        },
        requestId: input.requestId ?? null,
      });
    } catch (err) {
      // Nothing was recorded, so nothing will revoke it later: try now, and say so if that fails.
      await revokeUnrecorded();
      throw err;
    }
    // The task closed while minting: the lease is recorded as revoking and the sweeper revokes it.
    if (lease.status !== 'active') throw new AppError('task_not_open', DENY_MESSAGES.task_not_open);
    return { lease, credentials: minted.credentials };

    async function revokeUnrecorded() {
      await backend!
        .revoke({ leaseId, ref: minted.ref, role: row.role, backendExpiresAt: minted.expiresAt })
        .catch((revokeErr: unknown) =>
          log.error({ lease: leaseId, err: revokeErr instanceof BackendError ? revokeErr.message : 'unknown' }, 'could not revoke an unrecorded credential'),
        );
    }
  };
}
export type Issuer = ReturnType<typeof createIssuer>;
