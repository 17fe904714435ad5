import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appended, type AuditInput } from '../../src/audit/append.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { execRows } from '../../src/db/client.js';
import { auditEvents, leases, tasks } from '../../src/db/schema.js';
import { newId } from '../../src/ids.js';
import type { LeaseRow } from '../../src/leases/insert.js';
import { generationOf, recordIssued, taskStates, type RecordResult } from '../../src/leases/record.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

describe.each(DRIVERS)('the record statement that begins every issuance commit on %s', (driver) => {
  let database!: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase(driver);
    const now = new Date();
    const task = (id: string, status: 'open' | 'completed') => ({ id, agentSubject: 'a', roles: [], status, createdBy: 'test', createdAt: now, deadline: new Date(now.getTime() + 3600_000) });
    await database.db.insert(tasks).values([task('rec-open', 'open'), task('rec-closed', 'completed')]);
  }, 60_000);
  afterAll(() => database?.drop());

  const lease = (taskId: string): LeaseRow => {
    const now = new Date();
    return { id: newId({ now: () => now }), taskId, role: 'r', backend: 'b', issuer: 'i', subject: 'a', tokenSha256: 'h', status: 'active', credentialRef: `ref-${taskId}`, issuedAt: now, expiresAt: now, backendExpiresAt: now };
  };
  const issued = (row: LeaseRow): AuditInput => ({ at: row.issuedAt, actor: 'agent', action: 'credential.issued', target: `lease:${row.id}`, decision: 'allow', details: { task: row.taskId } });
  const record = async (rows: LeaseRow[], others: AuditInput[], write = true, generation = 0) => {
    const [[result]] = (await database.writes.transact((tx) =>
      tx.run([recordIssued(rows.map((row) => ({ row, who: { generation } })), [...rows.map(issued), ...others], write)]),
    )) as [[RecordResult]];
    return result!;
  };

  it('records the leases of open tasks as active, with their events and the other events of the batch, on one chain', async () => {
    const rows = [lease('rec-open'), lease('rec-open')];
    const other: AuditInput = { at: new Date(), actor: 'agent', action: 'credential.denied', target: 'task:rec-open', decision: 'deny', details: { code: 'role_denied' } };
    const result = await record(rows, [other]);
    appended([result], 3);
    expect(result).toMatchObject({ inserted: 2 });
    expect(taskStates(result).get('rec-open')).toMatchObject({ status: 'open' });
    for (const row of rows) {
      const [stored] = await database.db.select().from(leases).where(eq(leases.id, row.id!));
      expect(stored).toMatchObject({ status: 'active', reason: null, revokeRequestedAt: null, taskId: 'rec-open' });
      const events = await database.db.select().from(auditEvents).where(eq(auditEvents.target, `lease:${row.id}`));
      expect(events.map((e) => [e.action, e.decision])).toEqual([['credential.issued', 'allow']]);
    }
    expect((await database.db.select().from(auditEvents).where(eq(auditEvents.target, 'task:rec-open'))).map((e) => e.action)).toEqual(['credential.denied']);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('writes nothing when a task of the batch is no longer open, and returns the tasks as it locked them', async () => {
    const open = lease('rec-open');
    const closed = lease('rec-closed');
    const result = await record([open, closed], []);
    expect(result).toMatchObject({ inserted: 0, appended: 0, moved: 0 });
    expect(taskStates(result).get('rec-closed')).toMatchObject({ status: 'completed' });
    expect(await execRows(database.db, sql`select id from leases where id in (${open.id}, ${closed.id})`)).toHaveLength(0);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('writes nothing when a decision was made on another generation of the agent registry, and returns the generation', async () => {
    const row = lease('rec-open');
    const result = await record([row], [], true, 41);
    expect(result).toMatchObject({ inserted: 0, appended: 0 });
    expect(generationOf(result)).toBe(0);
    expect(await execRows(database.db, sql`select id from leases where id = ${row.id}`)).toHaveLength(0);
  });

  it('only locks when told not to write (a limit applies): the writer goes the long way', async () => {
    const row = lease('rec-open');
    const result = await record([row], [], false);
    expect(result).toMatchObject({ inserted: 0, appended: 0, moved: 0 });
    expect(taskStates(result).get('rec-open')).toMatchObject({ status: 'open' });
    expect(await execRows(database.db, sql`select id from leases where id = ${row.id}`)).toHaveLength(0);
  });

  it('appends a batch of events alone, whatever the registry generation', async () => {
    await database.db.execute(sql`update registry_state set generation = generation + 1 where id = 1`);
    const other: AuditInput = { at: new Date(), actor: 'agent', action: 'credential.denied', target: 'task:alone', decision: 'deny', details: {} };
    const result = await record([], [other]);
    await database.db.execute(sql`update registry_state set generation = generation - 1 where id = 1`);
    appended([result], 1);
  });

  it('records nothing when one value is refused by the database', async () => {
    const row = lease('rec-open');
    const bad = { ...issued(row), details: { x: 'a\u0000b' } };
    await expect(database.writes.transact((tx) => tx.run([recordIssued([{ row, who: { generation: 0 } }], [bad], true)]))).rejects.toThrow();
    expect(await execRows(database.db, sql`select id from leases where id = ${row.id}`)).toHaveLength(0);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });
});
