import { and, eq, isNull } from 'drizzle-orm';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { AgentConfig, AgentInput } from '../config/agents.js';
import type { Db } from '../db/client.js';
import { agents, agentSuspensions } from '../db/schema.js';
import { AppError } from '../errors.js';
import { anchoredPattern } from '../identity/match.js';
import type { Identity } from '../identity/types.js';
import type { Logger } from '../log.js';
import { createRegistryChange } from './change.js';
import { agentRuleProblems } from './overlap.js';
import type { Agent, AgentRegistry, Resolution } from './registry.js';
import { createSuspensions } from './suspend.js';

export interface AgentCaller extends RequestRef {
  actor: string;
  admin: boolean;
}

export interface AgentServiceDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  registry: AgentRegistry;
  /** Names the config knows: roles an agent's ceiling may name, issuers its rules may. */
  knownRole: (name: string) => boolean;
  knownIssuer: (name: string) => boolean;
  onRevokeRequested: () => void;
  /** Dev mode only: identities of this issuer whose subject matches are registered as agents on first sight. */
  autoRegister?: { issuer: string; subjectPattern: string; owner: AgentConfig['owner']; roles: string[] };
  /** How long any lease can live (`tasks.max_ttl`, ms). */
  horizonMs: number;
}

/**
 * The registry's write side: agents created and deleted through the API,
 * suspensions (agents/suspend.ts), and the questions a decision asks (who is
 * this identity, may a task be opened for it). Every change runs through
 * agents/change.ts: one transaction that first gives the registry a new
 * version. Lock order: the registry's row, lease rows (in id order), the
 * audit chain's head; an issuance commit takes task rows, the registry's row
 * FOR SHARE, the head.
 */
