import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { postgresListener } from '../../src/db/notify.js';
import { openTestDatabase } from '../support/db.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

describe('listening on PostgreSQL through a connection that dies silently', () => {
  it('finds it by its heartbeat, says so, listens again on a new connection, and never passes a heartbeat on', { timeout: 60_000 }, async () => {
    const database = await openTestDatabase('postgres');
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: 5432 });
    const url = new URL(database.url!);
    url.host = `127.0.0.1:${proxy.port}`;
    const messages: string[] = [];
    const waiting: { match: (e: string) => boolean; resolve: () => void }[] = [];
    const event = (e: string) => {
      for (const w of waiting.filter((w) => w.match(e))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    };
    const next = (match: (e: string) => boolean) => new Promise<void>((resolve) => waiting.push({ match, resolve }));
    const reasons: string[] = [];
    const listening = next((e) => e === 'on');
    const listener = postgresListener(
      (hooks) => postgres(url.toString(), { ...hooks, max: 1, connect_timeout: 2, idle_timeout: 0, max_lifetime: null, fetch_types: false, onnotice: () => {} }),
      'tl_test_channel',
      {
        message(payload) {
          messages.push(payload);
          event(`message ${payload}`);
        },
        listening(on, reason) {
          if (reason) reasons.push(reason);
          event(on ? 'on' : 'off');
        },
      },
      { retryMs: 100, heartbeatMs: 200, heartbeatTimeoutMs: 500 },
    );
    try {
      await listening;
      const heard = (payload: string) => next((e) => e === `message ${payload}`);
      let arrived = heard('task-1');
      await database.db.execute(sql`select pg_notify('tl_test_channel', 'task-1')`);
      await arrived;

      // Nothing passes and nothing closes: only the heartbeat can tell.
      const off = next((e) => e === 'off');
      proxy.stall();
      await off;
      expect(reasons[0]).toMatch(/heartbeat/);
      const back = next((e) => e === 'on');
      proxy.unstall();
      await back;

      arrived = heard('task-2');
      await database.db.execute(sql`select pg_notify('tl_test_channel', 'task-2')`);
      await arrived;
      // Heartbeats went back and forth all along; none was taken for a closure.
      expect(messages).toEqual(['task-1', 'task-2']);
    } finally {
      await listener.close();
      await proxy.close();
      await database.drop();
    }
  });
});
