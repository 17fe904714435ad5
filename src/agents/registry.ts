import { eq, isNull } from 'drizzle-orm';
import { AgentSchema, type AgentConfig } from '../config/agents.js';
import { IdentityRuleSchema, type IdentityRule } from '../config/identity-rule.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import type { NotifyHandlers } from '../db/notify.js';
import { agents, agentSuspensions, registryState, type AgentSuspension } from '../db/schema.js';
import { anchoredPattern, compileRule, compileRules, matchAll, type IdentityMatcher } from '../identity/match.js';
import type { Identity } from '../identity/types.js';
import type { Logger } from '../log.js';

/** The channel on which the database announces a new registry generation (migration 0009). */
export const REGISTRY_CHANNEL = 'tasklease_agents';

export interface Agent extends AgentConfig {
  source: 'config' | 'api';
  createdBy: string | null;
  createdAt: Date | null;
}

/**
 * Who an identity is, as the registry at `generation` says. `refused`: the
 * identity matches two agents, or an agent whose stored definition cannot be
 * read (fail closed; `why` says which).
 */
export type Resolution = { generation: number } & (
  | { kind: 'agent'; agent: Agent; suspension?: AgentSuspension }
  | { kind: 'unregistered'; suspension?: AgentSuspension }
  | { kind: 'refused'; names: string[]; why: string }
);

/** Who an event names as the agent and its owner. */
export const agentDetails = (agent: Resolution | undefined) =>
  agent?.kind === 'agent' ? { agent: agent.agent.name, owner: agent.agent.owner.name } : {};

interface Compiled {
  agent: Agent;
  /** The stored definition no longer parses: whoever its rule matches is refused. */
  unreadable?: boolean;
  matches: IdentityMatcher;
  owners: IdentityMatcher;
  /** Could an identity with this issuer and subject match (its claims unknown)? */
  couldMatch: (issuer: string, subject: string) => boolean;
}

/** Exported because the broker's type names it (`tsc -p tsconfig.build.json` emits declarations). */
export interface Snapshot {
  generation: number;
  agents: Map<string, Compiled>;
  /** In force, by agent name. */
  suspended: Map<string, AgentSuspension>;
  /** In force, by identity rule. */
  rules: { suspension: AgentSuspension; matches: IdentityMatcher; couldMatch: (issuer: string, subject: string) => boolean }[];
  loadedAt: number;
  /** When its read began, in this replica's order of reads: a snapshot replaces only an older one. */
  stamp: number;
}

/** A rule without its claims: whether a subject of an issuer could match it. */
function subjectRule(rule: Pick<IdentityRule, 'issuer' | 'subject' | 'subject_pattern'>) {
  const pattern = rule.subject_pattern === undefined ? undefined : anchoredPattern(rule.subject_pattern);
  return (issuer: string, subject: string) =>
    issuer === rule.issuer && (rule.subject === undefined || rule.subject === subject) && (pattern === undefined || pattern.test(subject));
}

function compile(agent: Agent): Compiled {
  return { agent, matches: compileRule(agent.match), owners: compileRules(agent.owner.principals), couldMatch: subjectRule(agent.match) };
}

export interface RegistryOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  /** The agents of the config file: every replica has the same, and the API cannot change them. */
  configured: AgentConfig[];
  /** How long a snapshot is trusted while changes may not be announced. */
  blindTtlMs?: number;
}

/**
 * The agent registry as this replica knows it: the config file's agents,
 * those admins created through the API, and the suspensions in force, all
 * tagged with the registry's generation (registry_state). It is reloaded when
 * the database announces a new generation, and while announcements may be
 * missed, whenever the snapshot is more than a second old.
 *
 * The snapshot serves decisions; it never has the last word. The commit that
 * records a lease compares the generation the decision was made on with the
 * database's, under a lock a change must wait for (leases/writer.ts), and
 * decides again on the new registry when they differ. So a suspension's
 * answer is never followed by a credential it should have stopped
 * (test/reliability/agent-suspend.test.ts).
 */
