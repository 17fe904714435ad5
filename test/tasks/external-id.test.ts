/**
 * Task ids are the broker's; an orchestrator's own reference is its
 * external_id, unique among its own tasks only. No orchestrator can learn of
 * another's tasks, or claim an id another will use (issue 14, item 3.6).
 */
import { describe, expect, it } from 'vitest';
import { UUID_RE } from '../../src/ids.js';
import { freshId, type TestBroker, useTestBroker } from '../support/broker.js';
import { DRIVERS } from '../support/db.js';

describe.each(DRIVERS)('task ids and external ids on %s', (driver) => {
  let t!: TestBroker;
  useTestBroker(driver, (_d, b) => (t = b));

  const body = (external_id: string, extra: Record<string, unknown> = {}) => ({
    external_id,
    agent: { subject: 'agent-1' },
    roles: ['demo', 'flaky'],
    ttl_seconds: 600,
    labels: { team: 'a', env: 'test' },
    ...extra,
  });
  const open = (as: string, b: unknown) => t.call('POST', '/v1/tasks', { subject: as }, b);

  it('squatting: another orchestrator sending the same external_id opens its own task and learns nothing', async () => {
    const ext = freshId('ext');
    const a = await open('orchestrator', body(ext));
    expect(a.status, a.text).toBe(201);
    expect(a.json.task.id).toMatch(UUID_RE);
    expect(a.json.task.external_id).toBe(ext);

    const b = await open('orchestrator-2', body(ext));
    expect(b.status, b.text).toBe(201);
    expect(b.json.task.id).not.toBe(a.json.task.id);
    expect(b.json.task.created_by).not.toBe(a.json.task.created_by);
    expect(b.text).not.toContain(a.json.task.id);

    // A's task is A's: B neither sees, lists nor completes it, and A's retries still find it.
    expect((await t.call('GET', `/v1/tasks/${a.json.task.id}`, { subject: 'orchestrator-2' })).json.code).toBe('task_not_found');
    const complete = await t.call('POST', `/v1/tasks/${a.json.task.id}/complete`, { subject: 'orchestrator-2' }, { outcome: 'x' });
    expect(complete.status).toBe(404);
    expect(complete.json.code).toBe('task_not_found');
    const listed = await t.call('GET', `/v1/tasks?external_id=${ext}`, { subject: 'orchestrator-2' });
    expect(listed.json.items.map((x: { id: string }) => x.id)).toEqual([b.json.task.id]);
    const retried = await open('orchestrator', body(ext));
    expect(retried.status).toBe(200);
    expect(retried.json.task).toMatchObject({ id: a.json.task.id, status: 'open' });
  });

  it('answers a retry with the same request with the first task, and a different one with 409 naming it', async () => {
    const ext = freshId('ext');
    const first = await open('orchestrator', body(ext));
    expect(first.status).toBe(201);
    // The same request, roles and labels in another order, a moment later.
    t.clock.advance(5);
    const again = await open('orchestrator', body(ext, { roles: ['flaky', 'demo', 'flaky'], labels: { env: 'test', team: 'a' } }));
    expect(again.status, again.text).toBe(200);
    expect(again.json.task).toEqual(first.json.task);

    for (const change of [{ ttl_seconds: 601 }, { roles: ['demo'] }, { agent: { subject: 'agent-2' } }, { labels: {} }, { max_leases: 1 }]) {
      const other = await open('orchestrator', body(ext, change));
      expect(other.status, JSON.stringify(change)).toBe(409);
      expect(other.json).toMatchObject({ code: 'task_exists', task: first.json.task.id });
    }
    const listed = await t.call('GET', `/v1/tasks?external_id=${ext}`, { subject: 'orchestrator' });
    expect(listed.json.items).toEqual([first.json.task]);
  });

  it('opens one task for concurrent retries', async () => {
    const ext = freshId('ext');
    const answers = await Promise.all(Array.from({ length: 6 }, () => open('orchestrator', body(ext))));
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    expect(new Set(answers.map((r) => r.json.task.id)).size).toBe(1);
  });

  it('refuses a client-chosen id with a code that says what to send instead, and opens nothing', async () => {
    const id = freshId();
    const res = await open('orchestrator', { id, agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.json.code).toBe('task_id_not_accepted');
    expect(res.json.detail).toContain('external_id');
    expect((await t.call('GET', `/v1/tasks/${id}`, { subject: 'orchestrator' })).status).toBe(404);
    // A body that is not JSON is refused for its media type first, as on every route.
    expect((await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, JSON.stringify({ id }), 'text/plain')).json.code).toBe('unsupported_media_type');
  });

  it('assigns a fresh id to every task opened without an external_id', async () => {
    const plain = { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 };
    const [one, two] = await Promise.all([open('orchestrator', plain), open('orchestrator', plain)]);
    expect([one!.status, two!.status]).toEqual([201, 201]);
    expect(one!.json.task.external_id).toBeNull();
    expect(one!.json.task.id).not.toBe(two!.json.task.id);
    expect((await t.call('GET', '/v1/tasks', { subject: 'orchestrator' })).json.code).toBe('validation_failed');
  });
});
