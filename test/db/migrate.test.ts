import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { openDatabase, type Database } from '../../src/db/client.js';
import { MIGRATIONS_FOLDER, migrationsCurrent, runMigrations } from '../../src/db/migrate.js';
import { PG_ADMIN_URL } from '../support/db.js';
import { ADMIN_STATIC_TOKEN, startTestBroker } from '../support/broker.js';

const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
const created: string[] = [];
const opened: Database[] = [];

async function freshDatabase(): Promise<string> {
  const name = `tl_mig_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await admin.unsafe(`create database ${name}`);
  created.push(name);
  return PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
}
async function open(url: string) {
  const db = await openDatabase({ url, dataDir: '/nonexistent', poolSize: 3 });
  opened.push(db);
  return db;
}

afterAll(async () => {
  await Promise.all(opened.map((d) => d.close()));
  for (const name of created) await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.end();
});

describe('migrations on postgres', () => {
  it('replicas starting together apply each migration once, under the advisory lock', async () => {
    const url = await freshDatabase();
    const replicas = await Promise.all([open(url), open(url), open(url)]);
    expect(await migrationsCurrent(replicas[0]!)).toBe(false);
    await Promise.all(replicas.map((r) => runMigrations(r)));
    const journal = JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')) as { entries: unknown[] };
    const check = postgres(url, { max: 1 });
    const [row] = await check<{ count: number }[]>`select count(*)::int as count from drizzle.__drizzle_migrations`;
    await check.end();
    expect(row!.count).toBe(journal.entries.length);
    for (const r of replicas) expect(await migrationsCurrent(r)).toBe(true);
  });

  it('/readyz says not ready until migrations are applied, then ready', async () => {
    const url = await freshDatabase();
    const database = await open(url);
    // The broker needs its tables to serve; readiness is read before it does.
    const t = await startTestBroker(database, { clock: createManualClock(new Date()) });
    const before = await t.call('GET', '/readyz', {});
    expect(before.status).toBe(503);
    expect((await t.call('GET', '/v1/readiness', { bearer: ADMIN_STATIC_TOKEN })).json.checks).toEqual({ database: true, migrations: false, policy: { set: expect.stringMatching(/^[0-9a-f]{16}$/) } });
    await runMigrations(database);
    const after = await t.call('GET', '/readyz', {});
    expect(after.status).toBe(200);
    expect(after.json.status).toBe('ready');
  });

  it('/readyz says the database is unreachable when it is', async () => {
    const database = await openDatabase({ url: 'postgres://postgres@127.0.0.1:1/none', dataDir: '/nonexistent', poolSize: 1 });
    opened.push(database);
    const t = await startTestBroker(database);
    const res = await t.call('GET', '/readyz', {});
    expect(res.status).toBe(503);
    expect((await t.call('GET', '/v1/readiness', { bearer: ADMIN_STATIC_TOKEN })).json.checks).toEqual({ database: false, migrations: false, policy: { set: expect.stringMatching(/^[0-9a-f]{16}$/) } });
    // A request that needs the database fails closed with 503, not 500.
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: 'x', role: 'demo' });
    expect(issued.status).toBe(503);
    expect(issued.json.code).toBe('database_unavailable');
  });
});
