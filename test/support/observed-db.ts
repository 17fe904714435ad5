import { PGlite } from '@electric-sql/pglite';
import { fromPglite, openDatabase, type Database } from '../../src/db/client.js';
import { runMigrations } from '../../src/db/migrate.js';
import { openTestDatabase, type Driver, type TestDatabase } from './db.js';
import { startTcpProxy } from './tcp-proxy.js';

export interface ObservedDatabase {
  /** What the broker under test is given. */
  database: Database;
  /** The same data, reached around the counter, for the test's own checks. */
  direct: Database;
  /** How many times the broker has asked the database anything so far. */
  sent(): number;
  /** Every request to the database fails as a connection refused, until `up()`. */
  down(): void;
  up(): void;
  close(): Promise<void>;
}

const PGLITE_CALLS = new Set<PropertyKey>(['query', 'exec', 'transaction', 'sql', 'execProtocol', 'execProtocolRaw']);

/**
 * A fresh test database that counts what the broker sends it and can be taken
 * away. PostgreSQL: behind a TCP proxy that counts the chunks clients write.
 * PGlite: behind a JavaScript proxy that counts calls to its query methods.
 */
export async function openObservedDatabase(driver: Driver): Promise<ObservedDatabase> {
  if (driver === 'postgres') {
    const direct: TestDatabase = await openTestDatabase('postgres');
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: 5432 });
    const url = direct.url!.replace('127.0.0.1:5432', `127.0.0.1:${proxy.port}`);
    const database = await openDatabase({ url, dataDir: '/nonexistent', poolSize: 8 });
    return {
      database,
      direct,
      sent: proxy.sent,
      down: proxy.down,
      up: proxy.up,
      async close() {
        await database.close().catch(() => {});
        await proxy.close();
        await direct.drop();
      },
    };
  }
  const client = await PGlite.create();
  const direct = fromPglite(client);
  await runMigrations(direct);
  let sent = 0;
  let away = false;
  const observed = new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (!PGLITE_CALLS.has(prop)) return value.bind(target);
      return (...args: unknown[]) => {
        sent++;
        if (away) return Promise.reject(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }));
        return value.apply(target, args);
      };
    },
  });
  return {
    database: fromPglite(observed),
    direct,
    sent: () => sent,
    down: () => void (away = true),
    up: () => void (away = false),
    close: () => client.close(),
  };
}
