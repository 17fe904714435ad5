import { agentDetails, type Resolution } from '../agents/registry.js';
import type { ApprovalService } from '../approvals/service.js';
import { requestRef } from '../audit/append.js';
import type { RefusalAudit } from '../audit/refusals.js';
import type { Backend, MintResult } from '../backends/types.js';
import { BackendError } from '../backends/types.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import type { Approval, Lease, leases, Task } from '../db/schema.js';
import { AppError, type ErrorCode } from '../errors.js';
import { actorOf, type Identity } from '../identity/types.js';
import { newId } from '../ids.js';
import type { Logger } from '../log.js';
import { agentRefusal, outsideCeiling, type Decision, type Policy } from '../policy/decide.js';
import { heldRoles, refusalExtra, type Held, type LimitRefusal, type Limits } from '../policy/limits.js';
import type { RateLimiter } from '../policy/rate-limit.js';
import { credentialCeiling } from '../policy/ttl.js';
import type { Metrics } from '../metrics.js';
import type { TaskCache } from '../tasks/cache.js';
import type { LeaseWriter, Who } from './writer.js';

export interface IssueDeps {
  db: Db;
  clock: Clock;
  policy: Policy;
  limits: Limits;
  approvals: ApprovalService;
  rateLimiter?: RateLimiter;
  /** Repeated refusals, audited once per window (the broker drains it on housekeeping and at shutdown). */
  refusals: Pick<RefusalAudit, 'refuse'>;
  backends: ReadonlyMap<string, Backend>;
  writer: LeaseWriter;
  /** Open tasks for the decision; the commit reads the status again. */
  taskCache: Pick<TaskCache, 'get' | 'forget'>;
  log: Logger;
  metrics?: Pick<Metrics, 'issued' | 'denied' | 'agentIssued' | 'agentDenied'>;
  /** Who an identity is (agents/service.ts): its decision now, and again at commit if the registry moved. */
  agents: {
    resolve(identity: Identity): Promise<Resolution>;
    resolveAt(identity: Identity, generation: number, through: Db): Promise<Resolution>;
  };
}

export interface IssueInput {
  identity: Identity;
  taskId: string;
  roleName: string;
  ttlSeconds?: number;
  /** An approved request to redeem, for a gated role. */
  approvalId?: string;
  /** A narrower scope than the role's jwt scope (token exchange's `scope`): a subset, checked by the caller. */
  scope?: string;
  /** The thumbprint of the key a verified DPoP proof was signed with (oauth/dpop.ts): a jwt credential is bound to it. */
  dpopJkt?: string;
  /**
   * Delegation (oauth/exchange.ts): the person the agent (`identity`) acts for, who may delegate the role. The
   * decision is the agent's; the token is the person's, acted by the agent (`act`).
   */
  onBehalfOf?: { actor: string; subject: string; act: Record<string, unknown> };
  /** The caller cannot take a 202 (an AWS SDK): a gated role is refused instead of queued for approval. */
  noApprovalRequests?: boolean;
  requestId?: string | null;
  clientRequestId?: string | null;
}

export type IssueResult = { kind: 'issued'; lease: Lease; credentials: Record<string, unknown> } | { kind: 'approval'; approval: Approval };

const DENY_MESSAGES: Partial<Record<ErrorCode, string>> = {
  task_not_found: 'no such task',
  task_not_open: 'this task is no longer open',
  task_expired: 'this task has passed its deadline',
  role_denied: 'this identity may not request this role for this task',
  quota_exceeded: 'too many active credentials; retry once one has ended',
  task_lease_limit: 'this task has been issued all the credentials it may have',
  role_conflict: 'this role may not be held together with a role already held',
  rate_limited: 'too many credential requests; slow down',
  policy_error: 'the request could not be evaluated, so it is refused',
  approval_required: 'this role needs approval: request it with POST /v1/credentials, then redeem it there',
  agent_suspended: 'this agent is suspended: its owner or an admin can resume it',
  agent_not_registered: 'this identity is not a registered agent: an admin registers agents (POST /v1/agents)',
};

