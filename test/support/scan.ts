import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestDatabase } from './db.js';
import { dumpTables } from './secrets.js';

/**
 * What the end-of-suite secrets scan (test/global-setup.ts) reads: every
 * secret a test broker handed out or used, and every place a secret must
 * never be (each table of each test database before it is dropped, and every
 * log line the brokers wrote). Collected per test database, written to the
 * directory the global setup names.
 */
const byDatabase = new WeakMap<TestDatabase, { secrets: Set<string>[]; logs: string[][] }>();

const SECRET_KEYS = new Set(['token', 'SecretAccessKey', 'SessionToken', 'secret', 'password', 'secret_key', 'security_token', 'client_token']);

/** Remembers (by reference: they keep growing) a broker's secrets and log lines against the database it runs on. */
export function trackBroker(database: TestDatabase, secrets: Set<string>, logs: string[]): void {
  const entry = byDatabase.get(database) ?? { secrets: [], logs: [] };
  entry.secrets.push(secrets);
  entry.logs.push(logs);
  byDatabase.set(database, entry);
}

/** Adds every secret-looking value under a response's `credentials`. */
export function collectSecrets(into: Set<string>, value: unknown): void {
  const walk = (v: unknown, key?: string) => {
    if (typeof v === 'string' && key && SECRET_KEYS.has(key) && v.length >= 8) into.add(v);
    else if (v && typeof v === 'object') for (const [k, child] of Object.entries(v)) walk(child, k);
  };
  walk(value);
}

/** Called before a test database is dropped. */
export async function recordForScan(database: TestDatabase): Promise<void> {
  const dir = process.env.TASKLEASE_SCAN_DIR;
  const entry = byDatabase.get(database);
  if (!dir || !entry) return;
  const places = [...(await dumpTables(database).catch(() => [])), ...entry.logs.flat()];
  mkdirSync(dir, { recursive: true });
  const secrets = entry.secrets.flatMap((set) => [...set]);
  writeFileSync(join(dir, `${process.pid}-${Math.random().toString(36).slice(2)}.json`), JSON.stringify({ secrets, places }));
}
