import { is, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { PostgresJsSession } from 'drizzle-orm/postgres-js';
import type postgres from 'postgres';
import type { Db } from './client.js';
import { rowsOf } from './rows.js';

// Renders a statement to its text and parameters; it holds nothing of any database's.
const dialect = new PgDialect();

/**
 * Sends statements together and returns each one's rows, in order.
 *
 * On PostgreSQL they go as named prepared statements, all in one write: one
 * round trip for the lot. (drizzle's `execute` sends an unnamed statement,
 * which postgres.js describes first: two round trips each, and nothing can
 * follow it until it is done.) A statement is prepared once per connection,
 * so pass only statements whose text never varies: rows and ids travel as one
 * JSON parameter.
 *
 * Inside a transaction the server runs them in the order given, each after
 * the one before has finished, so a lock taken by one is held by the next;
 * if one fails, those after it fail and the transaction rolls back. Outside
 * a transaction the pool may spread them over its connections, in no order:
 * send one at a time there (sendOne). On PGlite they run one after another.
 */
export async function sendAll(db: Db, statements: SQL[]): Promise<unknown[][]> {
  const session = db._.session;
  if (is(session, PostgresJsSession)) return dispatch(session.client, statements);
  const out: unknown[][] = [];
  for (const s of statements) out.push(rowsOf(await db.execute(s)));
  return out;
}

/** One statement as a named prepared statement (see sendAll): one round trip. */
export async function sendOne<T>(db: Db, statement: SQL): Promise<T[]> {
  const [rows] = await sendAll(db, [statement]);
  return rows as T[];
}

/**
 * Dispatches statements at once, in order, as named prepared statements, with
 * optional plain commands (BEGIN, COMMIT) before and after them; each query's
 * result, in order. On one connection the server runs them in this order.
 */
export function dispatch(client: postgres.Sql, statements: SQL[], before?: string, after?: string): Promise<unknown[][]> {
  const queries = [];
  if (before) queries.push(client.unsafe(before).execute());
  for (const s of statements) {
    const q = dialect.sqlToQuery(s);
    queries.push(client.unsafe(q.sql, q.params as never[], { prepare: true }).execute());
  }
  if (after) queries.push(client.unsafe(after).execute());
  return Promise.all(queries) as Promise<unknown[][]>;
}
