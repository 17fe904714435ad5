import { getTableColumns, is, SQL, type InferInsertModel, type InferSelectModel, type Table } from 'drizzle-orm';

/** The rows of a drizzle `execute` result, whichever driver ran it (postgres.js returns an array, PGlite `{ rows }`). */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

/**
 * A table's rows as this process writes them in bulk, from the table's own
 * definition (its columns, names and defaults), so no statement spells them out:
 * - `stored` is the row as the database holds it once inserted (every column, defaults filled in);
 * - `json` is that stored row keyed by column name, for `jsonb_populate_recordset(null::<table>, …)`.
 * Only literal defaults are known here: a table with a SQL or computed default is refused.
 */
export function rowCodec<T extends Table>(table: T) {
  const columns = Object.entries(getTableColumns(table)).map(([key, column]) => {
    if (is(column.default, SQL) || column.defaultFn || column.onUpdateFn) throw new Error(`rowCodec: ${column.name} has a default only the database or drizzle knows`);
    return { key, name: column.name, fallback: column.hasDefault ? column.default : null };
  });
  const stored = (row: InferInsertModel<T>): InferSelectModel<T> => {
    const out: Record<string, unknown> = {};
    for (const { key, fallback } of columns) out[key] = (row as Record<string, unknown>)[key] ?? fallback;
    return out as InferSelectModel<T>;
  };
  const json = (row: InferInsertModel<T>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const { key, name, fallback } of columns) {
      const value = (row as Record<string, unknown>)[key] ?? fallback;
      out[name] = value instanceof Date ? value.toISOString() : value;
    }
    return out;
  };
  return { stored, json };
}
