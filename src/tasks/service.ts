import { and, desc, eq, gt, isNull, lt, or, sql } from 'drizzle-orm';
import { appendAudit, requestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { leases, tasks, type Lease, type Task, type TaskStatus } from '../db/schema.js';
import { AppError } from '../errors.js';
import { newId } from '../ids.js';
import type { Identity } from '../identity/types.js';
import { markRevoking } from '../leases/revoke.js';
import type { Policy } from '../policy/decide.js';

export interface TaskServiceDeps {
  db: Db;
  clock: Clock;
  knownRoles: (name: string) => boolean;
  /** Configured issuer names: a task binds its agent to one of them. */
  issuers: string[];
  maxTaskTtlSeconds: number;
  onRevokeRequested: () => void;
  /** Told when a task has been opened, and when one closes (the issuance path's task cache). */
  onTaskOpened?: (task: Task) => void;
  onTaskClosed?: (id: string) => void;
  /**
   * Whether a task may be opened for this agent with these roles (agents/service.ts `admitTask`): throws
   * when it may not; returns the registered agents (and owners) it could be, for the audit trail.
   */
  admit?: (agent: { issuer: string; subject: string }, roles: string[]) => Promise<{ agent: string; owner: string }[]>;
  /** Policy on opening a task (Cedar's `OpenTask`); absent, none beyond the caller's scopes. */
  policy?: Pick<Policy, 'mayOpen' | 'cedar'>;
}

export interface OpenTaskInput {
  /** The orchestrator's own reference: a second open with it is a retry, answered with the first task. */
  externalId?: string | null;
  agent: { issuer?: string; subject: string };
  roles: string[];
  ttlSeconds: number;
  labels?: Record<string, string>;
  maxLeases?: number | null;
  /** Why the task exists, and who answers for it (docs/policy.md: policies see both). */
  purpose?: string | null;
  owner?: string | null;
}

export interface Caller {
  actor: string;
  admin: boolean;
  /** Label sets this orchestrator may also act within (tasks opened by others). */
  scopes?: Record<string, string>[];
  /** An OIDC caller's identity: its claims are the Orchestrator's tags in policy. */
  identity?: Identity;
  requestId?: string | null;
  clientRequestId?: string | null;
}

/**
 * Orchestrators see the tasks they opened and those whose labels contain one
 * of their scopes; admins see all. The ownership predicate is part of the
 * WHERE clause, so a task that is not yours is simply not found.
 */
const visible = (caller: Caller) =>
  caller.admin ? undefined : or(eq(tasks.createdBy, caller.actor), ...(caller.scopes ?? []).map((labels) => sql`${tasks.labels} @> ${JSON.stringify(labels)}::jsonb`));
const visibleTo = (caller: Caller, id: string) => and(eq(tasks.id, id), visible(caller));

/** External ids name tasks among their opener's own only, whoever asks (admins included). */
const ownWithExternalId = (caller: Caller, externalId: string) => and(eq(tasks.createdBy, caller.actor), eq(tasks.externalId, externalId));

/** A task as opened, before anything has happened to it. */
type NewTask = Omit<Task, 'outcome' | 'completedAt'>;

/**
 * Whether a stored task is what `row` would have opened: the same agent, roles,
 * TTL, labels and lease limit. The deadline is compared as a duration, since a
 * retry arrives later than the request it repeats.
 */
function sameRequest(task: Task, row: NewTask): boolean {
  const sorted = (roles: string[]) => [...roles].sort().join('\n');
  const labels = (l: Record<string, string>) => JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : 1)));
  return (
    task.agentIssuer === row.agentIssuer &&
    task.agentSubject === row.agentSubject &&
    sorted(task.roles) === sorted(row.roles) &&
    task.deadline.getTime() - task.createdAt.getTime() === row.deadline.getTime() - row.createdAt.getTime() &&
    labels(task.labels) === labels(row.labels) &&
    task.maxLeases === row.maxLeases &&
    task.purpose === row.purpose &&
    task.owner === row.owner
  );
}

/**
 * The issuer a task's agent is bound to. Without one, a subject would be
 * matched from any trusted issuer, so it may be left out only when there is
 * exactly one.
 */
