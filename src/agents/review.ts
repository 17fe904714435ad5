import { and, count, desc, eq, gte, isNotNull, isNull, max, notInArray, or } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { agentSuspensions, leases, type AgentSuspension, type Lease } from '../db/schema.js';
import { idFloor } from '../ids.js';
import { NEVER_RELEASED } from '../policy/limits.js';
import type { Agent } from './registry.js';

/** How far back the review looks at what an agent held. */
export const REVIEW_DAYS = 30;

export interface AgentUse {
  /** Roles held in the window, with how many credentials of each were issued. */
  held: { role: string; count: number }[];
  /** Roles of the ceiling never held in the window: the reach the agent has and does not use. */
  unused: string[];
}

const since = (now: Date) => idFloor(new Date(now.getTime() - REVIEW_DAYS * 86_400_000));
/** Held: a credential the agent received (one refused at commit never reached it). */
const received = or(isNull(leases.reason), notInArray(leases.reason, [...NEVER_RELEASED]));

const useOf = (agent: Agent, held: { role: string; count: number }[]): AgentUse => ({
  held: held.sort((a, b) => b.count - a.count || (a.role < b.role ? -1 : 1)),
  unused: agent.roles.filter((r) => !held.some((h) => h.role === r)),
});

/**
 * What every agent held in the last 30 days against its ceiling. Lease ids
 * are UUIDv7, ordered by time, so the window is a range of the (agent, id)
 * index; the report reads the window's leases once.
 */
export async function agentsUse(db: Db, agents: Agent[], now: Date): Promise<Map<string, AgentUse>> {
  const rows = await db
    .select({ agent: leases.agent, role: leases.role, n: count() })
    .from(leases)
    .where(and(isNotNull(leases.agent), gte(leases.id, since(now)), received))
    .groupBy(leases.agent, leases.role);
  return new Map(
    agents.map((a) => [a.name, useOf(a, rows.filter((r) => r.agent === a.name).map((r) => ({ role: r.role, count: Number(r.n) })))]),
  );
}

export interface AgentReview extends AgentUse {
  lastActivity: Date | null;
  activeCount: number;
  /** The newest active leases (at most 100). */
  active: Lease[];
  /** Suspensions, newest first (at most 50). */
  history: AgentSuspension[];
}

/** One agent's review: its use against its ceiling, its last activity, what it holds now and its suspensions. */
export async function reviewAgent(db: Db, agent: Agent, now: Date): Promise<AgentReview> {
  const mine = eq(leases.agent, agent.name);
  const held = await db
    .select({ role: leases.role, n: count() })
    .from(leases)
    .where(and(mine, gte(leases.id, since(now)), received))
    .groupBy(leases.role);
  const [last] = await db.select({ at: max(leases.issuedAt) }).from(leases).where(and(mine, received));
  const activeWhere = and(mine, eq(leases.status, 'active'));
  const [activeCount] = await db.select({ n: count() }).from(leases).where(activeWhere);
  const active = await db.select().from(leases).where(activeWhere).orderBy(desc(leases.id)).limit(100);
  const history = await db.select().from(agentSuspensions).where(eq(agentSuspensions.agent, agent.name)).orderBy(desc(agentSuspensions.suspendedAt)).limit(50);
  return {
    ...useOf(agent, held.map((h) => ({ role: h.role, count: Number(h.n) }))),
    lastActivity: last?.at ? new Date(last.at) : null,
    activeCount: Number(activeCount?.n ?? 0),
    active,
    history,
  };
}
