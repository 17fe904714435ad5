import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appended, type AuditInput } from '../../src/audit/append.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { execRows } from '../../src/db/client.js';
import { auditEvents, leases, tasks } from '../../src/db/schema.js';
import { sendOne } from '../../src/db/send.js';
import { newId } from '../../src/ids.js';
import type { LeaseRow } from '../../src/leases/insert.js';
import { recordIssued, type RecordResult } from '../../src/leases/record.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

describe.each(DRIVERS)('recording issued leases in one statement on %s', (driver) => {
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
  const denied = (row: LeaseRow): AuditInput => ({ ...issued(row), action: 'credential.denied', decision: 'deny', reason: 'task closed; revoking it', details: { task: row.taskId, code: 'task_not_open' } });

  it('records leases of open tasks as active and of closed ones as revoking, each with its own event, on one chain', async () => {
    const open = lease('rec-open');
    const closed = lease('rec-closed');
    const other: AuditInput = { at: new Date(), actor: 'agent', action: 'credential.denied', target: 'task:rec-open', decision: 'deny', details: { code: 'role_denied' } };
    const [result] = await sendOne<RecordResult>(
      database.db,
      recordIssued(
        [open, closed].map((row) => ({ row, event: issued(row), refusedEvent: denied(row) })),
        [other],
      ),
    );
    appended([result], 3);
    expect(result).toMatchObject({ refused: closed.id, inserted: 2 });

    const [o] = await database.db.select().from(leases).where(eq(leases.id, open.id!));
    expect(o).toMatchObject({ status: 'active', reason: null, revokeRequestedAt: null });
    const [c] = await database.db.select().from(leases).where(eq(leases.id, closed.id!));
    expect(c).toMatchObject({ status: 'revoking', reason: 'task_closed' });
    expect(c!.revokeRequestedAt).not.toBeNull();

    const actionOf = async (target: string) => (await database.db.select().from(auditEvents).where(eq(auditEvents.target, target))).map((e) => [e.action, e.decision]);
    expect(await actionOf(`lease:${open.id}`)).toEqual([['credential.issued', 'allow']]);
    expect(await actionOf(`lease:${closed.id}`)).toEqual([['credential.denied', 'deny']]);
    expect(await actionOf('task:rec-open')).toEqual([['credential.denied', 'deny']]);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('records nothing when one value is refused by the database', async () => {
    const row = lease('rec-open');
    const bad = { ...issued(row), details: { x: 'a\u0000b' } };
    await expect(sendOne(database.db, recordIssued([{ row, event: bad, refusedEvent: denied(row) }], []))).rejects.toThrow();
    expect(await execRows(database.db, sql`select id from leases where id = ${row.id}`)).toHaveLength(0);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });
});
