import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import { fromPglite, openDatabase, type Database } from '../../src/db/client.js';
import { runMigrations } from '../../src/db/migrate.js';
import { recordForScan } from './scan.js';

export const PG_ADMIN_URL = process.env.TASKLEASE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Both drivers every integration test runs against. */
export const DRIVERS = ['pglite', 'postgres'] as const;
export type Driver = (typeof DRIVERS)[number];

export interface TestDatabase extends Database {
  /** A postgres:// URL for other processes (postgres driver only). */
  url?: string;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database for one test file: PGlite in memory, or a new
 * database on the real PostgreSQL. PostgreSQL being unreachable is a failure,
 * never a skip.
 */
export async function openTestDatabase(driver: Driver): Promise<TestDatabase> {
  if (driver === 'pglite') {
    const database = fromPglite(await PGlite.create());
    await runMigrations(database);
    const test: TestDatabase = {
      ...database,
      async drop() {
        await recordForScan(test);
        await database.close();
      },
    };
    return test;
  }
  const name = `tl_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await admin.unsafe(`create database ${name}`);
  } catch (err) {
    await admin.end();
    throw new Error(`PostgreSQL is required at ${PG_ADMIN_URL} for integration tests: ${(err as Error).message}`);
  }
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const database = await openDatabase({ url, dataDir: '/nonexistent', poolSize: 10 });
  await runMigrations(database);
  const test: TestDatabase = {
    ...database,
    url,
    async drop() {
      await recordForScan(test);
      await database.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
  return test;
}
