import { and, eq, isNull } from 'drizzle-orm';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { agentSuspensions, type AgentSuspension } from '../db/schema.js';
import { AppError } from '../errors.js';
import { newId } from '../ids.js';
import type { RegistryChange } from './change.js';
import { revokeHeld, type HolderRule } from './held.js';
import type { AgentRegistry } from './registry.js';

/** How long a suspension's own call is left to revoke what the agent holds before housekeeping looks. */
const LEFT_TO_ITS_CALL_MS = 60_000;

export interface Suspender extends RequestRef {
  actor: string;
  /** An admin (not only an owner): an admin's suspension is lifted by an admin only. */
  admin: boolean;
}

/**
 * The intervention point. A suspension commits first (a new registry version:
 * from that commit on no credential of the agent is recorded, on any replica),
 * then every lease the agent holds is moved to `revoking`, in batches, before
 * the call answers (agents/held.ts). A call that fails midway leaves the
 * suspension in force; calling it again revokes what is left, and so does the
 * sweeper's housekeeping (`revokeLeftovers`).
 * Proved by test/reliability/agent-suspend.test.ts and test/agents/registry.test.ts.
 */
export interface SuspensionDeps {
  db: Db;
  clock: Clock;
  registry: AgentRegistry;
  change: RegistryChange;
  knownIssuer: (name: string) => boolean;
  onRevokeRequested: () => void;
  /** How long any lease can live (`tasks.max_ttl`): past that, a suspension has nothing left to revoke. */
  horizonMs: number;
}

