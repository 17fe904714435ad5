import { eq, sql } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { tasks, type Task } from '../db/schema.js';

export interface TaskCacheOptions {
  db: Db;
  clock: Clock;
  /** How long an open task is served from memory. */
  ttlMs?: number;
  maxEntries?: number;
}

/**
 * Open tasks, read once and kept for a second, for the issuance path's policy
 * decision. Everything a decision reads of a task is fixed when it is opened
 * except its status, and the status is read again, FOR SHARE, in the commit
 * that records the lease (leases/record.ts, leases/writer.ts): a task closed on another replica
 * within the second costs a minted credential that is recorded as `revoking`
 * and revoked, never one that is released. This replica forgets a task as
 * soon as it closes it.
 */
export function createTaskCache({ db, clock, ttlMs = 1000, maxEntries = 10_000 }: TaskCacheOptions) {
  // Prepared once: building this query per request cost more than running it.
  const byId = db.select().from(tasks).where(eq(tasks.id, sql.placeholder('id'))).prepare('tl_task_by_id');
  const entries = new Map<string, { task: Task; until: number }>();

  return {
    async get(id: string): Promise<Task | undefined> {
      const now = clock.now().getTime();
      const hit = entries.get(id);
      if (hit && hit.until > now) return hit.task;
      entries.delete(id);
      const [task] = await byId.execute({ id });
      if (task?.status === 'open') {
        if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!);
        entries.set(id, { task, until: now + ttlMs });
      }
      return task;
    },
    forget(id: string): void {
      entries.delete(id);
    },
  };
}
export type TaskCache = ReturnType<typeof createTaskCache>;
