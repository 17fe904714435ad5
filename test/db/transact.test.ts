import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appended, appendAudit, chainAppend, type AuditInput } from '../../src/audit/append.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { execRows } from '../../src/db/client.js';
import { isDatabaseUnavailable } from '../../src/db/errors.js';
import { tasks } from '../../src/db/schema.js';
import { newId } from '../../src/ids.js';
import { inserted, leaseInsert, type LeaseRow } from '../../src/leases/insert.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

async function openTask(database: TestDatabase) {
  const now = new Date();
  await database.db.insert(tasks).values({ id: 'tx-task', agentSubject: 'a', roles: [], status: 'open', createdBy: 'test', createdAt: now, deadline: new Date(now.getTime() + 3600_000) });
}

const event = (target: string, details: Record<string, unknown> = {}): AuditInput => ({ at: new Date(), actor: 'test', action: 'test.event', target, details });
const lease = (): LeaseRow => {
  const now = new Date();
  return { id: newId({ now: () => now }), taskId: 'tx-task', role: 'r', backend: 'b', issuer: 'i', subject: 'a', tokenSha256: 'h', status: 'active', credentialRef: 'ref', issuedAt: now, expiresAt: now, backendExpiresAt: now };
};

describe.each(DRIVERS)('write transactions and the audit chain on %s', (driver) => {
  let database!: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase(driver);
    await openTask(database);
  }, 60_000);
  afterAll(() => database?.drop());

  const count = async (target: string) => (await execRows<{ n: number }>(database.db, sql`select count(*)::int as n from audit_events where target = ${target}`))[0]!.n;
  const leaseCount = async (id: string) => (await execRows(database.db, sql`select id from leases where id = ${id}`)).length;

  it('commits statements sent together, in order, each seeing the one before', async () => {
    const row = lease();
    const [ins, seen, chain] = await database.writes.transact((tx) =>
      tx.run([leaseInsert([row]), sql`select count(*)::int as n from leases where id = ${row.id}`, chainAppend([event('tx:ok')])!]),
    );
    inserted(ins!, 1);
    expect(seen).toEqual([{ n: 1 }]);
    appended(chain!, 1);
    expect(await count('tx:ok')).toBe(1);
    expect(await leaseCount(row.id!)).toBe(1);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('stores every column of a lease, the defaults of those the row leaves out', async () => {
    const row = lease();
    await database.writes.transact((tx) => tx.run([leaseInsert([row])]));
    const [got] = await execRows<Record<string, unknown>>(database.db, sql`select status, reason, revocable, attempts, ended_at, agent from leases where id = ${row.id}`);
    expect(got).toEqual({ status: 'active', reason: null, revocable: true, attempts: 0, ended_at: null, agent: null });
  });

  it('rolls back everything when a statement fails, whether sent together or awaited, and goes on working', async () => {
    const row = lease();
    await expect(database.writes.transact((tx) => tx.run([leaseInsert([row]), chainAppend([event('tx:rolled-back')])!, sql`select 1/0`]))).rejects.toThrow();
    await expect(
      database.writes.transact(async (tx) => {
        await tx.run([chainAppend([event('tx:rolled-back')])!]);
        await tx.db.execute(sql`select 1/0`);
      }),
    ).rejects.toThrow();
    expect(await count('tx:rolled-back')).toBe(0);
    expect(await leaseCount(row.id!)).toBe(0);
    await database.writes.transact((tx) => tx.run([chainAppend([event('tx:after')])!]));
    expect(await count('tx:after')).toBe(1);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('hashes in SQL exactly as the verifier does, for any events', async () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 20 });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ target: text, reason: fc.option(text), details: fc.dictionary(text, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }) }), { minLength: 1, maxLength: 5 }),
        async (events) => {
          const inputs = events.map((e) => ({ ...event(`prop:${e.target}`, JSON.parse(JSON.stringify(e.details)) as Record<string, unknown>), reason: e.reason }));
          await database.db.transaction((tx) => appendAudit(tx, inputs));
        },
      ),
      { numRuns: 40 },
    );
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });
});

describe('a write transaction whose connection is lost mid-way (postgres)', () => {
  let database!: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    await openTask(database);
  }, 60_000);
  afterAll(() => database?.drop());

  it('fails as unavailable, writes nothing anywhere (nothing queued runs on another connection), and the next one works', async () => {
    const row = lease();
    const err = await database
      .writes.transact(async (tx) => {
        const [[{ pid }]] = (await tx.run([sql`select pg_backend_pid() as pid`])) as [[{ pid: number }]];
        // The transaction's connection dies between its first statements and its writes.
        await database.db.execute(sql`select pg_terminate_backend(${pid})`);
        await new Promise((r) => setTimeout(r, 100));
        await tx.run([leaseInsert([row]), chainAppend([event('tx:terminated')])!]);
      })
      .catch((e: unknown) => e);
    expect(isDatabaseUnavailable(err)).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(await execRows(database.db, sql`select id from leases where id = ${row.id}`)).toHaveLength(0);
    expect(await execRows(database.db, sql`select seq from audit_events where target = 'tx:terminated'`)).toHaveLength(0);
    await database.writes.transact((tx) => tx.run([chainAppend([event('tx:recovered')])!]));
    expect(await execRows(database.db, sql`select seq from audit_events where target = 'tx:recovered'`)).toHaveLength(1);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });
});
