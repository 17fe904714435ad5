import { readFileSync } from 'node:fs';
import { desc, eq, sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { appendAudit, MAX_EVENTS_PER_APPEND } from '../../src/audit/append.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { createLeaseWriter } from '../../src/leases/writer.js';
import { createLimits } from '../../src/policy/limits.js';
import { auditEvents } from '../../src/db/schema.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { auditActivity, resetAuditChain } from '../support/audit.js';
import { type TestBroker, useTestBroker } from '../support/broker.js';

describe.each(DRIVERS)('audit chain on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  it('records every decision and verifies as one chain', async () => {
    const task = await auditActivity(t);
    const result = await verifyAuditChain(database.db);
    expect(result.ok).toBe(true);
    expect(result.checked).toBeGreaterThanOrEqual(1 + 8 + 1 + 1 + 8 + 8);
    const actions = (await database.db.select({ action: auditEvents.action }).from(auditEvents)).map((r) => r.action);
    for (const action of ['task.opened', 'credential.issued', 'credential.denied', 'task.completed', 'lease.revoke_requested', 'lease.revoked']) {
      expect(actions, action).toContain(action);
    }
    const page = await t.call('GET', `/v1/audit?target=task:${task}`, { subject: 'admin' });
    expect(page.json.items.map((e: { action: string }) => e.action)).toEqual(['task.opened', 'credential.denied', 'task.completed']);
  });

  it('appends more events than one statement takes, in chunks, in order, as one chain', async () => {
    const at = new Date();
    const events = Array.from({ length: MAX_EVENTS_PER_APPEND * 2 + 7 }, (_, i) => ({ at, actor: 'test', action: 'test.bulk', target: `bulk:${i}`, details: { i } }));
    await database.db.transaction((tx) => appendAudit(tx, events));
    const rows = await database.db.select({ target: auditEvents.target }).from(auditEvents).where(eq(auditEvents.action, 'test.bulk')).orderBy(auditEvents.seq);
    expect(rows.map((r) => r.target)).toEqual(events.map((e) => e.target));
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
    // The issuance writer's denials too (a refusal window's counts at once): several commits, which may be in flight at once in either order.
    const writer = createLeaseWriter({ writes: database.writes, limits: createLimits(t.config.policy), onRevokeRequested: () => {} });
    const denials = events.map((e) => ({ ...e, action: 'test.bulk-writer' }));
    await writer.audit(denials);
    const written = await database.db.select({ target: auditEvents.target }).from(auditEvents).where(eq(auditEvents.action, 'test.bulk-writer')).orderBy(auditEvents.seq);
    expect(written.map((r) => r.target).sort()).toEqual(denials.map((e) => e.target).sort());
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
  });

  it('pages through the trail with a cursor', async () => {
    const first = await t.call('GET', '/v1/audit?limit=3', { subject: 'admin' });
    expect(first.json.items).toHaveLength(3);
    const second = await t.call('GET', `/v1/audit?limit=3&after=${first.json.next_cursor}`, { subject: 'admin' });
    expect(second.json.items[0].seq).toBeGreaterThan(first.json.items[2].seq);
  });

  it('continues a chain written before its head row existed (the seed in migration 0003)', async () => {
    await auditActivity(t);
    const seed = readFileSync(new URL('../../drizzle/0003_audit_head.sql', import.meta.url), 'utf8').split('--> statement-breakpoint')[1]!;
    await database.db.execute(sql`delete from audit_head`);
    await database.db.execute(sql.raw(seed));
    await auditActivity(t);
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true });
  });

  it('detects a tampered row and names it', async () => {
    await resetAuditChain(database.db);
    await auditActivity(t);
    const [victim] = await database.db.select().from(auditEvents).where(eq(auditEvents.action, 'credential.issued')).limit(1);
    await database.db.execute(sql`update audit_events set reason = 'nothing to see' where seq = ${victim!.seq}`);
    const tampered = await verifyAuditChain(database.db, { pageSize: 7 });
    expect(tampered).toMatchObject({ ok: false, seq: victim!.seq, problem: 'hash_mismatch' });

    // Deleting a row breaks the link of the one after it.
    await database.db.execute(sql`update audit_events set reason = ${victim!.reason} where seq = ${victim!.seq}`);
    expect((await verifyAuditChain(database.db)).ok).toBe(true);
    await database.db.execute(sql`delete from audit_events where seq = ${victim!.seq}`);
    const deleted = await verifyAuditChain(database.db);
    expect(deleted).toMatchObject({ ok: false, problem: 'prev_hash_mismatch' });
    expect((deleted as { seq: number }).seq).toBeGreaterThan(victim!.seq);
  });

  it('detects the removal of the newest rows: the last row no longer holds the head', async () => {
    await resetAuditChain(database.db);
    await auditActivity(t);
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true });
    const newest = await database.db.select({ seq: auditEvents.seq }).from(auditEvents).orderBy(desc(auditEvents.seq)).limit(6);
    await database.db.execute(sql`delete from audit_events where seq >= ${newest[4]!.seq}`);
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: false, seq: newest[5]!.seq, problem: 'head_mismatch' });
  });

  it('detects a head that was changed', async () => {
    await resetAuditChain(database.db);
    await auditActivity(t);
    await database.db.execute(sql`update audit_head set hash = ${'f'.repeat(64)} where id = 1`);
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: false, problem: 'head_mismatch' });
  });
});
