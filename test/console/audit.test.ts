/**
 * The console's Audit and Overview pages (admins only), in process against both drivers: the audit filters and
 * paging, "Verify now" reporting a tampered row, the overview's counts after issuing and refusing credentials.
 */
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { auditEvents, auditHead, leases } from '../../src/db/schema.js';
import { useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { devConsoleConfig, signedIn } from './support.js';

const config = await devConsoleConfig();

async function openTask(t: TestBroker, agent: string, roles: string[]): Promise<string> {
  const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: agent }, roles, ttl_seconds: 3600 });
  expect(task.status, task.text).toBe(201);
  return task.json.task.id;
}
async function lease(t: TestBroker, agent: string, task?: string): Promise<{ task: string; id: string }> {
  const id = task ?? (await openTask(t, agent, ['demo']));
  const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task: id, role: 'demo' });
  expect(res.status, res.text).toBe(201);
  return { task: id, id: res.json.lease.id };
}

describe.each(DRIVERS)('console audit and overview pages (%s)', (driver) => {
  let t: TestBroker;
  let database: TestDatabase;
  useTestBroker(driver, (db, broker) => ((database = db), (t = broker)), { config });

  const as = (subject: string) => signedIn(t, subject);

  it('refuses both pages and the verification to non-admins, and keeps their /console on the approvals', async () => {
    const approver = await as('approver-a');
    expect((await approver.request('GET', '/console/audit')).status).toBe(403);
    expect((await approver.request('POST', '/console/audit/verify', { csrf: approver.token })).status).toBe(403);
    const home = await approver.request('GET', '/console');
    expect({ status: home.status, location: home.headers.get('location') }).toEqual({ status: 302, location: '/console/approvals' });
    expect((await approver.request('GET', '/console/approvals')).text).not.toContain('href="/console/audit"');
    const admin = await as('admin');
    const page = await admin.request('GET', '/console');
    expect(page.status, JSON.stringify(t.logs.lines.filter((l) => l.includes('console error')))).toBe(200);
    expect(page.text).toContain('href="/console/audit"');
  });

  it('filters events by actor, action, target and time, pages by seq, and shows details escaped', async () => {
    const one = await lease(t, 'agent-one');
    await lease(t, 'agent-two');
    const admin = await as('admin');
    const byTarget = await admin.request('GET', `/console/audit?target=${encodeURIComponent(`lease:${one.id}`)}`);
    expect(byTarget.status).toBe(200);
    const targeted = await database.db.select().from(auditEvents).where(eq(auditEvents.target, `lease:${one.id}`));
    expect(targeted.length).toBeGreaterThan(0);
    for (const e of targeted) expect(byTarget.text).toContain(`id="event-${e.seq}"`);
    expect(byTarget.text).not.toContain('test/agent-two');

    const byActor = await admin.request('GET', '/console/audit?actor=test/agent-two&action=credential.issued');
    expect(byActor.text).toContain('test/agent-two');
    expect(byActor.text).not.toContain('test/agent-one');
    const future = new Date(t.clock.now().getTime() + 3600_000).toISOString();
    expect((await admin.request('GET', `/console/audit?since=${future}`)).text).toContain('No events.');
    // Odd filters match what they can, never an error page.
    expect((await admin.request('GET', '/console/audit?since=yesterday&actor=%00&after=-1')).status).toBe(200);

    // Keyset paging: the link carries the last seq shown, and the next page starts after it.
    const all = await database.db.select({ seq: auditEvents.seq }).from(auditEvents).orderBy(auditEvents.seq);
    const first = await admin.request('GET', '/console/audit');
    if (all.length > 50) {
      expect(first.text).toContain(`after=${all[49]!.seq}`);
      const second = await admin.request('GET', `/console/audit?after=${all[49]!.seq}`);
      expect(second.text).toContain(`id="event-${all[50]!.seq}"`);
      expect(second.text).not.toContain(`id="event-${all[49]!.seq}"`);
    }
    const second = await admin.request('GET', `/console/audit?after=${all[0]!.seq}`);
    expect(second.text).not.toContain(`id="event-${all[0]!.seq}"`);
    expect(second.text).toContain(`id="event-${all[1]!.seq}"`);

    // Details are what agents and people sent: rendered as text, never markup.
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: 'agent-x' }, roles: ['demo'], ttl_seconds: 3600, labels: { note: '<b>x</b>' } });
    expect(task.status, task.text).toBe(201);
    const escaped = await admin.request('GET', `/console/audit?target=task:${task.json.task.id}`);
    expect(escaped.text).toContain('&lt;b&gt;x&lt;/b&gt;');
    expect(escaped.text).not.toContain('<b>x</b>');
  });

  it('verifies the chain on demand, and reports where a tampered row breaks it', async () => {
    const held = await lease(t, 'agent-one');
    const admin = await as('admin');
    const before = await admin.request('GET', '/console/audit');
    expect(before.text).toContain('Not verified by this replica');
    expect((await admin.request('POST', '/console/audit/verify', {})).status).toBe(403);
    const ok = await admin.request('POST', '/console/audit/verify', { csrf: admin.token });
    expect({ status: ok.status, location: ok.headers.get('location') }).toEqual({ status: 303, location: '/console/audit#chain' });
    const intact = await admin.request('GET', '/console/audit');
    expect(intact.text).toMatch(/id="chain-result">audit chain intact: \d+ events/);
    const [head] = await database.db.select().from(auditHead);
    expect(intact.text).toContain(head!.hash);

    const [row] = await database.db.select().from(auditEvents).where(eq(auditEvents.target, `lease:${held.id}`)).limit(1);
    await database.db.update(auditEvents).set({ reason: 'rewritten' }).where(eq(auditEvents.seq, row!.seq));
    await admin.request('POST', '/console/audit/verify', { csrf: admin.token });
    const broken = await admin.request('GET', '/console/audit');
    expect(broken.text).toContain(`audit chain BROKEN at seq ${row!.seq} (hash_mismatch)`);
  });

  it('shows the overview: active leases by backend and role, issued and refused in the last hour, revoke_failed, pending approvals', async () => {
    const admin = await as('admin');
    // The database is shared by this file's tests: the counts are compared with the page before.
    const counts = async () => {
      const page = await admin.request('GET', '/console');
      expect(page.status).toBe(200);
      const n = (re: RegExp) => Number(re.exec(page.text)?.[1] ?? 0);
      return {
        issued: n(/id="issued-count">(\d+)</),
        refused: n(/id="refused-count">(\d+)</),
        pending: n(/id="pending-count">(\d+)</),
        activeDemo: n(/id="active-local-demo">[\s\S]*?<td>(\d+)<\/td><\/tr>/),
        page: page.text,
      };
    };
    const before = await counts();
    const task = await openTask(t, 'agent-one', ['demo', 'gated']);
    const a = await lease(t, 'agent-one', task);
    await lease(t, 'agent-one', task);
    await lease(t, 'agent-two');
    const approval = await t.call('POST', '/v1/credentials', { subject: 'agent-one' }, { task, role: 'gated' });
    expect(approval.status, approval.text).toBe(202);
    // A role the task was not opened for: refused, and audited as credential.denied.
    const denied = await t.call('POST', '/v1/credentials', { subject: 'agent-one' }, { task, role: 'special' });
    expect(denied.status, denied.text).toBe(403);
    await database.db.update(leases).set({ status: 'revoke_failed' }).where(eq(leases.id, a.id));

    const after = await counts();
    expect({ issued: after.issued - before.issued, refused: after.refused - before.refused, pending: after.pending - before.pending, activeDemo: after.activeDemo - before.activeDemo }).toEqual({
      issued: 3,
      refused: 1,
      pending: 1,
      activeDemo: 2,
    });
    expect(after.page).toMatch(/id="revoke-failed"/);
    expect(after.page).toContain('href="/console/leases?status=revoke_failed"');
    expect(after.page).toContain('<svg');
    expect(after.page).toMatch(/<title>\d\d:\d\d UTC: [1-9]\d* issued, 1 refused<\/title>/);
    // No inline script: the only script is the console's own file.
    expect(after.page.match(/<script[^>]*>/g)).toEqual(['<script src="/console/assets/console.js" defer="">']);
  });
});
