import { eq, sql } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import type { NotifyHandlers } from '../db/notify.js';
import { tasks, type Task } from '../db/schema.js';

/** The channel on which the database announces tasks that stop being open (migration 0004). */
export const TASK_CLOSED_CHANNEL = 'tasklease_task_closed';

export interface TaskCacheOptions {
  db: Db;
  clock: Clock;
  /** How long an open task is served from memory while closures are being announced. */
  ttlMs?: number;
  /** How long otherwise (before the first announcement arrives, or while they may be missed). */
  blindTtlMs?: number;
  maxEntries?: number;
}

/**
 * Open tasks, kept in memory for the issuance path's policy decision.
 * Everything a decision reads of a task is fixed when it is opened except its
 * status, and the status is read again, FOR SHARE, in the commit that records
 * the lease (leases/record.ts, leases/writer.ts). So a stale entry can never
 * release a credential: it costs one minted credential that is recorded as
 * `revoking` and revoked, after which the issuer forgets the task.
 *
 * A task is forgotten as soon as this replica closes it, and, through the
 * database's notification when a task stops being open (`handlers`, wired to
 * Database.listen), as soon as any replica or any UPDATE closes it. While
 * those notifications flow, an entry lives `ttlMs` (5 minutes); while they
 * may be missed, `blindTtlMs` (1 second), and every change of state empties
 * the cache. A read that a notification overtook is not kept.
 */
export function createTaskCache({ db, clock, ttlMs = 300_000, blindTtlMs = 1000, maxEntries = 10_000 }: TaskCacheOptions) {
  // Prepared once: building this query per request cost more than running it.
  const byId = db.select().from(tasks).where(eq(tasks.id, sql.placeholder('id'))).prepare('tl_task_by_id');
  const entries = new Map<string, { task: Task; until: number }>();
  let listening = false;
  // Moves on every forget: a read that started before one may have missed it.
  let generation = 0;

  function keep(task: Task): void {
    if (task.status !== 'open') return;
    entries.delete(task.id);
    if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!);
    entries.set(task.id, { task, until: clock.now().getTime() + (listening ? ttlMs : blindTtlMs) });
  }
  function forget(id: string): void {
    generation++;
    entries.delete(id);
  }

  const handlers: NotifyHandlers = {
    message: forget,
    listening(on) {
      listening = on;
      generation++;
      entries.clear();
    },
  };

  return {
    async get(id: string): Promise<Task | undefined> {
      const hit = entries.get(id);
      if (hit && hit.until > clock.now().getTime()) return hit.task;
      entries.delete(id);
      const seen = generation;
      const [task] = await byId.execute({ id });
      if (task && generation === seen) keep(task);
      return task;
    },
    /** A task this replica has just opened (committed). */
    remember: keep,
    forget,
    /** For Database.listen(TASK_CLOSED_CHANNEL, ...). */
    handlers,
    get size() {
      return entries.size;
    },
  };
}
export type TaskCache = ReturnType<typeof createTaskCache>;