function bindIssuer(requested: string | undefined, issuers: string[]): string {
  if (requested !== undefined) {
    if (!issuers.includes(requested)) throw new AppError('validation_failed', 'agent.issuer is not a configured issuer');
    return requested;
  }
  if (issuers.length !== 1) throw new AppError('validation_failed', 'agent.issuer is required when several issuers are configured');
  return issuers[0]!;
}

export function createTaskService({ db, clock, knownRoles, issuers, maxTaskTtlSeconds, onRevokeRequested, onTaskOpened, onTaskClosed, admit, policy }: TaskServiceDeps) {
  /** Policy on the task as it would be opened: a refusal is audited (`task.refused`) and answered `policy_denied`. */
  async function mayOpen(caller: Caller, row: NewTask): Promise<Record<string, unknown>> {
    if (!policy) return {};
    const permission = policy.mayOpen({ caller, task: { ...row, outcome: null, completedAt: null }, now: row.createdAt });
    const decidedBy = { policies: permission.policies, policy_set: policy.cedar.hash.slice(0, 16) };
    if (permission.allow) return decidedBy;
    await appendAudit(db, [
      {
        at: row.createdAt,
        actor: caller.actor,
        action: 'task.refused',
        target: `agent:${row.agentIssuer}/${row.agentSubject}`,
        decision: 'deny',
        reason: permission.reason,
        details: { roles: row.roles, labels: row.labels, ...(row.purpose !== null ? { purpose: row.purpose } : {}), ...(row.owner !== null ? { task_owner: row.owner } : {}), ...decidedBy },
        ...requestRef(caller),
      },
    ]);
    throw new AppError('policy_denied', `policy does not let you open this task: ${permission.reason}`, decidedBy);
  }

  /** The task an open conflicted with: the caller's own, so naming it leaks nothing. */
  async function openedBefore(caller: Caller, row: NewTask): Promise<Task> {
    const [existing] = row.externalId === null ? [] : await db.select().from(tasks).where(ownWithExternalId(caller, row.externalId));
    if (!existing) throw new AppError('task_exists', 'a task with this external_id was being opened; try again');
    if (!sameRequest(existing, row)) {
      throw new AppError('task_exists', 'you already opened a different task with this external_id', { task: existing.id });
    }
    return existing;
  }

  return {
    /**
     * Opens a task under an id the broker assigns. An external id lives in the
     * caller's own namespace: sent again with the same request, it answers the
     * first task (`created: false`); with a different request, `task_exists`
     * naming that task. Another orchestrator's external ids neither collide nor
     * show (test/tasks/external-id.test.ts).
     */
    async open(caller: Caller, input: OpenTaskInput): Promise<{ task: Task; created: boolean }> {
      const unknown = input.roles.filter((r) => !knownRoles(r));
      if (unknown.length > 0) throw new AppError('unknown_role', 'the task names roles that are not configured', { roles: unknown });
      const now = clock.now();
      const ttl = Math.min(input.ttlSeconds, maxTaskTtlSeconds);
      const row: NewTask = {
        id: newId(clock),
        externalId: input.externalId ?? null,
        agentIssuer: bindIssuer(input.agent.issuer, issuers),
        agentSubject: input.agent.subject,
        roles: [...new Set(input.roles)],
        status: 'open',
        createdBy: caller.actor,
        createdAt: now,
        deadline: new Date(now.getTime() + ttl * 1000),
        labels: input.labels ?? {},
        maxLeases: input.maxLeases ?? null,
        purpose: input.purpose ?? null,
        owner: input.owner ?? null,
      };
      const agents = admit ? await admit({ issuer: row.agentIssuer!, subject: row.agentSubject }, row.roles) : [];
      const decidedBy = await mayOpen(caller, row);
      const opened = await db.transaction(async (tx) => {
        const [task] = await tx
          .insert(tasks)
          .values(row)
          .onConflictDoNothing({ target: [tasks.createdBy, tasks.externalId] })
          .returning();
        if (!task) return undefined;
        await appendAudit(tx, [
          {
            at: now,
            actor: caller.actor,
            action: 'task.opened',
            target: `task:${task.id}`,
            decision: 'allow',
            details: {
              agent: input.agent,
              roles: task.roles,
              deadline: task.deadline.toISOString(),
              labels: task.labels,
              max_leases: task.maxLeases,
              external_id: task.externalId,
              ...(task.purpose !== null ? { purpose: task.purpose } : {}),
              // `owner` is the agent's owner in every event (agents/registry.ts agentDetails): the task's is its own key.
              ...(task.owner !== null ? { task_owner: task.owner } : {}),
              ...(agents.length === 1 ? agents[0] : agents.length > 1 ? { agent: agents.map((a) => a.agent), owner: agents.map((a) => a.owner) } : {}),
              ...decidedBy,
            },
            ...requestRef(caller),
          },
        ]);
        return task;
      });
      if (!opened) return { task: await openedBefore(caller, row), created: false };
      onTaskOpened?.(opened);
      return { task: opened, created: true };
    },

    /** The ids of the open tasks bound to this agent (at most `limit`): a token exchange without `task` names the one. */
    async openFor(identity: Pick<Identity, 'issuer' | 'subject'>, limit = 2): Promise<string[]> {
      const rows = await db
        .select({ id: tasks.id })
        .from(tasks)
        .where(and(eq(tasks.agentSubject, identity.subject), or(isNull(tasks.agentIssuer), eq(tasks.agentIssuer, identity.issuer)), eq(tasks.status, 'open'), gt(tasks.deadline, clock.now())))
        .limit(limit);
      return rows.map((r) => r.id);
    },

    /** The caller's own tasks with this external id (at most one). */
    async findByExternalId(caller: Caller, externalId: string): Promise<Task[]> {
      return db.select().from(tasks).where(ownWithExternalId(caller, externalId));
    },

    async get(caller: Caller, id: string): Promise<{ task: Task; leases: Lease[] }> {
      const [task] = await db.select().from(tasks).where(visibleTo(caller, id));
      if (!task) throw new AppError('task_not_found', 'no such task');
      return { task, leases: await db.select().from(leases).where(eq(leases.taskId, id)).orderBy(leases.id) };
    },

    /**
     * The tasks the caller may see (as `get` decides), newest first. `cursor` is the last id of the previous
     * page; ids from before UUIDv7 do not sort by time, so the order is (created_at, id).
     */
    async list(caller: Caller, status: TaskStatus | undefined, cursor: string | undefined, limit: number): Promise<{ items: Task[]; nextCursor: string | null }> {
      const [after] = cursor ? await db.select({ createdAt: tasks.createdAt, id: tasks.id }).from(tasks).where(visibleTo(caller, cursor)) : [];
      if (cursor && !after) return { items: [], nextCursor: null };
      const rows = await db
        .select()
        .from(tasks)
        .where(
          and(
            visible(caller),
            status ? eq(tasks.status, status) : undefined,
            after ? or(lt(tasks.createdAt, after.createdAt), and(eq(tasks.createdAt, after.createdAt), lt(tasks.id, after.id))) : undefined,
          ),
        )
        .orderBy(desc(tasks.createdAt), desc(tasks.id))
        .limit(limit + 1);
      const page = rows.slice(0, limit);
      return { items: page, nextCursor: rows.length > limit ? page.at(-1)!.id : null };
    },

    /**
     * Closes the task and moves its active leases to `revoking` in one commit,
     * then nudges the sweeper. Completing a completed task revokes nothing more.
     */
    async complete(caller: Caller, id: string, outcome: string): Promise<{ task: Task; revoking: number }> {
      const now = clock.now();
      const result = await db.transaction(async (tx) => {
        const [task] = await tx
          .update(tasks)
          .set({ status: 'completed', outcome, completedAt: now })
          .where(and(visibleTo(caller, id), eq(tasks.status, 'open')))
          .returning();
        if (!task) {
          const [existing] = await tx.select().from(tasks).where(visibleTo(caller, id));
          if (!existing) throw new AppError('task_not_found', 'no such task');
          return { task: existing, revoking: 0 };
        }
        const moved = await markRevoking(tx, {
          where: eq(leases.taskId, id),
          reason: 'task_completed',
          actor: caller.actor,
          now,
          ...requestRef(caller),
          precedingEvents: [
            {
              at: now,
              actor: caller.actor,
              action: 'task.completed',
              target: `task:${id}`,
              decision: 'allow',
              details: { outcome },
              ...requestRef(caller),
            },
          ],
        });
        return { task, revoking: moved.length };
      });
      onTaskClosed?.(id);
      if (result.revoking > 0) onRevokeRequested();
      return result;
    },
  };
}
export type TaskService = ReturnType<typeof createTaskService>;
