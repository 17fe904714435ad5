import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import { execRows, type Database } from './client.js';

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));

/** The `when` stamp of the newest migration shipped with this build. */
export function latestMigrationStamp(folder = MIGRATIONS_FOLDER): number {
  const journal = JSON.parse(readFileSync(`${folder}/meta/_journal.json`, 'utf8')) as {
    entries: { when: number }[];
  };
  return Math.max(0, ...journal.entries.map((e) => e.when));
}

/** Applies pending migrations, holding an advisory lock so that replicas starting together do not race. */
export async function runMigrations(database: Database, folder = MIGRATIONS_FOLDER): Promise<void> {
  await database.withAdvisoryLock('tasklease:migrate', async () => {
    const config = { migrationsFolder: folder };
    if (database.kind === 'pglite') await migratePglite(database.db as never, config);
    else await migratePostgres(database.db as never, config);
  });
}

/** True when the database has every migration this build ships (for /readyz). */
export async function migrationsCurrent(database: Database, expected = latestMigrationStamp()): Promise<boolean> {
  try {
    const [row] = await execRows<{ latest: string | number | null }>(
      database.db,
      sql`select max(created_at) as latest from drizzle.__drizzle_migrations`,
    );
    return Number(row?.latest ?? 0) >= expected;
  } catch {
    return false;
  }
}
