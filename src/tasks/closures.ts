import { eq, inArray } from 'drizzle-orm';
import { createWakeable } from '../concurrency.js';
import type { Db } from '../db/client.js';
import type { NotifyHandlers } from '../db/notify.js';
import { tasks, type Task } from '../db/schema.js';

/** While closures are not being announced, a waiter looks again this often. */
const BLIND_RECHECK_MS = 1000;

/**
 * Waits for a task to stop being open, for the gateway (docs/gateway.md): the
 * database announces every closure (tasks/cache.ts's channel), so a waiter on
 * any replica is woken at once and reads the task again; while announcements
 * may be missed it reads it every second. Nothing is held but the waiters.
 * Proved by test/gateway/closure.test.ts.
 */
export function createTaskClosures({ db }: { db: Db }) {
  const waiters = createWakeable();
  let listening = false;

  const statusOf = async (id: string) => (await db.select({ status: tasks.status }).from(tasks).where(eq(tasks.id, id)))[0]?.status;

  const handlers: NotifyHandlers = {
    message(id) {
      waiters.wake(id);
    },
    listening(on) {
      listening = on;
      // Whatever was missed meanwhile: every waiter reads its task again.
      waiters.wakeAll();
    },
  };

  return {
    handlers,
    /** The task's status once it is no longer open, or `open` when `waitMs` ran out (or `signal` aborted) first. */
    async wait(id: string, waitMs: number, signal?: AbortSignal): Promise<string> {
      const deadline = Date.now() + waitMs;
      for (;;) {
        const status = (await statusOf(id)) ?? 'unknown';
        const left = deadline - Date.now();
        if (status !== 'open' || left <= 0 || signal?.aborted) return status;
        await waiters.sleep(id, listening ? left : Math.min(left, BLIND_RECHECK_MS), signal);
      }
    },
    /** The tasks among `ids` that exist; for checking a batch in one read. */
    async tasksOf(ids: string[]): Promise<Pick<Task, 'id' | 'agentIssuer' | 'agentSubject'>[]> {
      if (ids.length === 0) return [];
      return db.select({ id: tasks.id, agentIssuer: tasks.agentIssuer, agentSubject: tasks.agentSubject }).from(tasks).where(inArray(tasks.id, ids));
    },
  };
}
export type TaskClosures = ReturnType<typeof createTaskClosures>;
