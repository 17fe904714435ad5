import { createTableRelationsHelpers, extractTablesRelationalConfig, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { PostgresJsSession, PostgresJsTransaction } from 'drizzle-orm/postgres-js';
import type postgres from 'postgres';
import { rowsOf } from './rows.js';
import { schema } from './schema.js';
import type { Db } from './types.js';

/** One write transaction, begun and ended by the driver itself. */
export interface WriteTx {
  /** The transaction through drizzle, for statements awaited one by one. */
  db: Db;
  /**
   * Sends statements together and returns each one's rows, in order. The
   * server runs them in this order, each after the one before has finished,
   * so a lock one takes is held by the next; if one fails, the transaction
   * rolls back. See `Writes` for how they travel.
   */
  run(statements: SQL[]): Promise<unknown[][]>;
}

/**
 * The issuance commit's way to the database. On PostgreSQL every statement
 * goes as a named prepared statement: one round trip, sent in one write with
 * those beside it (drizzle's `execute` sends an unnamed statement, which
 * postgres.js describes first: two round trips each). A statement is
 * prepared once per connection, so pass only statements whose text never
 * varies: rows and ids travel as one JSON parameter.
 */
export interface Writes {
  /**
   * One statement on its own, on any connection of the pool: a transaction
   * by itself (atomic, no BEGIN or COMMIT to send), one round trip; its rows.
   */
  alone<T>(statement: SQL): Promise<T[]>;
  /**
   * Runs `fn` in a transaction, committed when it resolves and rolled back
   * when it throws: postgres.js's own `begin` (BEGIN and COMMIT are each a
   * round trip of their own), on a connection it reserves. If that
   * connection is lost, the transaction fails and nothing queued on it runs
   * anywhere else (test/db/transact.test.ts).
   */
  transact<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T>;
}

// Renders a statement to its text and parameters; it holds nothing of any database's.
const dialect = new PgDialect();
const relations = extractTablesRelationalConfig(schema, createTableRelationsHelpers);
const relational = { fullSchema: schema, schema: relations.tables, tableNamesMap: relations.tableNamesMap };

const prepared = (sql: postgres.Sql | postgres.TransactionSql, statement: SQL) => {
  const q = dialect.sqlToQuery(statement);
  return sql.unsafe(q.sql, q.params as never[], { prepare: true }).execute();
};

export function postgresWrites(client: postgres.Sql): Writes {
  return {
    alone: async <T>(statement: SQL) => (await prepared(client, statement)) as unknown as T[],
    transact: (fn) =>
      client.begin((sql) => {
        let db: Db | undefined;
        return fn({
          // What drizzle's own `transaction` builds over postgres.js's (its session takes the transaction's
          // client as it does), built here so that statements can also go together; only when asked for.
          get db() {
            db ??= new PostgresJsTransaction(dialect, new PostgresJsSession(sql as unknown as postgres.Sql, dialect, relational) as never, relational) as unknown as Db;
            return db;
          },
          run: (statements) => Promise.all(statements.map((s) => prepared(sql, s))) as Promise<unknown[][]>,
        });
      }) as Promise<Awaited<ReturnType<typeof fn>>>,
  };
}

/** PGlite: one connection in the process and no round trips to save; statements run one after another. */
export function pgliteWrites(db: Db): Writes {
  return {
    alone: async <T>(statement: SQL) => rowsOf<T>(await db.execute(statement)),
    transact: (fn) =>
      db.transaction((tx) =>
        fn({
          db: tx,
          async run(statements) {
            const out: unknown[][] = [];
            for (const s of statements) out.push(rowsOf(await tx.execute(s)));
            return out;
          },
        }),
      ),
  };
}
