/**
 * The console's Notifications page (admins only), in process against both drivers: webhooks that answer 500 and
 * refuse connections show as failing, by name, with their error and never their URL or secret; the overview counts
 * them; "Retry now" makes a failing row due at once (audited) and the next pass delivers it.
 */
import { and, eq } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { auditEvents, outbox } from '../../src/db/schema.js';
import { startReceiver } from '../notify/receiver.js';
import { useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { trackBroker } from '../support/scan.js';
import { devConsoleConfig, signedIn } from './support.js';

const SECRET = 'whsec-console-notify-0123456789abcdef';
const HOOK_PATH = '/hooks/secret-path-in-the-url-7f3a';
const receiver = await startReceiver();
// A port that answered once and is closed now: connections to it are refused.
const closed = await startReceiver();
await closed.close();
afterAll(() => receiver.close());

const config = await devConsoleConfig({
  notifications: {
    max_attempts: 2,
    timeout: 1,
    failed_retry_interval: '10m',
    webhooks: [
      { name: 'approvers', url: `${receiver.url}${HOOK_PATH}`, format: 'json', secret: SECRET },
      { name: 'chat', url: `${closed.url}/services/T000/B000/slack-token-xyz`, format: 'slack' },
    ],
  },
});
const SECRETS = [SECRET, HOOK_PATH, receiver.url, closed.url, 'slack-token-xyz', `127.0.0.1:${receiver.port}`, `127.0.0.1:${closed.port}`];

describe.each(DRIVERS)('console notifications page (%s)', (driver) => {
  let t: TestBroker;
  let database: TestDatabase;
  useTestBroker(
    driver,
    (db, broker) => {
      database = db;
      t = broker;
      trackBroker(db, new Set([SECRET, HOOK_PATH, 'slack-token-xyz']), []);
    },
    { config },
  );

  const as = (subject: string) => signedIn(t, subject);

  async function requestApproval(agent: string): Promise<string> {
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: agent }, roles: ['gated'], ttl_seconds: 3600 });
    expect(task.status, task.text).toBe(201);
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task: task.json.task.id, role: 'gated' });
    expect(res.status, res.text).toBe(202);
    return res.json.approval.id as string;
  }
  const rowsOf = async (approvalId: string) =>
    Object.fromEntries((await database.db.select().from(outbox)).filter((r) => (r.payload.approval as { id: string }).id === approvalId).map((r) => [r.destination, r]));
  const failingCount = (page: string) => Number(/id="failing-count">(\d+)</.exec(page)?.[1] ?? -1);

  /** An approval whose two notifications have failed once: the receiver answered 500, the other port refused. */
  async function failedOnce(agent: string) {
    // Each case starts with both webhooks awake: an earlier case's failures left them resting (delivery.ts).
    t.broker.notifier.retryNow();
    receiver.answer({ status: 500 });
    const approval = await requestApproval(agent);
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 2 });
    const rows = await rowsOf(approval);
    expect(rows.approvers).toMatchObject({ status: 'pending', attempts: 1, lastError: 'answered 500' });
    expect(rows.chat).toMatchObject({ status: 'pending', attempts: 1, lastError: 'could not connect (ECONNREFUSED)' });
    return { approval, hook: rows.approvers!.id, chat: rows.chat!.id };
  }

  it('lists failing deliveries by webhook name with their error, never the URL or the secret; the overview counts them', async () => {
    const admin = await as('admin');
    const before = failingCount((await admin.request('GET', '/console')).text);
    const { approval, hook, chat } = await failedOnce('agent-fail');

    const page = await admin.request('GET', '/console/notifications');
    expect(page.status, page.text.slice(0, 500)).toBe(200);
    const rowOf = (id: string) => new RegExp(`<tr id="notification-${id}">([\\s\\S]*?)</tr>`).exec(page.text)?.[1] ?? '';
    expect(rowOf(hook)).toContain('<td>approvers</td>');
    expect(rowOf(hook)).toContain('answered 500');
    expect(rowOf(hook)).toContain(`href="/console/approvals/${approval}"`);
    expect(rowOf(hook)).toContain(`action="/console/notifications/${hook}/retry"`);
    expect(rowOf(chat)).toContain('<td>chat</td>');
    expect(rowOf(chat)).toContain('could not connect (ECONNREFUSED)');
    expect(page.text).toContain('href="/console/notifications" class="active"');
    expect(page.text).toMatch(/The oldest undelivered waits since <time datetime="\d{4}-/);
    for (const secret of SECRETS) expect(page.text, secret).not.toContain(secret);

    const overview = await admin.request('GET', '/console');
    expect(failingCount(overview.text) - before).toBe(2);
    expect(overview.text).toMatch(/<section id="notifications" class="error">[\s\S]*href="\/console\/notifications"[\s\S]*the oldest waits since <time datetime="\d{4}-/);
  });

  it('cuts a URL out of a last error before showing it', async () => {
    const { hook } = await failedOnce('agent-url');
    await database.db.update(outbox).set({ lastError: 'POST https://hooks.example.test/services/T/B/leak failed' }).where(eq(outbox.id, hook));
    const page = await (await as('admin')).request('GET', '/console/notifications');
    expect(page.text).toContain('POST [url] failed');
    expect(page.text).not.toContain('hooks.example.test');
  });

  it('"Retry now" makes a failing delivery due at once, audited; the next pass delivers it', async () => {
    const { hook } = await failedOnce('agent-retry');
    const admin = await as('admin');
    const approver = await as('approver-a');
    const path = `/console/notifications/${hook}/retry`;
    const [row] = await database.db.select().from(outbox).where(eq(outbox.id, hook));
    expect(row!.nextAttemptAt.getTime()).toBeGreaterThan(t.clock.now().getTime());

    // Refused: no CSRF token, another session's token, a non-admin. Nothing changes.
    expect((await admin.request('POST', path, {})).status).toBe(403);
    expect((await admin.request('POST', path, { csrf: approver.token })).status).toBe(403);
    expect((await approver.request('POST', path, { csrf: approver.token })).status).toBe(403);
    const [unchanged] = await database.db.select().from(outbox).where(eq(outbox.id, hook));
    expect(unchanged!.nextAttemptAt).toEqual(row!.nextAttemptAt);
    const audited = () => database.db.select().from(auditEvents).where(and(eq(auditEvents.action, 'notification.retry_requested'), eq(auditEvents.target, `notification:${hook}`)));
    expect(await audited()).toHaveLength(0);

    const retried = await admin.request('POST', path, { csrf: admin.token });
    expect({ status: retried.status, location: retried.headers.get('location') }).toEqual({ status: 303, location: '/console/notifications?notice=retry_scheduled' });
    const [due] = await database.db.select().from(outbox).where(eq(outbox.id, hook));
    expect(due).toMatchObject({ status: 'pending', attempts: 1, nextAttemptAt: t.clock.now() });
    const [event] = await audited();
    expect(event).toMatchObject({ actor: 'dev/admin', decision: 'allow', details: { destination: 'approvers', status: 'pending', attempts: 1 } });

    // Due now, with no clock advance: the receiver answers 200 this time. (The closed port's row is not due yet.)
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 1, failed: 0 });
    const [delivered] = await database.db.select().from(outbox).where(eq(outbox.id, hook));
    expect(delivered).toMatchObject({ status: 'delivered', attempts: 2, lastError: null });
    const page = await admin.request('GET', '/console/notifications?notice=retry_scheduled');
    expect(/<section id="delivered">[\s\S]*<\/section>/.exec(page.text)?.[0]).toContain(`id="notification-${hook}"`);
    expect(/<section id="failing"[\s\S]*?<\/section>/.exec(page.text)?.[0]).not.toContain(`id="notification-${hook}"`);
    expect(page.text).toContain('Due now');

    // A delivered row is not failing: nothing to retry, nothing audited; an unknown or malformed id is a 404 page.
    const again = await admin.request('POST', path, { csrf: admin.token });
    expect(again.headers.get('location')).toBe('/console/notifications?notice=not_failing');
    expect(await audited()).toHaveLength(1);
    expect((await admin.request('POST', `/console/notifications/${'0'.repeat(8)}-0000-7000-8000-${'0'.repeat(12)}/retry`, { csrf: admin.token })).status).toBe(404);
    expect((await admin.request('POST', '/console/notifications/not-an-id/retry', { csrf: admin.token })).status).toBe(404);
  });

  it('refuses the page to non-admins and hides its link from them', async () => {
    const approver = await as('approver-a');
    expect((await approver.request('GET', '/console/notifications')).status).toBe(403);
    expect((await approver.request('GET', '/console/approvals')).text).not.toContain('href="/console/notifications"');
    expect((await (await as('admin')).request('GET', '/console/approvals')).text).toContain('href="/console/notifications"');
  });
});
