import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { sql, type SQL } from 'drizzle-orm';
import postgres from 'postgres';
import { lockDataDir } from './data-dir-lock.js';
import { pgliteListener, postgresListener, type Listener, type NotifyHandlers } from './notify.js';
import { rowsOf } from './rows.js';
import { schema } from './schema.js';
import { pgliteWrites, postgresWrites, type Writes } from './transact.js';
import type { Db } from './types.js';

export type { Db };

export interface Database {
  db: Db;
  kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` while holding an advisory lock (replicas migrating at once, one role's deny policy).
   * With `waitMs`, gives up (an error) rather than wait longer for the lock.
   */
  withAdvisoryLock<T>(key: string, fn: () => Promise<T>, waitMs?: number): Promise<T>;
  /** Statements alone or in a transaction, sent together (db/transact.ts): the issuance commit's way. */
  writes: Writes;
  /** Notifications on `channel` (db/notify.ts): on PostgreSQL a connection of its own; closed with the database. */
  listen(channel: string, handlers: NotifyHandlers): Listener;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres:// URL; when absent, embedded PGlite under `dataDir`. */
  url?: string;
  dataDir: string;
  /** Connection pool size for PostgreSQL. */
  poolSize?: number;
}

export { rowsOf };

export async function execRows<T>(db: Db, query: SQL): Promise<T[]> {
  return rowsOf<T>(await db.execute(query));
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url) {
    const url = options.url;
    const connect = (max: number, extra: postgres.Options<Record<string, postgres.PostgresType>> = {}) =>
      postgres(url, {
        ...extra,
        max,
        onnotice: () => {},
        connect_timeout: 10,
        // The array-type lookup postgres.js runs on each new connection is not awaited by any query, so a
        // connection cut during it surfaced as an unhandled rejection; drizzle parses arrays itself.
        fetch_types: false,
        // Timestamps are handled by drizzle; keep bigints as strings it expects.
      });
    const client = connect(options.poolSize ?? 20);
    const db = drizzlePostgres(client, { schema }) as unknown as Db;
    const listeners = new Set<Listener>();
    return {
      db,
      kind: 'postgres',
      // A transaction-level lock on a connection of its own, held while `fn` runs on the others.
      withAdvisoryLock: (key, fn, waitMs) =>
        client.begin(async (tx) => {
          if (waitMs) await tx.unsafe(`set local lock_timeout = ${Math.max(1, Math.floor(waitMs))}`);
          await tx`select pg_advisory_xact_lock(hashtext(${key}))`;
          return fn();
        }) as Promise<Awaited<ReturnType<typeof fn>>>,
      writes: postgresWrites(client),
      listen(channel, handlers) {
        // Held for as long as it listens: no idle or lifetime limit.
        const listener = postgresListener((hooks) => connect(1, { ...hooks, idle_timeout: 0, max_lifetime: null }), channel, handlers);
        listeners.add(listener);
        return listener;
      },
      close: async () => {
        await Promise.all([...listeners].map((l) => l.close()));
        await client.end({ timeout: 5 });
      },
    };
  }
  mkdirSync(options.dataDir, { recursive: true });
  // PGlite is this process's alone: a second process on the directory gets an error naming the holder.
  const lock = lockDataDir(options.dataDir);
  let client: PGlite;
  try {
    client = new PGlite(join(options.dataDir, 'pgdata'));
    await client.waitReady;
  } catch (err) {
    lock.release();
    throw err;
  }
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    // PGlite is one process and one connection: nothing else can race.
    withAdvisoryLock: (_key, fn) => fn(),
    writes: pgliteWrites(db),
    listen: (channel, handlers) => pgliteListener(client, channel, handlers),
    close: () => client.close().finally(() => lock.release()),
  };
}

/** Wraps an already-open PGlite (tests share one per file). */
export function fromPglite(client: PGlite): Database {
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    withAdvisoryLock: (_key, fn) => fn(),
    writes: pgliteWrites(db),
    listen: (channel, handlers) => pgliteListener(client, channel, handlers),
    close: () => client.close(),
  };
}

export async function ping(db: Db): Promise<void> {
  await db.execute(sql`select 1`);
}
