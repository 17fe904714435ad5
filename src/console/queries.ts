import { and, count, eq, inArray, isNotNull } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { leases, tasks } from '../db/schema.js';

/** The tasks approvals name, for display only (labels, external id): a read, never a decision. */
export async function taskSummaries(db: Db, ids: string[]) {
  if (ids.length === 0) return new Map();
  const rows = await db
    .select({ id: tasks.id, externalId: tasks.externalId, labels: tasks.labels, status: tasks.status, deadline: tasks.deadline })
    .from(tasks)
    .where(inArray(tasks.id, [...new Set(ids)]));
  return new Map(rows.map((r) => [r.id, r]));
}

/** How many active leases each agent holds now, for the agents page: a read, never a decision. */
export async function activeLeaseCounts(db: Db): Promise<Map<string, number>> {
  const rows = await db
    .select({ agent: leases.agent, n: count() })
    .from(leases)
    .where(and(eq(leases.status, 'active'), isNotNull(leases.agent)))
    .groupBy(leases.agent);
  return new Map(rows.map((r) => [r.agent!, Number(r.n)]));
}