/**
 * Refusals that say only "this identity may not have this": repeated by one
 * identity they carry nothing new but their number, so they are audited once
 * per identity, code and window with a count (audit/refusals.ts). The key
 * leaves out the task and role the request named: otherwise a new made-up
 * task id on every request would make every refusal the first of its window
 * and reach the chain's head, which is the flood this stops. Refusals that
 * name a limit or a lease (quotas, conflicts), a policy error and a failed
 * mint stay one event each: only an agent bound to the task reaches them,
 * and the rate limit bounds how often.
 */
const AGGREGATED = new Set<ErrorCode>(['rate_limited', 'role_denied', 'task_not_found', 'task_not_open', 'task_expired', 'agent_suspended', 'agent_not_registered']);
const refusalKey = (input: IssueInput, code: ErrorCode) => JSON.stringify([actorOf(input.identity), code]);

/** The agent a metric counts under: '-' for an identity no agent matches. */
const agentLabel = (agent: Resolution | undefined) => (agent?.kind === 'agent' ? agent.agent.name : '-');

/** What a suspended agent is told besides the code: which agent, since when (never the admin's reason). */
const suspendedExtra = (agent: Resolution | undefined): Record<string, unknown> =>
  agent && agent.kind !== 'refused' && agent.suspension
    ? { ...(agent.kind === 'agent' ? { agent: agent.agent.name, owner: agent.agent.owner.name, owner_contact: agent.agent.owner.contact } : {}), suspended_at: agent.suspension.suspendedAt.toISOString() }
    : {};

/**
 * The lease ends at its TTL, or earlier when the backend granted less (a
 * Vault lease_duration shorter than asked). Sub-second differences are the
 * backend's whole-second rounding, not a shorter grant.
 */
function leaseEnd(now: Date, ttlSeconds: number, backendEnd: Date): Date {
  const asked = new Date(now.getTime() + ttlSeconds * 1000);
  return backendEnd.getTime() < asked.getTime() - 1000 ? backendEnd : asked;
}

/**
 * Issues one credential. The promise, in order: rate limit, decide, check
 * limits (any error here is a refusal), gate on approval, mint, then commit
 * the lease row and its audit event together, re-checking the limits under
 * lock; only a committed, active lease releases the credential.
 */
