import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { rowsOf } from '../../src/db/client.js';
import type { TestDatabase } from './db.js';

/** Every row of every table the broker writes, as JSON text. */
export async function dumpTables(database: TestDatabase): Promise<string[]> {
  const out: string[] = [];
  for (const table of ['tasks', 'leases', 'approvals', 'audit_events', 'outbox']) {
    const rows = rowsOf<Record<string, unknown>>(await database.db.execute(sql.raw(`select * from ${table}`)));
    for (const row of rows) out.push(JSON.stringify(row));
  }
  return out;
}

/** Fails naming the place if any secret (or, for a JWT, its signature) appears in any of `places`. */
export function expectNoSecrets(secrets: string[], places: string[]): void {
  expect(places.length).toBeGreaterThan(0);
  for (const secret of secrets) {
    if (!secret) continue;
    // For a JWT the signature alone is proof of a leak; any other secret is looked for whole (a Vault token `hvs.x.ns` is not a JWT).
    const needle = /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(secret) ? secret.split('.')[2]! : secret;
    for (const place of places) expect(place.includes(needle), `secret found in: ${place.slice(0, 160)}`).toBe(false);
  }
}
