import { and, asc, count, eq, inArray, isNotNull } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { leases, tasks } from '../db/schema.js';

/** The tasks approvals name, for display only (labels, external id): a read, never a decision. */
export async function taskSummaries(db: Db, ids: string[]) {
  if (ids.length === 0) return new Map();
  const rows = await db
    .select({ id: tasks.id, externalId: tasks.externalId, labels: tasks.labels, status: tasks.status, deadline: tasks.deadline, purpose: tasks.purpose, owner: tasks.owner })
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

/** Each task's leases by status, for the tasks list: a read, never a decision. */
export async function leaseCountsByTask(db: Db, ids: string[]): Promise<Map<string, { active: number; total: number }>> {
  const out = new Map<string, { active: number; total: number }>();
  if (ids.length === 0) return out;
  const rows = await db
    .select({ task: leases.taskId, status: leases.status, n: count() })
    .from(leases)
    .where(inArray(leases.taskId, [...new Set(ids)]))
    .groupBy(leases.taskId, leases.status);
  for (const r of rows) {
    const c = out.get(r.task) ?? { active: 0, total: 0 };
    c.total += Number(r.n);
    if (r.status === 'active') c.active += Number(r.n);
    out.set(r.task, c);
  }
  return out;
}

/** The active leases of the tasks approvals name (what the task already holds), for display only: a read, never a decision. */
export async function activeLeasesByTask(db: Db, ids: string[]): Promise<Map<string, { id: string; role: string; expiresAt: Date }[]>> {
  const out = new Map<string, { id: string; role: string; expiresAt: Date }[]>();
  if (ids.length === 0) return out;
  const rows = await db
    .select({ id: leases.id, task: leases.taskId, role: leases.role, expiresAt: leases.expiresAt })
    .from(leases)
    .where(and(inArray(leases.taskId, [...new Set(ids)]), eq(leases.status, 'active')))
    .orderBy(asc(leases.expiresAt))
    .limit(500);
  for (const r of rows) out.set(r.task, [...(out.get(r.task) ?? []), { id: r.id, role: r.role, expiresAt: r.expiresAt }]);
  return out;
}