export function createSuspensions(deps: SuspensionDeps) {
  const { db, clock, registry, change, knownIssuer, onRevokeRequested } = deps;

  async function agentOrThrow(name: string) {
    const found = await registry.get(name);
    if (!found) throw new AppError('agent_not_found', 'no such agent');
    return found;
  }

  /** An agent's identities, as leases record them: its rule's issuer and subject (or pattern); none for a claims-only rule. */
  const holderOf = (match: HolderRule): HolderRule | undefined =>
    match.subject !== undefined || match.subject_pattern !== undefined ? { issuer: match.issuer, subject: match.subject, subject_pattern: match.subject_pattern } : undefined;

  async function revokeAll(suspension: AgentSuspension, by: Suspender, rule: HolderRule | undefined): Promise<number> {
    const moved = await revokeHeld(db, clock, { agent: suspension.agent ?? undefined, rule, unattributedOnly: suspension.agent !== null }, suspension.id, by);
    if (moved > 0) onRevokeRequested();
    return moved;
  }

  return {
    /**
     * Suspends an agent, then revokes every active lease it holds: those issued
     * to it, and those its identities were issued before it was registered.
     * Suspending a suspended agent keeps that suspension and revokes anything left.
     */
    async suspend(by: Suspender, name: string, reason: string): Promise<{ suspension: AgentSuspension; revoking: number }> {
      const found = await agentOrThrow(name);
      const suspension = await change(async (tx, now) => {
        const [current] = await tx.select().from(agentSuspensions).where(and(eq(agentSuspensions.agent, name), isNull(agentSuspensions.resumedAt)));
        let stored = current;
        if (!current) {
          [stored] = await tx
            .insert(agentSuspensions)
            .values({ id: newId(clock), agent: name, reason, suspendedBy: by.actor, suspendedByAdmin: by.admin, suspendedAt: now })
            .returning();
        } else if (by.admin && !current.suspendedByAdmin) {
          [stored] = await tx.update(agentSuspensions).set({ suspendedByAdmin: true }).where(eq(agentSuspensions.id, current.id)).returning();
        }
        await appendAudit(tx, [
          {
            at: now,
            actor: by.actor,
            action: 'agent.suspended',
            target: `agent:${name}`,
            decision: 'allow',
            reason,
            details: { agent: name, owner: found.agent.owner.name, suspension: stored!.id, ...(current ? { already_since: current.suspendedAt.toISOString() } : {}) },
            ...requestRef(by),
          },
        ]);
        return stored!;
      });
      const revoking = await revokeAll(suspension, by, holderOf(found.agent.match));
      const [counted] = await db.select().from(agentSuspensions).where(eq(agentSuspensions.id, suspension.id));
      return { suspension: counted ?? suspension, revoking };
    },

    /** Ends the agent's suspension (an admin's only by an admin); resuming an agent in good standing changes nothing. */
    async resume(by: Suspender, name: string, reason: string): Promise<{ suspension: AgentSuspension | undefined }> {
      const found = await agentOrThrow(name);
      return change(async (tx, now) => {
        const [current] = await tx.select().from(agentSuspensions).where(and(eq(agentSuspensions.agent, name), isNull(agentSuspensions.resumedAt)));
        if (current?.suspendedByAdmin && !by.admin) throw new AppError('not_admin', 'an admin suspended this agent: only an admin can resume it');
        const [ended] = current
          ? await tx.update(agentSuspensions).set({ resumedAt: now, resumedBy: by.actor, resumeReason: reason }).where(eq(agentSuspensions.id, current.id)).returning()
          : [];
        await appendAudit(tx, [
          { at: now, actor: by.actor, action: 'agent.resumed', target: `agent:${name}`, decision: 'allow', reason, details: { agent: name, owner: found.agent.owner.name, suspension: ended?.id ?? null }, ...requestRef(by) },
        ]);
        return { suspension: ended };
      });
    },

    /** Suspends every identity a rule matches, registered or not, then revokes the leases they hold. */
    async suspendRule(by: Suspender, rule: HolderRule, reason: string): Promise<{ suspension: AgentSuspension; revoking: number }> {
      if (!knownIssuer(rule.issuer)) throw new AppError('validation_failed', 'the rule names an issuer that is not configured');
      const suspension = await change(async (tx, now) => {
        const [stored] = await tx.insert(agentSuspensions).values({ id: newId(clock), rule, reason, suspendedBy: by.actor, suspendedByAdmin: by.admin, suspendedAt: now }).returning();
        await appendAudit(tx, [{ at: now, actor: by.actor, action: 'identity.suspended', target: `suspension:${stored!.id}`, decision: 'allow', reason, details: { rule }, ...requestRef(by) }]);
        return stored!;
      });
      const revoking = await revokeAll(suspension, by, rule);
      const [counted] = await db.select().from(agentSuspensions).where(eq(agentSuspensions.id, suspension.id));
      return { suspension: counted ?? suspension, revoking };
    },

    /** Lifts a suspension by rule. */
    async lift(by: Suspender, id: string, reason: string): Promise<AgentSuspension> {
      return change(async (tx, now) => {
        const [ended] = await tx
          .update(agentSuspensions)
          .set({ resumedAt: now, resumedBy: by.actor, resumeReason: reason })
          .where(and(eq(agentSuspensions.id, id), isNull(agentSuspensions.agent), isNull(agentSuspensions.resumedAt)))
          .returning();
        if (!ended) throw new AppError('suspension_not_found', 'no suspension by rule in force with this id');
        await appendAudit(tx, [{ at: now, actor: by.actor, action: 'identity.resumed', target: `suspension:${id}`, decision: 'allow', reason, details: { rule: ended.rule }, ...requestRef(by) }]);
        return ended;
      });
    },

    /** Suspensions by rule in force. */
    async rules(): Promise<AgentSuspension[]> {
      return db.select().from(agentSuspensions).where(and(isNull(agentSuspensions.agent), isNull(agentSuspensions.resumedAt))).orderBy(agentSuspensions.id);
    },

    /**
     * Housekeeping: a lease of a suspended agent still active (a suspension
     * whose revocation was cut short by a crash) is revoked now. A suspension
     * younger than a minute is left to its own call, which is still revoking
     * (two revokers would queue on the same rows, and split the count).
     */
    async revokeLeftovers(): Promise<number> {
      const snap = await registry.snapshot();
      const now = clock.now().getTime();
      // Settled (its call had its minute), and young enough that a lease issued before it may still live.
      const due = (s: AgentSuspension) => s.suspendedAt.getTime() <= now - LEFT_TO_ITS_CALL_MS && s.suspendedAt.getTime() > now - deps.horizonMs;
      const by = { actor: 'system:sweeper', admin: true };
      let moved = 0;
      for (const suspension of snap.suspended.values()) {
        const agent = snap.agents.get(suspension.agent!)?.agent;
        if (due(suspension)) moved += await revokeAll(suspension, by, agent ? holderOf(agent.match) : undefined);
      }
      for (const { suspension } of snap.rules) if (due(suspension)) moved += await revokeAll(suspension, by, suspension.rule!);
      return moved;
    },
  };
}
export type Suspensions = ReturnType<typeof createSuspensions>;
