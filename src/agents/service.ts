import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { appendAudit, requestRef, type AuditInput, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { AgentConfig, AgentInput } from '../config/agents.js';
import type { IdentityRule } from '../config/identity-rule.js';
import type { Db } from '../db/client.js';
import { agents, agentSuspensions, leases, registryState, type AgentSuspension } from '../db/schema.js';
import { AppError } from '../errors.js';
import { anchoredPattern } from '../identity/match.js';
import type { Identity } from '../identity/types.js';
import { newId } from '../ids.js';
import { markRevoking } from '../leases/revoke.js';
import { mayOverlap } from './overlap.js';
import type { Agent, AgentRegistry, Resolution } from './registry.js';

export interface AgentCaller extends RequestRef {
  actor: string;
}

/** A suspension rule: an issuer and a subject or subject pattern (leases keep no claims to match against). */
export type SuspensionRule = Pick<IdentityRule, 'issuer' | 'subject' | 'subject_pattern'>;

export interface AgentServiceDeps {
  db: Db;
  clock: Clock;
  registry: AgentRegistry;
  /** Names the config knows: roles an agent's ceiling may name, issuers its rules may. */
  knownRole: (name: string) => boolean;
  knownIssuer: (name: string) => boolean;
  onRevokeRequested: () => void;
  /** Dev mode only: identities of this issuer whose subject matches are registered as agents on first sight. */
  autoRegister?: { issuer: string; subjectPattern: string; owner: AgentConfig['owner']; roles: string[] };
}

/** Who an event names as the agent and its owner. */
export const agentDetails = (agent: Resolution | undefined) =>
  agent?.kind === 'agent' ? { agent: agent.agent.name, owner: agent.agent.owner.name } : {};

/**
 * Changes to the registry. Each runs in one transaction that first moves the
 * registry's generation (registry_state, whose update waits for every commit
 * that holds it FOR SHARE and is announced to every replica), then changes
 * agents or suspensions, revokes what a suspension stops, and audits it all.
 * Lock order: the registry's row, lease rows, the audit chain's head; the
 * issuance commit takes task rows, the registry's row, the head: no cycle.
 */
export function createAgentService({ db, clock, registry, knownRole, knownIssuer, onRevokeRequested, autoRegister }: AgentServiceDeps) {
  /** Runs `fn` in a transaction that has moved the registry's generation, then reloads this replica's registry. */
  async function change<T>(fn: (tx: Db, now: Date) => Promise<T>): Promise<T> {
    const now = clock.now();
    const result = await db.transaction(async (tx) => {
      await tx
        .update(registryState)
        .set({ generation: sql`${registryState.generation} + 1` })
        .where(eq(registryState.id, 1));
      return fn(tx, now);
    });
    await registry.reload();
    return result;
  }

  function checkNames(input: AgentInput) {
    const unknownRoles = input.roles.filter((r) => !knownRole(r));
    if (unknownRoles.length > 0) throw new AppError('unknown_role', 'the ceiling names roles that are not configured', { roles: unknownRoles });
    const issuers = [input.match.issuer, ...(input.owner.principals ?? []).map((p) => p.issuer)];
    const unknownIssuers = issuers.filter((i) => !knownIssuer(i));
    if (unknownIssuers.length > 0) throw new AppError('validation_failed', 'a rule names an issuer that is not configured', { issuers: unknownIssuers });
  }

  async function create(caller: AgentCaller, input: AgentConfig): Promise<Agent> {
    checkNames(input);
    await change(async (tx, now) => {
      // Under the registry's lock: no other change can slip in between this check and the insert.
      const existing = await registry.listThrough(tx);
      if (existing.some((a) => a.name === input.name)) throw new AppError('agent_exists', `an agent named ${input.name} exists`);
      const overlapping = existing.filter((a) => mayOverlap(a.match, input.match)).map((a) => a.name);
      if (overlapping.length > 0) {
        throw new AppError('agent_ambiguous', 'an identity could match this agent and another: make the rules narrower', { agents: overlapping });
      }
      const { name, ...definition } = input;
      await tx.insert(agents).values({ name, definition, createdBy: caller.actor, createdAt: now });
      await appendAudit(tx, [
        { at: now, actor: caller.actor, action: 'agent.created', target: `agent:${name}`, decision: 'allow', details: { agent: name, owner: input.owner.name, roles: input.roles, match: input.match }, ...requestRef(caller) },
      ]);
    });
    return (await registry.get(input.name))!.agent;
  }

  /** Revokes the active leases `where` selects, as part of a suspension; returns how many. */
  async function revokeFor(tx: Db, caller: AgentCaller, now: Date, where: ReturnType<typeof and>, event: AuditInput): Promise<number> {
    const moved = await markRevoking(tx, { where, reason: 'agent_suspended', actor: caller.actor, now, ...requestRef(caller), precedingEvents: [event] });
    return moved.length;
  }

  return {
    create,

    /** Deletes an agent created through the API; the config file's cannot be. Its leases stay as they are. */
    async remove(caller: AgentCaller, name: string): Promise<void> {
      const found = await registry.get(name);
      if (!found) throw new AppError('agent_not_found', 'no such agent');
      if (found.agent.source === 'config') throw new AppError('agent_from_config', 'this agent is declared in the config file; remove it there');
      await change(async (tx, now) => {
        const gone = await tx.delete(agents).where(eq(agents.name, name)).returning({ name: agents.name });
        if (gone.length === 0) throw new AppError('agent_not_found', 'no such agent');
        await appendAudit(tx, [{ at: now, actor: caller.actor, action: 'agent.deleted', target: `agent:${name}`, decision: 'allow', details: { agent: name, owner: found.agent.owner.name }, ...requestRef(caller) }]);
      });
    },

    /**
     * Suspends an agent: from this commit on, no credential is recorded for it
     * on any replica, and every lease it holds moves to revoking. Suspending a
     * suspended agent keeps the suspension in force and revokes anything left.
     */
    async suspend(caller: AgentCaller, name: string, reason: string): Promise<{ suspension: AgentSuspension; revoking: number }> {
      const found = await registry.get(name);
      if (!found) throw new AppError('agent_not_found', 'no such agent');
      const result = await change(async (tx, now) => {
        const [current] = await tx.select().from(agentSuspensions).where(and(eq(agentSuspensions.agent, name), isNull(agentSuspensions.resumedAt)));
        const suspension = current ?? { id: newId(clock), agent: name, rule: null, reason, suspendedBy: caller.actor, suspendedAt: now, revoked: 0, resumedBy: null, resumedAt: null, resumeReason: null };
        const event: AuditInput = {
          at: now,
          actor: caller.actor,
          action: 'agent.suspended',
          target: `agent:${name}`,
          decision: 'allow',
          reason,
          details: { agent: name, owner: found.agent.owner.name, suspension: suspension.id, ...(current ? { already_since: current.suspendedAt.toISOString() } : {}) },
          ...requestRef(caller),
        };
        if (!current) await tx.insert(agentSuspensions).values(suspension);
        const revoking = await revokeFor(tx, caller, now, and(eq(leases.agent, name)), event);
        const [stored] = await tx
          .update(agentSuspensions)
          .set({ revoked: sql`${agentSuspensions.revoked} + ${revoking}` })
          .where(eq(agentSuspensions.id, suspension.id))
          .returning();
        return { suspension: stored!, revoking };
      });
      if (result.revoking > 0) onRevokeRequested();
      return result;
    },

    /** Ends the agent's suspension; resuming an agent in good standing changes nothing. */
    async resume(caller: AgentCaller, name: string, reason: string): Promise<{ suspension: AgentSuspension | undefined }> {
      const found = await registry.get(name);
      if (!found) throw new AppError('agent_not_found', 'no such agent');
      return change(async (tx, now) => {
        const [ended] = await tx
          .update(agentSuspensions)
          .set({ resumedAt: now, resumedBy: caller.actor, resumeReason: reason })
          .where(and(eq(agentSuspensions.agent, name), isNull(agentSuspensions.resumedAt)))
          .returning();
        await appendAudit(tx, [
          { at: now, actor: caller.actor, action: 'agent.resumed', target: `agent:${name}`, decision: 'allow', reason, details: { agent: name, owner: found.agent.owner.name, suspension: ended?.id ?? null }, ...requestRef(caller) },
        ]);
        return { suspension: ended };
      });
    },

    /** Suspends every identity a rule matches, registered or not, and revokes the leases they hold. */
    async suspendRule(caller: AgentCaller, rule: SuspensionRule, reason: string): Promise<{ suspension: AgentSuspension; revoking: number }> {
      if (!knownIssuer(rule.issuer)) throw new AppError('validation_failed', 'the rule names an issuer that is not configured');
      const pattern = rule.subject_pattern === undefined ? undefined : anchoredPattern(rule.subject_pattern);
      const result = await change(async (tx, now) => {
        const suspension = { id: newId(clock), agent: null, rule, reason, suspendedBy: caller.actor, suspendedAt: now, revoked: 0, resumedBy: null, resumedAt: null, resumeReason: null };
        await tx.insert(agentSuspensions).values(suspension);
        // Subject patterns are JavaScript's, not PostgreSQL's: the issuer's active leases are matched here.
        const active = await tx
          .select({ id: leases.id, subject: leases.subject })
          .from(leases)
          .where(and(eq(leases.status, 'active'), eq(leases.issuer, rule.issuer), rule.subject !== undefined ? eq(leases.subject, rule.subject) : undefined));
        const ids = active.filter((l) => !pattern || pattern.test(l.subject)).map((l) => l.id);
        const event: AuditInput = { at: now, actor: caller.actor, action: 'identity.suspended', target: `suspension:${suspension.id}`, decision: 'allow', reason, details: { rule }, ...requestRef(caller) };
        const revoking = await revokeFor(tx, caller, now, ids.length > 0 ? inArray(leases.id, ids) : sql`false`, event);
        const [stored] = await tx.update(agentSuspensions).set({ revoked: revoking }).where(eq(agentSuspensions.id, suspension.id)).returning();
        return { suspension: stored!, revoking };
      });
      if (result.revoking > 0) onRevokeRequested();
      return result;
    },

    /** Lifts a suspension by rule. */
    async lift(caller: AgentCaller, id: string, reason: string): Promise<AgentSuspension> {
      return change(async (tx, now) => {
        const [ended] = await tx
          .update(agentSuspensions)
          .set({ resumedAt: now, resumedBy: caller.actor, resumeReason: reason })
          .where(and(eq(agentSuspensions.id, id), isNull(agentSuspensions.agent), isNull(agentSuspensions.resumedAt)))
          .returning();
        if (!ended) throw new AppError('suspension_not_found', 'no suspension by rule in force with this id');
        await appendAudit(tx, [{ at: now, actor: caller.actor, action: 'identity.resumed', target: `suspension:${id}`, decision: 'allow', reason, details: { rule: ended.rule }, ...requestRef(caller) }]);
        return ended;
      });
    },

    /** Suspensions by rule in force. */
    async rules(): Promise<AgentSuspension[]> {
      return db.select().from(agentSuspensions).where(and(isNull(agentSuspensions.agent), isNull(agentSuspensions.resumedAt))).orderBy(agentSuspensions.id);
    },

    /** Who the identity is; in dev mode, an identity the dev rule matches is registered on first sight. */
    async resolve(identity: Identity): Promise<Resolution> {
      const found = await registry.resolve(identity);
      if (found.kind !== 'unregistered' || !autoRegister || found.suspension) return found;
      if (identity.issuer !== autoRegister.issuer || !anchoredPattern(autoRegister.subjectPattern).test(identity.subject)) return found;
      await autoRegisterAgent(identity.subject);
      return registry.resolve(identity);
    },

    resolveAt: registry.resolveAt,

    /**
     * May a task be opened for this agent with these roles? Its claims are not
     * known yet, so every agent the issuer and subject could be is considered:
     * none may be suspended, and every role must be in one of their ceilings.
     * Returns the agents' names for the task's audit event.
     */
    async admitTask(agent: { issuer: string; subject: string }, roles: string[], requireRegistration: boolean): Promise<string[]> {
      let found = await registry.candidates(agent.issuer, agent.subject);
      if (found.agents.length === 0 && autoRegister && agent.issuer === autoRegister.issuer && anchoredPattern(autoRegister.subjectPattern).test(agent.subject)) {
        await autoRegisterAgent(agent.subject);
        found = await registry.candidates(agent.issuer, agent.subject);
      }
      if (found.byRule) throw new AppError('agent_suspended', 'this identity is suspended: no task can be opened for it', { suspension: found.byRule.id });
      const suspended = found.agents.find((a) => found.suspension(a.name));
      if (suspended) throw new AppError('agent_suspended', `agent ${suspended.name} is suspended: no task can be opened for it`, { agent: suspended.name });
      if (found.agents.length === 0) {
        if (requireRegistration) throw new AppError('agent_not_registered', 'no registered agent has this issuer and subject');
        return [];
      }
      const outside = roles.filter((r) => !found.agents.some((a) => a.roles.includes(r)));
      if (outside.length > 0) {
        throw new AppError('role_denied', `the task names roles outside the agent's ceiling`, { roles: outside, agents: found.agents.map((a) => a.name) });
      }
      return found.agents.map((a) => a.name);
    },
  };

  async function autoRegisterAgent(subject: string): Promise<void> {
    const name = subject.toLowerCase().replace(/[^a-z0-9._-]/g, '-').slice(0, 63);
    if (!autoRegister || !/^[a-z0-9]/.test(name)) return;
    await create(
      { actor: 'system:dev-mode' },
      { name, match: { issuer: autoRegister.issuer, subject }, owner: autoRegister.owner, purpose: 'registered by dev mode on first use', roles: autoRegister.roles, labels: {} },
    ).catch((err: unknown) => {
      // Another request registered it first, or a rule already covers it: either way, resolve again.
      if (!(err instanceof AppError) || !['agent_exists', 'agent_ambiguous'].includes(err.code)) throw err;
    });
  }
}
export type AgentService = ReturnType<typeof createAgentService>;
