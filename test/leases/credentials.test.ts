import { describe, expect, it } from 'vitest';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { freshId, type TestBroker, useTestBroker } from '../support/broker.js';

describe.each(DRIVERS)('credentials on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  async function openTask(subject = 'agent-1', extra: Record<string, unknown> = {}) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles: ['demo', 'flaky'], ttl_seconds: 600, ...extra });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }

  it('runs the whole flow: open, issue, introspect active, complete, revoked', async () => {
    const task = await openTask();
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
    expect(issued.status).toBe(201);
    expect(issued.headers.get('cache-control')).toBe('no-store');
    const token = issued.json.credentials.token as string;
    const leaseId = issued.json.lease.id as string;
    expect(issued.json.lease).toMatchObject({ status: 'active', task, role: 'demo', subject: 'agent-1', issuer: 'test' });

    const active = await t.call('POST', '/v1/introspect', { subject: 'agent-1' }, `token=${token}`, 'application/x-www-form-urlencoded');
    expect(active.json).toMatchObject({ active: true, jti: leaseId, task, role: 'demo', aud: 'demo-api', scope: 'demo:read', sub: 'agent-1' });

    const done = await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
    expect(done.status).toBe(202);
    expect(done.json.revoking).toBe(1);

    const inactive = await t.call('POST', '/v1/introspect', { subject: 'agent-1' }, `token=${token}`, 'application/x-www-form-urlencoded');
    expect(inactive.json).toEqual({ active: false });

    await t.broker.sweeper.runOnce();
    const view = await t.call('GET', `/v1/tasks/${task}`, { subject: 'orchestrator' });
    expect(view.json.task.status).toBe('completed');
    expect(view.json.leases).toHaveLength(1);
    expect(view.json.leases[0]).toMatchObject({ id: leaseId, status: 'revoked', reason: 'task_completed' });
  });

  it('clamps the TTL to the role maximum and to the task deadline', async () => {
    const task = await openTask();
    const long = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo', ttl_seconds: 86_400 });
    expect(long.status).toBe(201);
    const lease = long.json.lease;
    // The task has 600 s left; the role allows 1 h: the deadline wins.
    expect(Date.parse(lease.expires_at) - Date.parse(lease.issued_at)).toBe(600_000);
    expect(Date.parse(lease.backend_expires_at)).toBeLessThanOrEqual(Date.parse(lease.expires_at));

    const longTask = await openTask('agent-1', { ttl_seconds: 86_400 });
    const capped = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: longTask, role: 'flaky', ttl_seconds: 86_400 });
    expect(Date.parse(capped.json.lease.expires_at) - Date.parse(capped.json.lease.issued_at)).toBe(30 * 60_000);

    const short = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: longTask, role: 'demo', ttl_seconds: 60 });
    expect(Date.parse(short.json.lease.expires_at) - Date.parse(short.json.lease.issued_at)).toBe(60_000);
  });

  it('answers a task bound to another agent as if it did not exist (404), and audits the real reason', async () => {
    const task = await openTask('agent-1');
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-2' }, { task, role: 'demo' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.json.code).toBe('task_not_found');
    const audit = await t.call('GET', `/v1/audit?target=task:${task}&action=credential.denied`, { subject: 'admin' });
    expect(audit.json.items).toHaveLength(1);
    expect(audit.json.items[0]).toMatchObject({ actor: 'test/agent-2', decision: 'deny', reason: 'task is bound to another agent' });
  });

  it('answers 409 for a completed task', async () => {
    const task = await openTask();
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
    expect(res.status).toBe(409);
    expect(res.json.code).toBe('task_not_open');
  });

  it('denies an unknown role, a role the task does not allow, and a role the identity may not hold, with one code', async () => {
    const task = await openTask();
    for (const role of ['no-such-role', 'special']) {
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role });
      expect(res.status).toBe(403);
      expect(res.json.code).toBe('role_denied');
      expect(res.text).not.toContain('demo');
    }
  });

  it('answers 404 for a missing task and for another agent’s lease', async () => {
    const missing = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: freshId('nope'), role: 'demo' });
    expect(missing.status).toBe(404);
    const task = await openTask();
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
    const id = issued.json.lease.id;
    expect((await t.call('GET', `/v1/leases/${id}`, { subject: 'agent-1' })).status).toBe(200);
    for (const [method, path] of [['GET', `/v1/leases/${id}`], ['DELETE', `/v1/leases/${id}`], ['GET', '/v1/leases/not-a-uuid']] as const) {
      const res = await t.call(method, path, { subject: 'agent-2' });
      expect(res.status).toBe(404);
      expect(res.json.code).toBe('lease_not_found');
    }
    expect((await t.call('GET', `/v1/leases/${id}`, { subject: 'agent-1' })).json.lease.status).toBe('active');
  });

  it('releases an own lease: revoking at once, revoked after a sweep, idempotent', async () => {
    const task = await openTask();
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'flaky' });
    const id = issued.json.lease.id;
    const released = await t.call('DELETE', `/v1/leases/${id}`, { subject: 'agent-1' });
    expect(released.status).toBe(202);
    expect(released.json.lease).toMatchObject({ status: 'revoking', reason: 'released' });
    await t.broker.sweeper.runOnce();
    const again = await t.call('DELETE', `/v1/leases/${id}`, { subject: 'agent-1' });
    expect(again.status).toBe(202);
    expect(again.json.lease).toMatchObject({ status: 'revoked', reason: 'released' });
    expect(t.fake.revokeCalls.get(id)).toBe(1);
  });

  it('rejects malformed and invalid bodies with 400 problem+json and changes nothing', async () => {
    const cases: [string, string | undefined][] = [
      ['{not json', 'application/json'],
      ['{"task": 5, "role": "demo"}', 'application/json'],
      ['{"task": "t", "role": "demo", "ttl_seconds": -1}', 'application/json'],
      ['{"task": "t", "role": "demo", "extra": true}', 'application/json'],
      ['[]', 'application/json'],
    ];
    const before = await t.call('GET', '/v1/leases?limit=500', { subject: 'admin' });
    for (const [body, type] of cases) {
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, body, type);
      expect(res.status, body).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.json.code).toMatch(/^(bad_request|validation_failed)$/);
      expect(res.json.request_id).toBe(res.headers.get('x-request-id'));
    }
    const wrongType = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, 'task=x', 'text/plain');
    expect(wrongType.status).toBe(415);
    const after = await t.call('GET', '/v1/leases?limit=500', { subject: 'admin' });
    expect(after.json.items.length).toBe(before.json.items.length);
  });

  it('answers NUL bytes and lone surrogates anywhere with 400, never 500', async () => {
    const task = await openTask();
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
    const id = issued.json.lease.id;
    const cases: [string, string, { subject: string }, unknown][] = [
      ['POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-\u0000' }, roles: ['demo'], ttl_seconds: 60 }],
      ['POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'ok\u0000' }],
      ['POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, '{"outcome":"\\udc00"}'],
      ['GET', '/v1/leases?subject=a%00b', { subject: 'admin' }, undefined],
      ['GET', '/v1/audit?actor=a%00b', { subject: 'admin' }, undefined],
      ['POST', '/v1/revocations', { subject: 'admin' }, { subject: 'a\u0000', reason: 'x' }],
      ['POST', `/v1/leases/${id}/revoke`, { subject: 'admin' }, { reason: 'r\u0000' }],
      ['POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'x\u0000' }],
    ];
    for (const [method, path, as, body] of cases) {
      const res = await t.call(method, path, as, body);
      expect(res.status, `${method} ${path}`).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    expect((await t.call('GET', `/v1/tasks/${task}`, { subject: 'orchestrator' })).json.task.status).toBe('open');
    expect((await t.call('GET', `/v1/leases/${id}`, { subject: 'agent-1' })).json.lease.status).toBe('active');
  });

  it('refuses callers without a valid identity, and agents on orchestrator and admin routes', async () => {
    expect((await t.call('POST', '/v1/credentials', {}, { task: 'x', role: 'demo' })).json.code).toBe('token_missing');
    expect((await t.call('POST', '/v1/credentials', { bearer: 'a.b.c' }, { task: 'x', role: 'demo' })).status).toBe(401);
    const agentOpens = await t.call('POST', '/v1/tasks', { subject: 'agent-1' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 60 });
    expect(agentOpens.json.code).toBe('not_orchestrator');
    expect((await t.call('GET', '/v1/leases', { subject: 'agent-1' })).json.code).toBe('not_admin');
    expect((await t.call('POST', '/v1/credentials', { bearer: 'tl-admin-static-token-for-tests-only' }, { task: 'x', role: 'demo' })).json.code).toBe('not_agent');
  });

  it('hides a task from an orchestrator that did not open it', async () => {
    const task = await openTask();
    expect((await t.call('GET', `/v1/tasks/${task}`, { subject: 'orchestrator-2' })).status).toBe(404);
    expect((await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator-2' }, { outcome: 'x' })).status).toBe(404);
    expect((await t.call('GET', `/v1/tasks/${task}`, { subject: 'admin' })).status).toBe(200);
  });

  it('refuses a client-chosen task id and unknown roles when opening a task', async () => {
    const task = await openTask();
    const dup = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { id: task, agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 60 });
    expect(dup.status).toBe(400);
    expect(dup.json.code).toBe('task_id_not_accepted');
    const unknown = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['nope'], ttl_seconds: 60 });
    expect(unknown.json.code).toBe('unknown_role');
  });
});