export function createAgentService({ db, clock, log, registry, knownRole, knownIssuer, onRevokeRequested, autoRegister, horizonMs }: AgentServiceDeps) {
  const change = createRegistryChange({ db, clock, registry, log });
  const suspensions = createSuspensions({ db, clock, registry, change, knownIssuer, onRevokeRequested, horizonMs });

  function checkNames(input: AgentInput) {
    const unknownRoles = input.roles.filter((r) => !knownRole(r));
    if (unknownRoles.length > 0) throw new AppError('unknown_role', 'the ceiling names roles that are not configured', { roles: unknownRoles });
    const issuers = [input.match.issuer, ...(input.owner.principals ?? []).map((p) => p.issuer)];
    const unknownIssuers = issuers.filter((i) => !knownIssuer(i));
    if (unknownIssuers.length > 0) throw new AppError('validation_failed', 'a rule names an issuer that is not configured', { issuers: unknownIssuers });
  }

  async function create(caller: Pick<AgentCaller, 'actor'> & RequestRef, input: AgentConfig): Promise<Agent> {
    checkNames(input);
    await change(async (tx, now) => {
      // Under the registry's lock: no other change can slip in between this check and the insert.
      const existing = await registry.listThrough(tx);
      if (existing.some((a) => a.name === input.name)) throw new AppError('agent_exists', `an agent named ${input.name} exists`);
      const { overlapping, ownerIsAgent } = agentRuleProblems(input, existing);
      if (overlapping.length > 0) {
        throw new AppError('agent_ambiguous', 'an identity could match this agent and another: make the rules narrower', { agents: overlapping });
      }
      if (ownerIsAgent.length > 0) {
        throw new AppError('validation_failed', "an owner principal could be an agent's identity: an agent must not be able to resume itself or another", { agents: ownerIsAgent });
      }
      const { name, ...definition } = input;
      await tx.insert(agents).values({ name, definition, createdBy: caller.actor, createdAt: now });
      await appendAudit(tx, [
        { at: now, actor: caller.actor, action: 'agent.created', target: `agent:${name}`, decision: 'allow', details: { agent: name, owner: input.owner.name, roles: input.roles, match: input.match }, ...requestRef(caller) },
      ]);
    });
    return (await registry.get(input.name))!.agent;
  }

  const devSubject = (issuer: string, subject: string) => !!autoRegister && issuer === autoRegister.issuer && anchoredPattern(autoRegister.subjectPattern).test(subject);

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

  return {
    ...suspensions,
    create,

    /**
     * The agent, for an admin or one of its owners (its owner principals); anyone else gets
     * not_agent_owner whether the agent exists or not, so it learns nothing of the registry.
     * GET and suspend/resume of /v1/agents/{name} and the console's agent pages ask this.
     */
    async forAdminOrOwner(viewer: { admin: boolean; identity?: Identity | undefined }, name: string) {
      if (!viewer.admin && !(await registry.isOwner(name, viewer.identity))) throw new AppError('not_agent_owner', "this is for admins and the agent's owners");
      const found = await registry.get(name);
      if (!found) throw new AppError('agent_not_found', 'no such agent');
      return found;
    },

    /** Deletes an agent created through the API (the config file's cannot be), ending its suspension; its leases stay as they are. */
    async remove(caller: AgentCaller, name: string): Promise<void> {
      const found = await registry.get(name);
      if (!found) throw new AppError('agent_not_found', 'no such agent');
      if (found.agent.source === 'config') throw new AppError('agent_from_config', 'this agent is declared in the config file; remove it there');
      await change(async (tx, now) => {
        const gone = await tx.delete(agents).where(eq(agents.name, name)).returning({ name: agents.name });
        if (gone.length === 0) throw new AppError('agent_not_found', 'no such agent');
        // A later agent of the same name starts in good standing; the history stays.
        await tx
          .update(agentSuspensions)
          .set({ resumedAt: now, resumedBy: caller.actor, resumeReason: 'agent deleted' })
          .where(and(eq(agentSuspensions.agent, name), isNull(agentSuspensions.resumedAt)));
        await appendAudit(tx, [{ at: now, actor: caller.actor, action: 'agent.deleted', target: `agent:${name}`, decision: 'allow', details: { agent: name, owner: found.agent.owner.name }, ...requestRef(caller) }]);
      });
    },

    /** Who the identity is; in dev mode, an identity the dev rule matches is registered on first sight. */
    async resolve(identity: Identity): Promise<Resolution> {
      const found = await registry.resolve(identity);
      if (found.kind !== 'unregistered' || found.suspension || !devSubject(identity.issuer, identity.subject)) return found;
      await autoRegisterAgent(identity.subject);
      return registry.resolve(identity);
    },

    resolveAt: registry.resolveAt,

    /**
     * May a task be opened for this agent with these roles? Its claims are not
     * known yet, so every agent the issuer and subject could be is a
     * candidate: one whose rule names this subject (exactly or by pattern)
     * must not be suspended, and every role must be in a candidate's ceiling.
     * (Its credentials are decided on the full identity, at commit too.)
     * Returns the candidates' names and owners for the task's audit event.
     */
    async admitTask(agent: { issuer: string; subject: string }, roles: string[], requireRegistration: boolean): Promise<{ agent: string; owner: string }[]> {
      let found = await registry.candidates(agent.issuer, agent.subject);
      if (found.agents.length === 0 && devSubject(agent.issuer, agent.subject)) {
        await autoRegisterAgent(agent.subject);
        found = await registry.candidates(agent.issuer, agent.subject);
      }
      if (found.byRule) throw new AppError('agent_suspended', 'this identity is suspended: no task can be opened for it', { suspension: found.byRule.id });
      const named = found.agents.filter((a) => a.match.subject !== undefined || a.match.subject_pattern !== undefined);
      const suspended = named.find((a) => found.suspension(a.name));
      if (suspended) throw new AppError('agent_suspended', `agent ${suspended.name} is suspended: no task can be opened for it`, { agent: suspended.name });
      if (found.agents.length === 0) {
        if (requireRegistration) throw new AppError('agent_not_registered', 'no registered agent has this issuer and subject');
        return [];
      }
      const outside = roles.filter((r) => !found.agents.some((a) => a.roles.includes(r)));
      if (outside.length > 0) {
        throw new AppError('role_denied', `the task names roles outside the agent's ceiling`, { roles: outside, agents: found.agents.map((a) => a.name) });
      }
      return found.agents.map((a) => ({ agent: a.name, owner: a.owner.name }));
    },
  };
}
export type AgentService = ReturnType<typeof createAgentService>;
