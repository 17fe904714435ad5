import type { SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import type postgres from 'postgres';
import type { Db } from './client.js';
import { dispatch, sendAll } from './send.js';
import { schema } from './schema.js';

/** One transaction on a commit lane. */
export interface LaneTx {
  /** The transaction through drizzle, for statements awaited one by one. */
  db: Db;
  /** Sends statements together, in order; the first call sends BEGIN ahead of them. One round trip. */
  send(statements: SQL[]): Promise<unknown[][]>;
  /** Sends the last statements with COMMIT behind them, one round trip; resolves once committed. */
  commit(statements: SQL[]): Promise<unknown[][]>;
}

/**
 * A connection of its own for short write transactions whose BEGIN and COMMIT
 * travel with their statements: two round trips for a transaction that reads
 * under lock, then writes (postgres.js's `begin` takes four).
 *
 * When the connection is lost mid-transaction, postgres.js reconnects and
 * runs what was still queued on a new session, outside the transaction: the
 * writes sent on a lane must therefore check that they run in the
 * transaction that took the locks (the issuance commit compares
 * txid_current() with the one its locking read returned), and write nothing
 * otherwise.
 */
export interface CommitLane {
  run<T>(fn: (tx: LaneTx) => Promise<T>): Promise<T>;
  /** Drops the connection (a transaction that never answered); the next run opens a new one. */
  reset(): void;
  close(): Promise<void>;
}

export function postgresLane(open: () => postgres.Sql): CommitLane {
  let client = open();
  let db = drizzle(client, { schema }) as unknown as Db;

  return {
    async run(fn) {
      // This run's connection, even if the lane is reset meanwhile.
      const sql = client;
      let begun = false;
      let ended = false;
      const tx: LaneTx = {
        db,
        async send(statements) {
          const first = !begun;
          begun = true;
          const results = await dispatch(sql, statements, first ? 'begin' : undefined);
          return first ? results.slice(1) : results;
        },
        async commit(statements) {
          const first = !begun;
          begun = ended = true;
          const results = await dispatch(sql, statements, first ? 'begin' : undefined, 'commit');
          // COMMIT of a failed transaction answers ROLLBACK, not an error.
          if ((results.at(-1) as { command?: string }).command !== 'COMMIT') throw new Error('the transaction was rolled back');
          return results.slice(first ? 1 : 0, -1);
        },
      };
      try {
        const result = await fn(tx);
        if (!ended) await tx.commit([]);
        return result;
      } catch (err) {
        // Awaited, so the lane's next transaction cannot begin inside this one.
        if (begun) await sql.unsafe('rollback').catch(() => {});
        throw err;
      }
    },
    reset() {
      const old = client;
      client = open();
      db = drizzle(client, { schema }) as unknown as Db;
      void old.end({ timeout: 0 }).catch(() => {});
    },
    close: () => client.end({ timeout: 5 }),
  };
}

/** PGlite: one connection in the process, and no round trips to save: an ordinary transaction. */
export function transactionLane(db: Db): CommitLane {
  return {
    run: (fn) => db.transaction((tx) => fn({ db: tx, send: (s) => sendAll(tx, s), commit: (s) => sendAll(tx, s) })),
    reset() {},
    close: async () => {},
  };
}
