import { and, desc, eq, gt, inArray, lt, lte, type SQL } from 'drizzle-orm';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { approvals, tasks, type Approval, type ApprovalStatus } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { Principal } from '../identity/principals.js';
import { actorOf, type Identity } from '../identity/types.js';
import { newId } from '../ids.js';
import type { Policy } from '../policy/decide.js';

/**
 * Where a new request is announced (src/notify/): `append` writes its outbox
 * rows in the request's own transaction, so the request and its notifications
 * commit together or not at all; `appended` is told once they have committed.
 */
export interface ApprovalOutbox {
  append(tx: Db, approval: Approval): Promise<void>;
  appended(): void;
}

export interface ApprovalDeps {
  db: Db;
  clock: Clock;
  policy: Policy;
  ttlSeconds: number;
  outbox?: ApprovalOutbox;
}

const requesterIs = (identity: Identity) => and(eq(approvals.issuer, identity.issuer), eq(approvals.subject, identity.subject));

/**
 * Approval gates. A gated request becomes a pending approval; an approver (an
 * admin, or one of the role's approvers, never the requester) approves or
 * denies it with a reason; the requester redeems an approved one exactly
 * once. Pending and approved requests expire. Every step is audited in the
 * transaction that makes it.
 */
export function createApprovalService({ db, clock, policy, ttlSeconds, outbox }: ApprovalDeps) {
  /** Roles this principal may approve for; undefined means all (an admin). */
  function approvableRoles(principal: Principal, roles: string[]): string[] | undefined {
    if (principal.admin) return undefined;
    const identity = principal.identity;
    return identity ? roles.filter((r) => policy.isApprover(r, identity)) : [];
  }

  /**
   * Policy on an approval (Cedar's `Approve`), after the role's approvers: a refusal is audited and answered
   * `policy_denied`, naming the policies. Denying a request is never refused.
   */
  async function mayApprove(principal: Principal, approval: Approval, now: Date, request: RequestRef): Promise<void> {
    const [task] = await db.select().from(tasks).where(eq(tasks.id, approval.taskId));
    const role = policy.role(approval.role);
    if (!task || !role) return;
    const caller = { actor: principal.actor, admin: principal.admin, ...(principal.identity ? { identity: principal.identity } : {}) };
    const requester = `${approval.issuer}/${approval.subject}`;
    const permission = policy.mayApprove({ caller, task, role, requester, requiredBy: approval.requiredBy, ttlSeconds: approval.requestedTtl ?? role.ttl, now });
    if (permission.allow) return;
    const decidedBy = { policies: permission.policies, policy_set: policy.cedar.hash.slice(0, 16) };
    await appendAudit(db, [
      { at: now, actor: principal.actor, action: 'approval.refused', target: `approval:${approval.id}`, decision: 'deny', reason: permission.reason, details: { task: approval.taskId, role: approval.role, requester, ...decidedBy }, ...requestRef(request) },
    ]);
    throw new AppError('policy_denied', `policy does not let you approve this request: ${permission.reason}`, decidedBy);
  }

  return {
    /** The roles this principal may decide: undefined for an admin (every role). The console's live stream and its header ask this too. */
    approvableRoles: (principal: Principal) => approvableRoles(principal, policy.roleNames()),

    async request(
      input: { identity: Identity; taskId: string; role: string; ttlSeconds?: number; requiredBy: string; agent?: { agent?: string; owner?: string } } & RequestRef,
    ): Promise<Approval> {
      const now = clock.now();
      const requested = await db.transaction(async (tx) => {
        const [approval] = await tx
          .insert(approvals)
          .values({
            id: newId(clock),
            taskId: input.taskId,
            role: input.role,
            issuer: input.identity.issuer,
            subject: input.identity.subject,
            tokenSha256: input.identity.tokenSha256,
            requestedTtl: input.ttlSeconds ?? null,
            status: 'pending',
            requiredBy: input.requiredBy,
            createdAt: now,
            expiresAt: new Date(now.getTime() + ttlSeconds * 1000),
          })
          .returning();
        // Before the audit append, which stays last: it takes the chain's head, the lock every appender queues on.
        await outbox?.append(tx, approval!);
        await appendAudit(tx, [
          {
            at: now,
            actor: actorOf(input.identity),
            action: 'approval.requested',
            target: `approval:${approval!.id}`,
            decision: 'info',
            reason: input.requiredBy,
            details: { task: input.taskId, role: input.role, ...input.agent, token_sha256: input.identity.tokenSha256 },
            ...requestRef(input),
          },
        ]);
        return approval!;
      });
      outbox?.appended();
      return requested;
    },

    /** The requester sees its own approvals; approvers see those of roles they approve; anyone else gets 404. */
    async get(principal: Principal, id: string): Promise<Approval> {
      const [approval] = await db.select().from(approvals).where(eq(approvals.id, id));
      const mine = approval && principal.identity && approval.issuer === principal.identity.issuer && approval.subject === principal.identity.subject;
      const approvable = approval && approvableRoles(principal, [approval.role])?.length !== 0;
      if (!approval || !(mine || approvable)) throw new AppError('approval_not_found', 'no such approval');
      return approval;
    },

    /** Approvals this principal may decide, newest first. */
    async list(principal: Principal, status: ApprovalStatus | undefined, cursor: string | undefined, limit: number) {
      const roles = approvableRoles(principal, policy.roleNames());
      if (roles && roles.length === 0) return { items: [], nextCursor: null };
      const where: SQL | undefined = and(
        roles ? inArray(approvals.role, roles) : undefined,
        status ? eq(approvals.status, status) : undefined,
        cursor ? lt(approvals.id, cursor) : undefined,
      );
      const rows = await db.select().from(approvals).where(where).orderBy(desc(approvals.id)).limit(limit + 1);
      const page = rows.slice(0, limit);
      return { items: page, nextCursor: rows.length > limit ? page.at(-1)!.id : null };
    },

    /** Approve or deny a pending, unexpired request. Approval opens a redemption window of the same TTL. */
    async decide(principal: Principal, id: string, verdict: 'approve' | 'deny', reason: string, request: RequestRef = {}): Promise<Approval> {
      const [approval] = await db.select().from(approvals).where(eq(approvals.id, id));
      // The requester already knows its request exists, so it is told plainly why it may not decide it.
      if (approval && principal.identity && approval.issuer === principal.identity.issuer && approval.subject === principal.identity.subject) {
        throw new AppError('self_approval', 'a requester may not decide its own request');
      }
      if (!approval || approvableRoles(principal, [approval.role])?.length === 0) throw new AppError('approval_not_found', 'no such approval');
      const now = clock.now();
      if (verdict === 'approve') await mayApprove(principal, approval, now, request);
      const status = verdict === 'approve' ? 'approved' : 'denied';
      return db.transaction(async (tx) => {
        const [decided] = await tx
          .update(approvals)
          .set({
            status,
            decidedBy: principal.actor,
            decisionReason: reason,
            decidedAt: now,
            ...(status === 'approved' ? { expiresAt: new Date(now.getTime() + ttlSeconds * 1000) } : {}),
          })
          .where(and(eq(approvals.id, id), eq(approvals.status, 'pending'), gt(approvals.expiresAt, now)))
          .returning();
        if (!decided) throw new AppError('approval_not_pending', 'this request is no longer pending (decided or expired)');
        await appendAudit(tx, [
          {
            at: now,
            actor: principal.actor,
            action: `approval.${status}`,
            target: `approval:${id}`,
            decision: status === 'approved' ? 'allow' : 'deny',
            reason,
            details: { task: decided.taskId, role: decided.role, requester: `${decided.issuer}/${decided.subject}` },
            ...requestRef(request),
          },
        ]);
        return decided;
      });
    },

    /**
     * Consumes an approved request for exactly this requester, task and role,
     * once: the status moves to `redeemed` in one conditional UPDATE, so two
     * redemptions racing cannot both succeed.
     */
    async redeem(identity: Identity, id: string, taskId: string, role: string, leaseId: string, request: RequestRef = {}): Promise<Approval> {
      const now = clock.now();
      return db.transaction(async (tx) => {
        const [redeemed] = await tx
          .update(approvals)
          .set({ status: 'redeemed', leaseId })
          .where(
            and(eq(approvals.id, id), requesterIs(identity), eq(approvals.taskId, taskId), eq(approvals.role, role), eq(approvals.status, 'approved'), gt(approvals.expiresAt, now)),
          )
          .returning();
        if (!redeemed) throw new AppError('approval_not_redeemable', 'no approved, unexpired, unredeemed request matches');
        await appendAudit(tx, [
          { at: now, actor: actorOf(identity), action: 'approval.redeemed', target: `approval:${id}`, decision: 'allow', details: { task: taskId, role, lease: leaseId }, ...requestRef(request) },
        ]);
        return redeemed;
      });
    },

    /** Marks pending and approved requests past their expiry as expired (the sweeper calls this). */
    async expire(): Promise<number> {
      const now = clock.now();
      return db.transaction(async (tx) => {
        const expired = await tx
          .update(approvals)
          .set({ status: 'expired' })
          .where(and(inArray(approvals.status, ['pending', 'approved']), lte(approvals.expiresAt, now)))
          .returning({ id: approvals.id, taskId: approvals.taskId, role: approvals.role });
        await appendAudit(
          tx,
          expired.map((a) => ({ at: now, actor: 'system:sweeper', action: 'approval.expired', target: `approval:${a.id}`, details: { task: a.taskId, role: a.role } })),
        );
        return expired.length;
      });
    },
  };
}
export type ApprovalService = ReturnType<typeof createApprovalService>;
