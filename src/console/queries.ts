import { inArray } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { tasks } from '../db/schema.js';

/** The tasks approvals name, for display only (labels, external id): a read, never a decision. */
export async function taskSummaries(db: Db, ids: string[]) {
  if (ids.length === 0) return new Map();
  const rows = await db
    .select({ id: tasks.id, externalId: tasks.externalId, labels: tasks.labels, status: tasks.status, deadline: tasks.deadline })
    .from(tasks)
    .where(inArray(tasks.id, [...new Set(ids)]));
  return new Map(rows.map((r) => [r.id, r]));
}
