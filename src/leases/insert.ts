import { sql, type SQL } from 'drizzle-orm';
import { rowCodec } from '../db/rows.js';
import { leases, type Lease } from '../db/schema.js';

/** A new lease, as the issuance path builds it: the columns it sets, the table's defaults for the rest. */
export type LeaseRow = typeof leases.$inferInsert;

const codec = rowCodec(leases);

/** The lease as stored once inserted: every column, the table's defaults for those the row leaves out. */
export const stored = (row: LeaseRow): Lease => codec.stored(row);

/**
 * The rows of `leaseInsert` and of the record statement (leases/record.ts):
 * each lease as stored, keyed by column name, in one JSON parameter, so the
 * statements' text never varies with the batch (prepared once per connection).
 */
export const leasesJson = (rows: LeaseRow[]): string => JSON.stringify(rows.map(codec.json));

/**
 * Inserts the leases of `json` (leasesJson), when `when` holds: every column,
 * by name, typed by the table itself; `select count(*) from ins` says how many.
 */
export const leaseInsertCte = (json: string, when: SQL = sql`true`): SQL =>
  sql`ins as (insert into leases select * from jsonb_populate_recordset(null::leases, ${json}::jsonb) where ${when} returning 1)`;

/** The statement that inserts new leases; it returns `{ inserted }`. */
export const leaseInsert = (rows: LeaseRow[]): SQL => sql`with ${leaseInsertCte(leasesJson(rows))} select count(*)::int as inserted from ins`;

/** Checks the rows of leaseInsert: every lease was written. */
export function inserted(rows: unknown[], expected: number): void {
  const got = (rows as { inserted: number }[])[0]?.inserted;
  if (got !== expected) throw new Error(`the commit recorded ${got ?? 0} leases, not ${expected}`);
}
