import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApprovalService } from '../../src/approvals/service.js';
import { approvals, outbox } from '../../src/db/schema.js';
import type { Policy } from '../../src/policy/decide.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { trackBroker } from '../support/scan.js';
import { startReceiver, verifyDelivery, type Receiver } from './receiver.js';

const SECRET = 'whsec-notify-test-0123456789abcdef';
const SLACK_PATH = '/services/T000/B000/slack-url-is-a-secret-xyz';
const agents = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

describe.each(DRIVERS)('approval notifications on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  let hooks!: Receiver;
  let slack!: Receiver;
  let elsewhere!: Receiver;

  beforeAll(async () => {
    [hooks, slack, elsewhere] = await Promise.all([startReceiver(), startReceiver(), startReceiver()]);
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, {
      config: {
        roles: [...HARNESS_ROLES, { name: 'gated', backend: 'local', allow: agents, requires_approval: true }],
        notifications: {
          max_attempts: 2,
          timeout: 1,
          failed_retry_interval: '10m',
          webhooks: [
            { name: 'hooks', url: `${hooks.url}/hook`, format: 'json', secret: SECRET },
            { name: 'chat', url: `${slack.url}${SLACK_PATH}`, format: 'slack', console_url: 'https://console.example.test/ui' },
          ],
        },
      },
    });
    // The end-of-suite scan looks for both in every table and log line.
    trackBroker(database, new Set([SECRET, SLACK_PATH]), []);
  });
  afterAll(async () => {
    await database?.drop();
    await Promise.all([hooks?.close(), slack?.close(), elsewhere?.close()]);
  });

  async function requestApproval(agent: string): Promise<string> {
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['gated'], ttl_seconds: 3600 });
    expect(task.status).toBe(201);
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task: task.json.task.id, role: 'gated', ttl_seconds: 300 });
    expect(res.status).toBe(202);
    return res.json.approval.id as string;
  }

  const rowsOf = async (approvalId: string) =>
    (await database.db.select().from(outbox)).filter((r) => (r.payload.approval as { id: string }).id === approvalId).sort((a, b) => a.destination.localeCompare(b.destination));
  const rowTo = async (approvalId: string, destination: string) => (await rowsOf(approvalId)).find((r) => r.destination === destination)!;
  const bodiesFor = (receiver: Receiver, approvalId: string) => receiver.received.filter((r) => r.body.includes(approvalId));
  const metric = async (line: string) => (await t.broker.metrics.registry.metrics()).split('\n').find((l) => l.startsWith(line));

  it('writes one row per webhook with the request, then delivers a signed JSON body and a Slack message', async () => {
    hooks.reset();
    slack.reset();
    const id = await requestApproval('agent-1');
    const rows = await rowsOf(id);
    expect(rows.map((r) => [r.destination, r.status, r.kind, r.attempts])).toEqual([
      ['chat', 'pending', 'approval.requested', 0],
      ['hooks', 'pending', 'approval.requested', 0],
    ]);
    // Facts only: no token hash, no URL, no secret.
    expect(Object.keys(rows[0]!.payload.approval as object).sort()).toEqual(['expires_at', 'id', 'requested_ttl_seconds', 'requester', 'required_by', 'role', 'task']);

    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 2, failed: 0 });

    const [json] = bodiesFor(hooks, id);
    expect(json!.path).toBe('/hook');
    expect(verifyDelivery(json!.headers, json!.body, SECRET, Math.floor(t.clock.now().getTime() / 1000))).toEqual({ ok: true });
    const body = JSON.parse(json!.body);
    expect(body).toEqual({
      id: rows[1]!.id,
      type: 'approval.requested',
      approval: {
        id,
        task: expect.any(String),
        role: 'gated',
        requester: { issuer: 'test', subject: 'agent-1' },
        required_by: 'role:gated',
        requested_ttl_seconds: 300,
        expires_at: expect.any(String),
      },
      console_url: `https://tasklease.test/console/approvals/${id}`,
      sent_at: t.clock.now().toISOString(),
    });
    expect(json!.headers['tasklease-delivery']).toBe(rows[1]!.id);

    const [message] = bodiesFor(slack, id);
    expect(message!.path).toBe(SLACK_PATH);
    const slackBody = JSON.parse(message!.body);
    expect(slackBody.text).toContain('test/agent-1 asks for role gated');
    expect(slackBody.text).toContain(`<https://console.example.test/ui/approvals/${id}|Review it in the console>`);
    expect(slackBody.blocks.at(-1).elements[0].url).toBe(`https://console.example.test/ui/approvals/${id}`);
    expect(message!.headers['tasklease-signature']).toBeUndefined();

    for (const row of await rowsOf(id)) expect(row).toMatchObject({ status: 'delivered', attempts: 1, lastError: null, claimedBy: null });
    expect(await metric('tasklease_notifications_delivered_total{destination="hooks"}')).toBeDefined();
    // Nothing is due any more.
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 0 });
  });

  it('a forged or replayed delivery fails verification (the receiver side documented)', async () => {
    const { headers, body } = bodiesFor(hooks, '')[0] ?? { headers: {}, body: '' };
    const now = Math.floor(t.clock.now().getTime() / 1000);
    expect(verifyDelivery(headers, body.replace('agent-1', 'agent-2'), SECRET, now)).toEqual({ ok: false, why: 'bad signature' });
    expect(verifyDelivery(headers, body, 'another-secret-0123456789', now)).toEqual({ ok: false, why: 'bad signature' });
    expect(verifyDelivery(headers, body, SECRET, now + 301)).toEqual({ ok: false, why: 'stale timestamp' });
  });

  it('keeps a Slack-link injection in a subject as text', async () => {
    slack.reset();
    const id = await requestApproval('agent-<https://evil.example|click here>');
    await t.broker.notifier.runOnce();
    const text = JSON.parse(bodiesFor(slack, id)[0]!.body).text as string;
    expect(text).toContain('agent-&lt;https://evil.example|click here&gt;');
    expect(text).not.toContain('<https://evil.example');
  });

  it('retries with backoff when the receiver answers 500, then delivers', async () => {
    hooks.reset();
    hooks.answer({ status: 500 });
    const id = await requestApproval('agent-retry');
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 1, failed: 1 });
    const failed = await rowTo(id, 'hooks');
    expect(failed).toMatchObject({ status: 'pending', attempts: 1, lastError: 'answered 500', claimedBy: null });
    const wait = failed.nextAttemptAt.getTime() - t.clock.now().getTime();
    expect(wait).toBeGreaterThanOrEqual(500);
    expect(wait).toBeLessThanOrEqual(1000);
    // Not due yet: nothing is sent.
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 0 });
    t.clock.advance(1);
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 1, failed: 0 });
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'delivered', attempts: 2, lastError: null });
    const deliveries = bodiesFor(hooks, id);
    expect(deliveries).toHaveLength(2);
    // One notification, one delivery id, however often it is tried.
    expect(new Set(deliveries.map((d) => d.headers['tasklease-delivery'])).size).toBe(1);
    // A receiver's body never reaches the row (it echoed ours).
    expect(JSON.stringify(await rowsOf(id))).not.toContain('echo');
  });

  it('marks a notification failed after max_attempts, visibly, and still retries it slowly', async () => {
    hooks.reset();
    hooks.answer({ status: 503 }, { status: 503 }, { status: 503 });
    const id = await requestApproval('agent-failing');
    await t.broker.notifier.runOnce();
    t.clock.advance(2);
    await t.broker.notifier.runOnce();
    const row = await rowTo(id, 'hooks');
    expect(row).toMatchObject({ status: 'failed', attempts: 2, lastError: 'answered 503' });
    expect(row.nextAttemptAt.getTime() - t.clock.now().getTime()).toBe(600_000);
    expect(await metric('tasklease_notifications_undelivered{destination="hooks",status="failed"} 1')).toBeDefined();
    expect(Number((await metric('tasklease_notification_failures_total{destination="hooks"}'))!.split(' ')[1])).toBeGreaterThanOrEqual(3);
    // Retried only after failed_retry_interval; a failure there keeps it failed.
    t.clock.advance(300);
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 0 });
    t.clock.advance(300);
    await t.broker.notifier.runOnce();
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'failed', attempts: 3 });
    t.clock.advance(600);
    await t.broker.notifier.runOnce();
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'delivered', attempts: 4, lastError: null });
    expect(await metric('tasklease_notifications_undelivered{destination="hooks",status="failed"}')).toBeUndefined();
  });

  it('never follows a redirect: the notification goes to its URL only', async () => {
    hooks.reset();
    elsewhere.reset();
    hooks.answer({ status: 307, location: `${elsewhere.url}/stolen` });
    const id = await requestApproval('agent-redirect');
    await t.broker.notifier.runOnce();
    expect(elsewhere.received).toHaveLength(0);
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'pending', lastError: 'answered 307 (redirects are not followed)' });
    t.clock.advance(2);
    await t.broker.notifier.runOnce();
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'delivered' });
  });

  it('gives up on a receiver that does not answer within the timeout', async () => {
    hooks.reset();
    hooks.answer({ status: 0 });
    const id = await requestApproval('agent-hang');
    await t.broker.notifier.runOnce();
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'pending', attempts: 1, lastError: 'timed out after 1s' });
    t.clock.advance(2);
    await t.broker.notifier.runOnce();
    expect(await rowTo(id, 'hooks')).toMatchObject({ status: 'delivered' });
  });

  it('keeps the webhook secret and the Slack URL out of rows and logs', async () => {
    const rows = JSON.stringify(await database.db.select().from(outbox));
    const logs = t.logs.lines.join('\n');
    expect(logs).toContain('notification not delivered');
    for (const secret of [SECRET, SLACK_PATH, slack.url, hooks.url]) {
      expect(rows).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });

  it('writes the outbox row in the request transaction: if it cannot be written, there is no request', async () => {
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-atomic' }, roles: ['gated'], ttl_seconds: 3600 });
    let appended = false;
    const service = createApprovalService({
      db: database.db,
      clock: t.clock,
      policy: {} as Policy,
      ttlSeconds: 60,
      outbox: {
        async append(tx, approval) {
          await tx.insert(outbox).values({ id: approval.id, kind: 'approval.requested', destination: 'hooks', payload: {}, createdAt: t.clock.now(), nextAttemptAt: t.clock.now() });
          throw new Error('outbox unavailable');
        },
        appended: () => (appended = true),
      },
    });
    const identity = { issuer: 'test', subject: 'agent-atomic', tokenSha256: 'a'.repeat(64), claims: {} } as never;
    await expect(service.request({ identity, taskId: task.json.task.id, role: 'gated', requiredBy: 'role:gated' })).rejects.toThrow('outbox unavailable');
    expect(appended).toBe(false);
    expect(await database.db.select().from(approvals).where(eq(approvals.taskId, task.json.task.id))).toHaveLength(0);
  });
});