export function createIssuer(deps: IssueDeps) {
  const { db, clock, policy, limits, approvals, backends, writer, taskCache, log } = deps;
  const { refusals } = deps;

  /** Every refusal is counted by the metric; a repeated one is audited with its window's count, and a rate-limited one waits for no database. */
  async function deny(
    input: IssueInput,
    code: ErrorCode,
    reason: string,
    now: Date,
    extra: Record<string, unknown> = {},
    agent?: Resolution,
    /** Only for the audit trail (which policies decided), not the caller. */
    audited: Record<string, unknown> = {},
  ): Promise<never> {
    deps.metrics?.denied.inc({ code });
    deps.metrics?.agentDenied.inc({ agent: agentLabel(agent), code });
    const event = {
      at: now,
      actor: actorOf(input.identity),
      action: 'credential.denied',
      target: `task:${input.taskId}`,
      decision: 'deny' as const,
      reason,
      details: { code, role: input.roleName, token_sha256: input.identity.tokenSha256, ...agentDetails(agent), ...(input.onBehalfOf ? { on_behalf_of: input.onBehalfOf.actor } : {}), ...extra, ...audited },
      ...requestRef(input),
    };
    if (AGGREGATED.has(code)) await refusals.refuse(refusalKey(input, code), event, { wait: code !== 'rate_limited' });
    else await writer.audit([event]);
    throw new AppError(code, DENY_MESSAGES[code] ?? 'refused', extra);
  }

  /** Which Cedar policies decided, and which set they belong to (replicas that agree show the same). */
  const decidedBy = (policies: string[] | undefined) => (policies ? { policies, policy_set: policy.cedar.hash.slice(0, 16) } : {});

  /** What a conflict tells the caller and the audit trail: its name and the oldest lease it conflicts with. */
  const conflictExtra = (decision: Decision): Record<string, unknown> =>
    !decision.allow && decision.conflict ? { conflict: decision.conflict.name, ...(decision.conflict.with ? { conflicts_with: decision.conflict.with } : {}) } : {};

  /** What is held, read only when a policy on the role reads it. */
  const heldFor = async (input: IssueInput, now: Date): Promise<Held> => (await heldRoles(db, [{ identity: input.identity, taskId: input.taskId }], now))[0]!;

  /** Policy sees the person a delegated request is for (`context.on_behalf_of`). */
  const delegated = (input: IssueInput) => (input.onBehalfOf ? { onBehalfOf: input.onBehalfOf.actor } : {});

  /** The decision and the limit check; an unexpected error in either is a refusal (fail closed), a database outage a 503. */
  async function evaluate(input: IssueInput, now: Date): Promise<{ decision: Decision & { allow: true }; constrained: boolean; deadline: Date; agent: Resolution; task: Task }> {
    let decision: Decision;
    let task;
    let refusal: LimitRefusal | undefined;
    let agent: Resolution | undefined;
    try {
      agent = await deps.agents.resolve(input.identity);
      task = await taskCache.get(input.taskId);
      const held = task && policy.heldMatters(input.roleName) ? await heldFor(input, now) : undefined;
      decision = policy.decide({ identity: input.identity, task, roleName: input.roleName, requestedTtl: input.ttlSeconds, now, agent, ...(held ? { held } : {}), ...delegated(input) });
      if (decision.allow) refusal = await limits.check(db, { identity: input.identity, task: task!, role: decision.role, now });
    } catch (err) {
      if (isDatabaseUnavailable(err)) throw err;
      log.error({ err: err instanceof Error ? err.name : 'unknown', reqId: input.requestId }, 'policy evaluation failed');
      return deny(input, 'policy_error', 'policy evaluation failed', now, {}, agent);
    }
    if (!decision.allow) return deny(input, decision.code, decision.reason, now, { ...suspendedExtra(agent), ...conflictExtra(decision) }, agent, decidedBy(decision.policies));
    if (refusal) return deny(input, refusal.code, refusal.reason, now, refusalExtra(refusal), agent);
    // The commit re-checks a constrained request's limits (and policy on what is held) under lock; the others are recorded in one statement.
    return { decision, constrained: limits.constrained(decision.role, task!) || policy.heldMatters(decision.role.name), deadline: task!.deadline, agent: agent!, task: task! };
  }

  /**
   * The commit's decision on what is held, under its locks (leases/writer.ts reads it): the same decision as
   * the first, on the roles held then, committed ones and those accepted ahead of it. A request that policy
   * now refuses, or now gates on an approval it did not redeem, is refused.
   */
  function decideHeld(input: IssueInput, task: Task, agent: Resolution, now: Date, redeemed: boolean): Who['decideHeld'] {
    if (!policy.heldMatters(input.roleName)) return undefined;
    return (held) => {
      const again = policy.decide({ identity: input.identity, task, roleName: input.roleName, requestedTtl: input.ttlSeconds, now, agent, held, ...delegated(input) });
      if (!again.allow) {
        return { code: again.code, reason: again.reason, extra: conflictExtra(again), ...(again.code === 'role_conflict' ? {} : { leaseReason: 'policy_refused' as const }) };
      }
      if (again.approvalRequiredBy && !redeemed) return { code: 'role_denied', reason: `an approval is required now (${again.approvalRequiredBy})`, extra: {}, leaseReason: 'policy_refused' };
      return undefined;
    };
  }

  /** The commit's second decision, when the registry moved since the first: on the registry the commit locked. */
  function recheckAgent(identity: Identity, roleName: string): Who['recheck'] {
    return async (generation, through) => {
      const fresh = await deps.agents.resolveAt(identity, generation, through);
      const refusal = agentRefusal(fresh, policy.requireRegistration) ?? outsideCeiling(fresh, roleName);
      if (refusal) return { refusal: { code: refusal.code, reason: refusal.reason, extra: suspendedExtra(fresh) } };
      return fresh.kind === 'agent' ? { agent: fresh.agent.name, agentOwner: fresh.agent.owner.name } : { agent: null, agentOwner: null };
    };
  }

  return async function issue(input: IssueInput): Promise<IssueResult> {
    const now = clock.now();
    const limited = deps.rateLimiter?.take(actorOf(input.identity));
    if (limited && !limited.ok) return deny(input, 'rate_limited', 'rate limit', now, { retry_after: limited.retryAfterSeconds });
    const { decision, constrained, deadline, agent, task } = await evaluate(input, now);
    if (decision.role.jwt?.require_dpop && !input.dpopJkt) return deny(input, 'dpop_required', `role ${decision.role.name} requires a DPoP proof`, now, {}, agent);
    let ttlSeconds = decision.ttlSeconds;
    let redeemed: string | undefined;
    let approvedTtl: number | null = null;
    const leaseId = newId(clock);

    if (decision.approvalRequiredBy) {
      if (!input.approvalId && input.noApprovalRequests) {
        return deny(input, 'approval_required', `needs approval (${decision.approvalRequiredBy}); not requested through this endpoint`, now);
      }
      if (!input.approvalId) {
        const approval = await approvals.request({
          identity: input.identity,
          taskId: input.taskId,
          role: input.roleName,
          ttlSeconds: decision.ttlSeconds, // what the approver sees, and the most redemption may get
          requiredBy: decision.approvalRequiredBy,
          agent: agentDetails(agent),
          ...requestRef(input),
        });
        return { kind: 'approval', approval };
      }
      const approved = await approvals.redeem(input.identity, input.approvalId, input.taskId, input.roleName, leaseId, requestRef(input));
      redeemed = approved.id;
      // Never longer than what the approver saw requested.
      if (approved.requestedTtl !== null) ttlSeconds = Math.min(ttlSeconds, approved.requestedTtl);
      approvedTtl = approved.requestedTtl;
    }
    // How long the backend may ever let the credential live (renewals included); renew.ts caps at the same ceiling.
    const ceiling = credentialCeiling({ issuedAt: now, roleMaxTtl: decision.role.max_ttl, deadline, approvedTtl });
    const maxTtlSeconds = Math.floor((ceiling.getTime() - now.getTime()) / 1000);

    // Config validation guarantees every role's backend exists.
    const backend = backends.get(decision.role.backend)!;
    let minted: MintResult;
    try {
      minted = await backend.mint({
        leaseId,
        taskId: input.taskId,
        role: decision.role,
        identity: input.identity,
        ttlSeconds,
        maxTtlSeconds,
        now,
        ...(input.scope !== undefined ? { scope: input.scope } : {}),
        // Only a jwt can carry the binding: other backends' credentials are not bound, and say so by their token type.
        ...(input.dpopJkt && backend.type === 'jwt' ? { cnfJkt: input.dpopJkt } : {}),
        ...(input.onBehalfOf ? { actFor: { subject: input.onBehalfOf.subject, act: input.onBehalfOf.act } } : {}),
      });
    } catch (err) {
      // A backend that keeps state in the database (AWS revocation) failed on the database: that is a 503, not the backend's.
      if (isDatabaseUnavailable(err)) throw err;
      const safe = err instanceof BackendError ? err.message : 'backend failed';
      log.warn({ err: safe, backend: backend.name, lease: leaseId }, 'mint failed');
      const code = err instanceof BackendError && !err.retryable ? 'backend_error' : 'backend_unavailable';
      const backendCode = err instanceof BackendError ? err.code : 'unknown';
      await writer
        .audit([{ at: now, actor: actorOf(input.identity), action: 'credential.denied', target: `task:${input.taskId}`, decision: 'deny', reason: `mint failed: ${safe}`, details: { code, backend_code: backendCode, role: input.roleName, ...agentDetails(agent) }, ...requestRef(input) }])
        .catch(() => {});
      throw new AppError(code, `the ${backend.type} backend could not issue a credential: ${safe}`, { backend_code: backendCode });
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
      expiresAt: leaseEnd(now, ttlSeconds, minted.expiresAt),
      backendExpiresAt: minted.honouredUntil ?? minted.expiresAt,
      revocable: minted.revocable ?? true,
      agent: agent.kind === 'agent' ? agent.agent.name : null,
      agentOwner: agent.kind === 'agent' ? agent.agent.owner.name : null,
      onBehalfOf: input.onBehalfOf?.actor ?? null,
    };
    let recorded: Awaited<ReturnType<LeaseWriter['recordLease']>>;
    try {
      recorded = await writer.recordLease(
        row,
        {
          at: now,
          actor: actorOf(input.identity),
          action: 'credential.issued',
          target: `lease:${leaseId}`,
          decision: 'allow',
          details: {
            task: input.taskId,
            role: decision.role.name,
            backend: backend.name,
            ttl_seconds: ttlSeconds,
            ...(input.scope !== undefined ? { scope: input.scope } : {}),
            ...(input.dpopJkt && backend.type === 'jwt' ? { dpop_jkt: input.dpopJkt } : {}),
            ...(input.onBehalfOf ? { on_behalf_of: input.onBehalfOf.actor } : {}),
            credential_ref: minted.ref,
            ...(minted.revocable === false ? { not_revocable: `works until its backend expiry, ${(minted.honouredUntil ?? minted.expiresAt).toISOString()}` } : {}),
            token_sha256: input.identity.tokenSha256,
            ...agentDetails(agent),
            ...(redeemed ? { approval: redeemed } : {}),
            ...decidedBy(decision.policies),
          },
          ...requestRef(input),
        },
        {
          identity: input.identity,
          role: decision.role,
          constrained,
          generation: agent.generation,
          recheck: recheckAgent(input.identity, decision.role.name),
          decideHeld: decideHeld(input, task, agent, now, redeemed !== undefined),
        },
      );
    } catch (err) {
      // Nothing was recorded, so nothing will revoke it later: try now, and say so if that fails.
      await backend
        .revoke({ leaseId, ref: minted.ref, role: row.role, agent: actorOf(input.identity), backendExpiresAt: minted.honouredUntil ?? minted.expiresAt })
        .catch((revokeErr: unknown) =>
          log.error({ lease: leaseId, err: revokeErr instanceof BackendError ? revokeErr.message : 'unknown' }, 'could not revoke an unrecorded credential'),
        );
      throw err;
    }
    // Refused at commit (task closed, or a limit reached by a concurrent request): recorded as revoking, and the sweeper revokes it.
    if (recorded.refusal) {
      // The task closed, and this replica's cache had missed it: the next request reads it again.
      if (recorded.refusal.code === 'task_not_open') taskCache.forget(input.taskId);
      deps.metrics?.denied.inc({ code: recorded.refusal.code });
      deps.metrics?.agentDenied.inc({ agent: recorded.lease.agent ?? agentLabel(agent), code: recorded.refusal.code });
      throw new AppError(recorded.refusal.code, DENY_MESSAGES[recorded.refusal.code] ?? 'refused', recorded.refusal.extra);
    }
    deps.metrics?.issued.inc({ role: row.role, backend: backend.name });
    deps.metrics?.agentIssued.inc({ agent: recorded.lease.agent ?? '-' });
    return { kind: 'issued', lease: recorded.lease, credentials: minted.credentials };
  };
}
export type Issuer = ReturnType<typeof createIssuer>;
