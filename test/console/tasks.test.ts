/**
 * The console's Tasks pages and the Leases page's bulk revocation, in process against both drivers.
 * dev/orch-a is an orchestrator without a scope, dev/orch-b one scoped to {team: b}; test/orchestrator
 * opens tasks neither opened. Each sees what GET /v1/tasks/{id} would show it (another's task is a 404
 * page like a missing one); completing a task goes through tasks.complete and revokes its leases; a
 * bulk revocation shows its count first, then revokes exactly those leases.
 */
import { eq, inArray } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { leases, tasks } from '../../src/db/schema.js';
import { useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { devConsoleConfig, devToken, signedIn } from './support.js';

const config = await devConsoleConfig({
  principals: {
    orchestrators: [
      { issuer: 'test', subject: 'orchestrator' },
      { issuer: 'dev', subject: 'orch-a' },
      { issuer: 'dev', subject: 'orch-b', scope: { labels: { team: 'b' } } },
    ],
    admins: [{ issuer: 'dev', subject: 'admin' }],
  },
});

describe.each(DRIVERS)('console tasks and bulk revoke (%s)', (driver) => {
  let t: TestBroker;
  let database: TestDatabase;
  useTestBroker(driver, (db, broker) => ((database = db), (t = broker)), { config });

  const as = (subject: string) => signedIn(t, subject);
  /** Opens a task as `by` (a test-issuer subject, or a dev-issuer one as `dev/<subject>`). */
  async function openTask(by: string, agent: string, labels: Record<string, string> = {}): Promise<string> {
    // A second apart, so newest-first is well defined (ids within one millisecond are not ordered).
    t.clock.advance(1);
    const caller = by.startsWith('dev/') ? { bearer: await devToken(config.data_dir, by.slice(4)) } : { subject: by };
    const res = await t.call('POST', '/v1/tasks', caller, { agent: { issuer: 'test', subject: agent }, roles: ['demo'], ttl_seconds: 3600, labels });
    expect(res.status, res.text).toBe(201);
    return res.json.task.id;
  }
  async function lease(task: string, agent: string): Promise<string> {
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role: 'demo' });
    expect(res.status, res.text).toBe(201);
    return res.json.lease.id;
  }
  const statuses = async (ids: string[]) => (await database.db.select({ id: leases.id, status: leases.status }).from(leases).where(inArray(leases.id, ids))).map((l) => l.status);
  const taskStatus = async (id: string) => (await database.db.select().from(tasks).where(eq(tasks.id, id)))[0]!.status;

  it("shows an orchestrator the tasks it opened and those its scope matches, another's task as a 404 like a missing one", async () => {
    const own = await openTask('dev/orch-a', 'agent-a1', { team: 'a' });
    const teamB = await openTask('orchestrator', 'agent-b1', { team: 'b', env: 'prod' });
    const other = await openTask('orchestrator', 'agent-c1', { team: 'c' });
    const a = await as('orch-a');
    // An orchestrator who approves nothing lands on its tasks.
    expect((await a.request('GET', '/console')).headers.get('location')).toBe('/console/tasks');
    const b = await as('orch-b');
    const admin = await as('admin');

    const listA = await a.request('GET', '/console/tasks');
    expect(listA.status).toBe(200);
    expect(listA.text).toContain(`/console/tasks/${own}`);
    expect(listA.text).not.toContain(teamB);
    expect(listA.text).not.toContain(other);
    const listB = await b.request('GET', '/console/tasks?status=open');
    expect(listB.text).toContain(`/console/tasks/${teamB}`);
    expect(listB.text).not.toContain(own);
    expect(listB.text).not.toContain(other);
    const all = await admin.request('GET', '/console/tasks');
    for (const id of [own, teamB, other]) expect(all.text).toContain(`/console/tasks/${id}`);
    // Newest first.
    expect(all.text.indexOf(other)).toBeLessThan(all.text.indexOf(own));

    // Keyset paging, as the page's "Older tasks" link pages (tasks.list with the caller).
    const ownLater = await openTask('dev/orch-a', 'agent-a2');
    const orchA = { actor: 'dev/orch-a', admin: false, scopes: [] };
    const first = await t.broker.tasks.list(orchA, undefined, undefined, 1);
    const second = await t.broker.tasks.list(orchA, undefined, first.nextCursor!, 1);
    expect([...first.items, ...second.items].map((x) => x.id)).toEqual([ownLater, own]);
    expect(second.nextCursor).toBeNull();
    expect((await t.broker.tasks.list(orchA, undefined, other, 1)).items).toEqual([]);

    const hidden = await a.request('GET', `/console/tasks/${other}`);
    const missing = await a.request('GET', '/console/tasks/no-such-task');
    expect([hidden.status, missing.status, (await a.request('GET', '/console/tasks/..%2f')).status]).toEqual([404, 404, 404]);
    expect(hidden.text).toBe(missing.text);
    expect(hidden.text).not.toContain('agent-c1');
    const page = await b.request('GET', `/console/tasks/${teamB}`);
    expect(page.status).toBe(200);
    for (const text of ['test/agent-b1', 'demo', 'team=b', 'env=prod', 'test/orchestrator', `action="/console/tasks/${teamB}/complete"`]) expect(page.text).toContain(text);

    // Completing another's task is refused like a missing one, and changes nothing.
    const refused = await a.request('POST', `/console/tasks/${other}/complete`, { csrf: a.token, outcome: 'not mine' });
    expect(refused.status).toBe(404);
    expect(await taskStatus(other)).toBe('open');

    // A person who is not an orchestrator (an approver) has no tasks pages.
    const approver = await as('approver-a');
    expect((await approver.request('GET', '/console/tasks')).status).toBe(403);
    expect((await approver.request('GET', `/console/tasks/${own}`)).status).toBe(403);
    expect((await approver.request('GET', '/console/approvals')).text).not.toContain('href="/console/tasks"');
    expect((await a.request('GET', '/console/approvals')).text).toContain('href="/console/tasks"');
  });

  it('completes a task with an outcome through tasks.complete, which revokes its leases', async () => {
    const task = await openTask('dev/orch-a', 'agent-done');
    const held = [await lease(task, 'agent-done'), await lease(task, 'agent-done')];
    const a = await as('orch-a');
    const before = await a.request('GET', `/console/tasks/${task}`);
    for (const id of held) expect(before.text).toContain(id);

    const noOutcome = await a.request('POST', `/console/tasks/${task}/complete`, { csrf: a.token, outcome: '' });
    expect(noOutcome.headers.get('location')).toBe(`/console/tasks/${task}?notice=outcome_required`);
    expect(await taskStatus(task)).toBe('open');

    const done = await a.request('POST', `/console/tasks/${task}/complete`, { csrf: a.token, outcome: 'shipped' });
    expect({ status: done.status, location: done.headers.get('location') }).toEqual({ status: 303, location: `/console/tasks/${task}?notice=completed` });
    expect(await taskStatus(task)).toBe('completed');
    for (const status of await statuses(held)) expect(['revoking', 'revoked']).toContain(status);
    const after = await a.request('GET', `/console/tasks/${task}?notice=completed`);
    expect(after.text).toContain('outcome: shipped');
    expect(after.text).not.toContain('/complete"');
    // A revocation's attempts and the backend's last error are the admin's view (the API's AdminLease), never an orchestrator's.
    await database.db.update(leases).set({ status: 'revoking', attempts: 2, lastError: 'backend said: internal-host.example:8200' }).where(eq(leases.id, held[0]!));
    const page = await a.request('GET', `/console/tasks/${task}`);
    expect(page.text).not.toContain('internal-host.example');
    expect(page.text).not.toContain('class="attempts"');
    expect((await (await as('admin')).request('GET', `/console/tasks/${task}`)).text).toContain('2 attempts: backend said: internal-host.example:8200');
    const audit = await t.call('GET', `/v1/audit?target=task:${task}`, { bearer: await devToken(config.data_dir, 'admin') });
    expect(audit.json.items.map((e: { action: string; actor: string }) => `${e.action} ${e.actor}`)).toContain('task.completed dev/orch-a');
  });

  it('bulk-revokes by subject: the confirmation counts the active leases, the second POST revokes exactly those', async () => {
    const one = await openTask('orchestrator', 'agent-bulk');
    const two = await openTask('orchestrator', 'agent-bulk');
    const targets = [await lease(one, 'agent-bulk'), await lease(one, 'agent-bulk'), await lease(two, 'agent-bulk')];
    const keep = await lease(await openTask('orchestrator', 'agent-keep'), 'agent-keep');
    const admin = await as('admin');

    const confirm = await admin.request('GET', '/console/leases/bulk-revoke?subject=agent-bulk&status=revoked');
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain('data-count="3"');
    expect(confirm.text).toContain('Revoke 3 leases');
    expect(confirm.text).not.toContain(keep);
    expect(await statuses(targets)).toEqual(['active', 'active', 'active']);

    // Nothing named, nothing revoked: the page refuses, and so does the POST.
    expect((await admin.request('GET', '/console/leases/bulk-revoke')).status).toBe(400);
    const empty = await admin.request('POST', '/console/leases/bulk-revoke', { csrf: admin.token, reason: 'all' });
    expect(empty.headers.get('location')).toBe('/console/leases?notice=bulk_filter_required');
    // A value that cannot name a lease is never dropped (that would widen the revocation to the rest of the filter).
    const narrower = await admin.request('GET', '/console/leases/bulk-revoke?subject=agent-bulk&role=Not%20a%20role!');
    expect(narrower.status).toBe(400);
    expect(narrower.text).toContain('The filter&#39;s role cannot name any lease');
    expect(narrower.text).not.toContain('data-count');
    const widened = await admin.request('POST', '/console/leases/bulk-revoke', { csrf: admin.token, subject: 'agent-bulk', role: 'Not a role!', reason: 'x' });
    expect(widened.headers.get('location')).toBe('/console/leases?notice=bulk_filter_invalid');
    // The service refuses an empty selector itself, whichever surface asks.
    await expect(t.broker.leases.bulkRevoke({ status: 'active' }, { actor: 'test' }, 'everything')).rejects.toMatchObject({ code: 'validation_failed' });
    const noReason = await admin.request('POST', '/console/leases/bulk-revoke', { csrf: admin.token, subject: 'agent-bulk', reason: '' });
    expect(noReason.headers.get('location')).toBe('/console/leases/bulk-revoke?subject=agent-bulk');
    // Only admins.
    const orch = await as('orch-a');
    expect((await orch.request('GET', '/console/leases/bulk-revoke?subject=agent-bulk')).status).toBe(403);
    expect((await orch.request('POST', '/console/leases/bulk-revoke', { csrf: orch.token, subject: 'agent-bulk', reason: 'x' })).status).toBe(403);
    expect(await statuses([...targets, keep])).toEqual(['active', 'active', 'active', 'active']);

    const done = await admin.request('POST', '/console/leases/bulk-revoke', { csrf: admin.token, subject: 'agent-bulk', reason: 'leaked' });
    expect(done.status).toBe(303);
    const location = done.headers.get('location')!;
    expect(location).toBe('/console/leases?subject=agent-bulk&status=revoking&notice=bulk_revoking&revoked=3');
    for (const status of await statuses(targets)) expect(['revoking', 'revoked']).toContain(status);
    expect(await statuses([keep])).toEqual(['active']);
    expect((await admin.request('GET', location)).text).toContain('3 leases moved to revoking.');
    const audit = await t.call('GET', '/v1/audit?target=leases:bulk', { bearer: await devToken(config.data_dir, 'admin') });
    expect(audit.json.items.map((e: { action: string; actor: string; reason: string }) => `${e.action} ${e.actor} ${e.reason}`)).toContain('admin.revoke dev/admin leaked');
  });
});