export function createAgentRegistry({ db, clock, log, configured, blindTtlMs = 1000 }: RegistryOptions) {
  const fromConfig = configured.map((a) => compile({ ...a, source: 'config', createdBy: null, createdAt: null }));
  let current: Snapshot | undefined;
  let reads = 0;
  /** Keeps `snap` unless a read that began later is already in place (versions are random: only read order says newer). */
  const install = (snap: Snapshot): Snapshot => {
    if (!current || snap.stamp > current.stamp) current = snap;
    return current;
  };
  let listening = false;
  let loading: Promise<Snapshot> | undefined;
  let queued: Promise<Snapshot> | undefined;

  /**
   * Generation first: data read after it is at least as new, so a stale tag
   * only ever causes a re-check. The generation is a version, compared for
   * equality only (a restored database may hold an older one).
   */
  async function read(from: Db): Promise<Snapshot> {
    const stamp = ++reads;
    const [state] = await from.select().from(registryState).where(eq(registryState.id, 1));
    // Without its row, nothing orders a change and a commit: refuse to decide (migration 0009 inserts it).
    if (!state) throw new Error('registry_state has no row: the agent registry cannot be read');
    const rows = await from.select().from(agents);
    const suspensions = await from.select().from(agentSuspensions).where(isNull(agentSuspensions.resumedAt));
    const map = new Map(fromConfig.map((c) => [c.agent.name, c]));
    for (const row of rows) {
      if (map.has(row.name)) {
        log.warn({ agent: row.name }, 'an agent created through the API has the name of one in the config file; the config file wins');
        continue;
      }
      const parsed = AgentSchema.safeParse({ ...row.definition, name: row.name });
      if (parsed.success) {
        map.set(row.name, compile({ ...parsed.data, source: 'api', createdBy: row.createdBy, createdAt: row.createdAt }));
        continue;
      }
      // Fail closed: an agent that cannot be read refuses whoever its rule still matches (a rule that cannot be read either matches nobody).
      const match = IdentityRuleSchema.safeParse((row.definition as { match?: unknown }).match);
      log.error({ agent: row.name }, 'a stored agent is not valid: the identities its rule matches are refused until it is fixed');
      if (match.success) {
        const stub = { name: row.name, match: match.data, owner: { name: '?', contact: '?', principals: [] }, purpose: '?', roles: [], labels: {} };
        map.set(row.name, { ...compile({ ...stub, source: 'api', createdBy: row.createdBy, createdAt: row.createdAt }), unreadable: true });
      }
    }
    return {
      generation: Number(state.generation),
      agents: map,
      suspended: new Map(suspensions.flatMap((s) => (s.agent ? [[s.agent, s] as const] : []))),
      rules: suspensions.flatMap((s) => (s.rule ? [{ suspension: s, matches: compileRule(s.rule), couldMatch: subjectRule(s.rule) }] : [])),
      loadedAt: clock.now().getTime(),
      stamp,
    };
  }

  /**
   * One load at a time. A load already under way may have read the database
   * before the caller's change committed, so a caller gets the next load,
   * shared by everyone who asks meanwhile.
   */
  function reload(): Promise<Snapshot> {
    if (!loading) {
      loading = read(db)
        .then(install)
        .finally(() => {
          loading = undefined;
        });
      return loading;
    }
    queued ??= loading
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        return reload();
      });
    return queued;
  }

  async function snapshot(): Promise<Snapshot> {
    if (current && (listening || clock.now().getTime() - current.loadedAt < blindTtlMs)) return current;
    return reload();
  }

  function resolveIn(snap: Snapshot, identity: Identity): Resolution {
    const generation = snap.generation;
    // Loops, not find/filter over matchers: see matchAll (identity/match.ts).
    const byRule = matchAll(snap.rules, identity)[0]?.suspension;
    const found = matchAll(snap.agents.values(), identity);
    if (found.length > 1) return { generation, kind: 'refused', names: found.map((c) => c.agent.name).sort(), why: 'the identity matches several agents' };
    if (found[0]?.unreadable) return { generation, kind: 'refused', names: [found[0].agent.name], why: "the agent's stored definition cannot be read" };
    const only = found[0];
    if (!only) return { generation, kind: 'unregistered', ...(byRule ? { suspension: byRule } : {}) };
    const suspension = snap.suspended.get(only.agent.name) ?? byRule;
    return { generation, kind: 'agent', agent: only.agent, ...(suspension ? { suspension } : {}) };
  }

  const handlers: NotifyHandlers = {
    message(payload) {
      if (!current || Number(payload) !== current.generation) void reload().catch(() => {});
    },
    listening(on) {
      listening = on;
      // Whatever was announced while nobody listened: read it all again.
      if (on) void reload().catch(() => {});
    },
  };

  return {
    /** The registry as of now (within the announcement delay). */
    snapshot,
    reload,
    async resolve(identity: Identity): Promise<Resolution> {
      return resolveIn(await snapshot(), identity);
    },
    /**
     * Decides again at the database's `generation` or later, reading the registry
     * through `through` (the commit's own transaction, which holds the lock).
     */
    async resolveAt(identity: Identity, generation: number, through: Db): Promise<Resolution> {
      // Never the pool here: on PGlite the commit's transaction holds the one connection.
      let snap = current;
      if (!snap || snap.generation !== generation) {
        // `through` holds the registry's row FOR SHARE and has changed nothing: what it reads is committed.
        snap = await read(through);
        install(snap);
      }
      return resolveIn(snap, identity);
    },
    /** Every agent, read through `through` (a transaction that holds the registry's lock to change it); not kept. */
    async listThrough(through: Db): Promise<Agent[]> {
      return [...(await read(through)).agents.values()].map((c) => c.agent);
    },
    /** Agents an identity of this issuer and subject could be, whatever its claims; and a suspension by rule that applies. */
    async candidates(issuer: string, subject: string) {
      const snap = await snapshot();
      const agentsFound = [...snap.agents.values()].filter((c) => c.couldMatch(issuer, subject)).map((c) => c.agent);
      return {
        generation: snap.generation,
        agents: agentsFound,
        suspension: (name: string) => snap.suspended.get(name),
        byRule: snap.rules.find((r) => r.couldMatch(issuer, subject))?.suspension,
      };
    },
    async list(): Promise<Agent[]> {
      return [...(await snapshot()).agents.values()].map((c) => c.agent).sort((a, b) => (a.name < b.name ? -1 : 1));
    },
    /** One agent and its suspension; an agent this replica has not heard of yet is looked for in the database once. */
    async get(name: string): Promise<{ agent: Agent; suspension?: AgentSuspension } | undefined> {
      let snap = await snapshot();
      if (!snap.agents.has(name)) snap = await reload();
      const found = snap.agents.get(name);
      if (!found) return undefined;
      const suspension = snap.suspended.get(name);
      return { agent: found.agent, ...(suspension ? { suspension } : {}) };
    },
    /** May this identity act as the agent's owner (suspend, resume, review)? */
    async isOwner(name: string, identity: Identity | undefined): Promise<boolean> {
      if (!identity) return false;
      return (await snapshot()).agents.get(name)?.owners(identity) ?? false;
    },
    /** The agents this identity is an owner of, by the same owner principals isOwner matches (the console admits their owners). */
    async ownedBy(identity: Identity | undefined): Promise<string[]> {
      if (!identity) return [];
      const owned: string[] = [];
      for (const c of (await snapshot()).agents.values()) if (c.owners(identity)) owned.push(c.agent.name);
      return owned;
    },
    /** For Database.listen(REGISTRY_CHANNEL, ...). */
    handlers,
  };
}
export type AgentRegistry = ReturnType<typeof createAgentRegistry>;
