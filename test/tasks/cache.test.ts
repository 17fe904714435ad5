import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execRows } from '../../src/db/client.js';
import type { Listener } from '../../src/db/notify.js';
import { tasks } from '../../src/db/schema.js';
import { createTaskCache, TASK_CLOSED_CHANNEL, type TaskCache } from '../../src/tasks/cache.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

/** Resolves at the next call of `on(value)` that `match` accepts. */
function signals<T>() {
  const waiting: { match: (v: T) => boolean; resolve: () => void }[] = [];
  return {
    on(value: T) {
      for (const w of waiting.filter((w) => w.match(value))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    },
    next: (match: (v: T) => boolean) => new Promise<void>((resolve) => waiting.push({ match, resolve })),
  };
}

describe.each(DRIVERS)('the task cache on %s', (driver) => {
  let database!: TestDatabase;
  let cache!: TaskCache;
  let listener!: Listener;
  let now = Date.now();
  const clock = { now: () => new Date(now) };
  const forgotten = signals<string>();
  const heard: string[] = [];
  const states = signals<boolean>();
  const listening = states.next((on) => on);

  const open = async (id: string) => {
    const at = new Date();
    await database.db.insert(tasks).values({ id, agentSubject: 'a', roles: ['r'], status: 'open', createdBy: 'test', createdAt: at, deadline: new Date(at.getTime() + 3600_000) });
  };

  beforeAll(async () => {
    database = await openTestDatabase(driver);
    cache = createTaskCache({ db: database.db, clock });
    listener = database.listen(TASK_CLOSED_CHANNEL, {
      message(id) {
        cache.handlers.message(id);
        heard.push(id);
        forgotten.on(id);
      },
      listening(on) {
        cache.handlers.listening(on);
        states.on(on);
      },
    });
    await listening;
  }, 60_000);
  afterAll(async () => {
    await listener?.close();
    await database?.drop();
  });

  it('keeps an open task for minutes while closures are announced, and forgets it when any connection closes it', async () => {
    await open(`${driver}-closed-by-sql`);
    expect((await cache.get(`${driver}-closed-by-sql`))?.status).toBe('open');
    now += 240_000;
    // Not read again: the row could say anything now, the cache answers.
    expect((await cache.get(`${driver}-closed-by-sql`))?.status).toBe('open');

    // As another replica would, or an operator by hand: the trigger announces it on commit.
    const announced = forgotten.next((id) => id === `${driver}-closed-by-sql`);
    await database.db.update(tasks).set({ status: 'completed' }).where(eq(tasks.id, `${driver}-closed-by-sql`));
    await announced;
    expect((await cache.get(`${driver}-closed-by-sql`))?.status).toBe('completed');
  });

  it('announces a deleted open task, and nothing for other changes', async () => {
    await open(`${driver}-deleted`);
    await open(`${driver}-relabelled`);
    expect(await cache.get(`${driver}-deleted`)).toBeDefined();
    const announced = forgotten.next((id) => id === `${driver}-deleted`);
    await database.db.update(tasks).set({ labels: { team: 'x' } }).where(eq(tasks.id, `${driver}-relabelled`));
    await database.db.delete(tasks).where(eq(tasks.id, `${driver}-deleted`));
    await announced;
    expect(await cache.get(`${driver}-deleted`)).toBeUndefined();
    // Announcements arrive in commit order: the relabelling, committed first, would have come before.
    expect(heard).not.toContain(`${driver}-relabelled`);
  });

  it('does not keep a read that an announcement overtook', async () => {
    await open(`${driver}-overtaken`);
    const size = cache.size;
    const read = cache.get(`${driver}-overtaken`);
    cache.handlers.message('some-other-task');
    expect((await read)?.status).toBe('open');
    expect(cache.size).toBe(size);
  });

  it('remembers a task this replica opened, and keeps nothing that is not open', () => {
    const task = { id: `${driver}-remembered`, externalId: null, agentIssuer: null, agentSubject: 'a', roles: ['r'], status: 'open' as const, outcome: null, createdBy: 't', createdAt: clock.now(), deadline: clock.now(), completedAt: null, labels: {}, maxLeases: null, purpose: null, owner: null };
    const size = cache.size;
    cache.remember({ ...task, id: `${driver}-not-open`, status: 'completed' });
    expect(cache.size).toBe(size);
    cache.remember(task);
    expect(cache.size).toBe(size + 1);
  });

  it('keeps tasks one second, and empties itself, while announcements may be missed', async () => {
    await open(`${driver}-blind`);
    cache.handlers.listening(false);
    expect(cache.size).toBe(0);
    expect(await cache.get(`${driver}-blind`)).toBeDefined();
    expect(cache.size).toBe(1);
    now += 1001;
    await database.db.update(tasks).set({ status: 'completed' }).where(eq(tasks.id, `${driver}-blind`));
    // Expired: read again (the announcement may not have arrived, and is not needed).
    expect((await cache.get(`${driver}-blind`))?.status).toBe('completed');
    cache.handlers.listening(true);
  });

  // PGlite runs in this process: its one connection cannot be cut.
  if (driver === 'postgres')
    it('listens again on a new connection when its connection is cut, and starts over', async () => {
      const lost = states.next((on) => !on);
      const back = states.next((on) => on);
      const [row] = await execRows<{ n: number }>(
        database.db,
        sql`select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen%'`,
      );
      expect(row!.n).toBe(1);
      await lost;
      await back;
      await open(`${driver}-after-reconnect`);
      expect(await cache.get(`${driver}-after-reconnect`)).toBeDefined();
      const announced = forgotten.next((id) => id === `${driver}-after-reconnect`);
      await database.db.update(tasks).set({ status: 'completed' }).where(eq(tasks.id, `${driver}-after-reconnect`));
      await announced;
    });
});
