import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appended, appendAudit, chainAppend, type AuditInput } from '../../src/audit/append.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { execRows } from '../../src/db/client.js';
import { isDatabaseUnavailable, TransactionLost } from '../../src/db/errors.js';
import { tasks } from '../../src/db/schema.js';
import { inserted, leaseInsert, type LeaseRow } from '../../src/leases/insert.js';
import { newId } from '../../src/ids.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

async function openTask(database: TestDatabase) {
  const now = new Date();
  await database.db.insert(tasks).values({ id: 'lane-task', agentSubject: 'a', roles: [], status: 'open', createdBy: 'test', createdAt: now, deadline: new Date(now.getTime() + 3600_000) });
}

const TXID = sql`select txid_current()::text as txid`;
const event = (target: string, details: Record<string, unknown> = {}): AuditInput => ({ at: new Date(), actor: 'test', action: 'test.event', target, details });

describe.each(DRIVERS)('commit lanes and the audit chain on %s', (driver) => {
  let database!: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase(driver);
    await openTask(database);
  }, 60_000);
  afterAll(() => database?.drop());

  const count = async (target: string) => (await execRows<{ n: number }>(database.db, sql`select count(*)::int as n from audit_events where target = ${target}`))[0]!.n;
  const lease = (): LeaseRow => {
    const now = new Date();
    return { id: newId({ now: () => now }), taskId: 'lane-task', role: 'r', backend: 'b', issuer: 'i', subject: 'a', tokenSha256: 'h', status: 'active', credentialRef: 'ref', issuedAt: now, expiresAt: now, backendExpiresAt: now };
  };

  it('commits what a run sends, with BEGIN and COMMIT riding along', async () => {
    const lane = database.lane();
    const row = lease();
    await lane.run(async (tx) => {
      const [[{ txid }]] = (await tx.send([TXID])) as [[{ txid: string }]];
      const [ins, chain] = await tx.commit([leaseInsert([row], txid)!, chainAppend([event('lane:ok')], txid)!]);
      inserted(ins!, 1);
      appended(chain!, 1);
    });
    expect(await count('lane:ok')).toBe(1);
    expect((await execRows(database.db, sql`select id from leases where id = ${row.id}`)).length).toBe(1);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('rolls back a run that fails, and the lane goes on working', async () => {
    const lane = database.lane();
    await expect(
      lane.run(async (tx) => {
        await tx.send([chainAppend([event('lane:rolled-back')])!]);
        await tx.send([sql`select 1/0`]);
      }),
    ).rejects.toThrow();
    // A statement that fails inside the pipelined commit: COMMIT answers ROLLBACK, and the run fails.
    await expect(lane.run((tx) => tx.commit([chainAppend([event('lane:rolled-back')])!, sql`select 1/0`]))).rejects.toThrow();
    expect(await count('lane:rolled-back')).toBe(0);
    await lane.run((tx) => tx.commit([chainAppend([event('lane:after')])!]));
    expect(await count('lane:after')).toBe(1);
  });

  it('writes nothing from a session other than the transaction that took the locks', async () => {
    const row = lease();
    // What a replacement session would see: another transaction's id.
    const [other] = await execRows<{ txid: string }>(database.db, TXID);
    const lost = database.lane();
    const err = await lost
      .run(async (tx) => {
        const [ins, chain] = await tx.commit([leaseInsert([row], other!.txid)!, chainAppend([event('lane:lost')], other!.txid)!]);
        appended(chain!, 1);
        inserted(ins!, 1);
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransactionLost);
    expect(isDatabaseUnavailable(err)).toBe(true);
    expect(await count('lane:lost')).toBe(0);
    expect((await execRows(database.db, sql`select id from leases where id = ${row.id}`)).length).toBe(0);
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

describe('a commit lane whose connection is lost mid-transaction (postgres)', () => {
  let database!: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    await openTask(database);
  }, 60_000);
  afterAll(() => database?.drop());

  it('writes nothing on the session that replaces it, says the database was unavailable, and works again after', async () => {
    const lane = database.lane();
    const now = new Date();
    const row: LeaseRow = { id: newId({ now: () => now }), taskId: 'lane-task', role: 'r', backend: 'b', issuer: 'i', subject: 'a', tokenSha256: 'h', status: 'active', credentialRef: 'ref', issuedAt: now, expiresAt: now, backendExpiresAt: now };
    const err = await lane
      .run(async (tx) => {
        const [[{ txid }], [{ pid }]] = (await tx.send([TXID, sql`select pg_backend_pid() as pid`])) as [[{ txid: string }], [{ pid: number }]];
        // The lane's connection dies between the locking read and the writes.
        await database.db.execute(sql`select pg_terminate_backend(${pid})`);
        await new Promise((r) => setTimeout(r, 100));
        const [ins, chain] = await tx.commit([leaseInsert([row], txid)!, chainAppend([event('lane:terminated')], txid)!]);
        inserted(ins!, 1);
        appended(chain!, 1);
      })
      .catch((e: unknown) => e);
    expect(isDatabaseUnavailable(err)).toBe(true);
    expect(await execRows(database.db, sql`select id from leases where id = ${row.id}`)).toHaveLength(0);
    expect(await execRows(database.db, sql`select seq from audit_events where target = 'lane:terminated'`)).toHaveLength(0);
    await lane.run((tx) => tx.commit([chainAppend([event('lane:recovered')])!]));
    expect(await execRows(database.db, sql`select seq from audit_events where target = 'lane:recovered'`)).toHaveLength(1);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });
});
