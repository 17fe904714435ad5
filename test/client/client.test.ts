// The SDK against a real broker over HTTP: issue, renew and release through a
// lease handle, `await using`, withTask on every exit path, refusals as
// TaskleaseError (not retried). Run on PGlite and on PostgreSQL.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createClient, TaskleaseError, type Client } from 'tasklease/client';
import { freshId, startTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { serveBroker } from './support.js';

describe.each(DRIVERS)('tasklease/client on %s', (driver) => {
  let database: TestDatabase;
  let t: TestBroker;
  let http: Awaited<ReturnType<typeof serveBroker>>;
  let agent: Client;
  let orchestrator: Client;
  const requests: string[] = [];
  /** The fetch under both clients, recording each request the broker gets. */
  const recording = (input: Request) => {
    requests.push(`${input.method} ${new URL(input.url).pathname}`);
    return fetch(input);
  };

  beforeAll(async () => {
    database = await openTestDatabase(driver);
    t = await startTestBroker(database);
    // The fake backend renews (the jwt backend of `demo` does not).
    t.fake.backend.renew = async ({ incrementSeconds }) => ({ expiresAt: new Date(t.clock.now().getTime() + incrementSeconds * 1000) });
    http = await serveBroker(t);
    agent = createClient({ url: http.url, token: () => t.tokenFor('agent-1'), fetch: recording });
    orchestrator = createClient({ url: http.url, token: () => t.tokenFor('orchestrator'), fetch: recording });
  });
  afterAll(async () => {
    await http?.close();
    await database?.drop();
  });

  const openTask = (roles = ['demo', 'flaky']) => orchestrator.tasks.open({ agent: { subject: 'agent-1' }, roles, ttl_seconds: 3600, external_id: freshId() });
  const statusOf = async (id: string) => (await t.call('GET', `/v1/leases/${id}`, { subject: 'agent-1' })).json.lease.status as string;

  it('issues through a handle, renews it before expiry, and releases it once', async () => {
    const task = await openTask();
    const changes: string[] = [];
    // A 2-second lease: the handle renews it once a third of that is left, timed by the broker's Date
    // header (the real clock), so the broker's manual clock is brought to the real time first.
    t.clock.set(new Date());
    const handle = await agent.credentials(task.id, 'flaky', { ttlSeconds: 2, onChange: (h) => changes.push(h.lease.expires_at) });
    expect(handle.credentials).toMatchObject({ type: 'fake' });
    const first = handle.lease.expires_at;
    await vi.waitFor(() => expect(changes).toHaveLength(1), { timeout: 10_000, interval: 50 });
    expect(Date.parse(handle.lease.expires_at)).toBeGreaterThan(Date.parse(first));
    expect(handle.renewing).toBe(true);

    await Promise.all([handle.release(), handle.release()]);
    await handle.release();
    expect(requests.filter((r) => r === `DELETE /v1/leases/${handle.lease.id}`)).toHaveLength(1);
    expect(handle.renewing).toBe(false);
    expect(await statusOf(handle.lease.id)).not.toBe('active');
  });

  it('stops renewing when the role does not allow it (not_renewable)', async () => {
    const task = await openTask();
    const errors: unknown[] = [];
    t.clock.set(new Date());
    const handle = await agent.credentials(task.id, 'demo', { ttlSeconds: 2, onError: (err) => errors.push(err) });
    await vi.waitFor(() => expect(errors).toHaveLength(1), { timeout: 10_000, interval: 50 });
    expect(errors[0]).toBeInstanceOf(TaskleaseError);
    expect((errors[0] as TaskleaseError).code).toBe('not_renewable');
    expect(handle.renewing).toBe(false);
    await handle.release();
  });

  it('releases the lease when an `await using` block ends, by a throw too', async () => {
    const task = await openTask();
    let id = '';
    await expect(
      (async () => {
        await using handle = await agent.credentials(task.id, 'demo');
        id = handle.lease.id;
        expect(await statusOf(id)).toBe('active');
        throw new Error('the agent failed');
      })(),
    ).rejects.toThrow('the agent failed');
    expect(await statusOf(id)).not.toBe('active');
  });

  it('withTask completes the task succeeded on return and failed on throw', async () => {
    const value = await orchestrator.tasks.withTask({ agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 }, async (task) => {
      expect(task.status).toBe('open');
      return task.id;
    });
    expect((await orchestrator.tasks.get(value)).task).toMatchObject({ status: 'completed', outcome: 'succeeded' });

    let opened = '';
    let leaseId = '';
    await expect(
      orchestrator.tasks.withTask({ agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 }, async (task) => {
        opened = task.id;
        leaseId = (await agent.credentials(task.id, 'demo')).lease.id;
        throw new Error('the agent crashed');
      }),
    ).rejects.toThrow('the agent crashed');
    expect((await orchestrator.tasks.get(opened)).task).toMatchObject({ status: 'completed', outcome: 'failed' });
    // Completion revoked the lease the agent never released.
    expect(await statusOf(leaseId)).not.toBe('active');
  });

  it('turns a refusal into a TaskleaseError with its code, and does not retry it', async () => {
    const task = await openTask(['demo']);
    requests.length = 0;
    const refused = await agent.credentials(task.id, 'special').catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(TaskleaseError);
    expect(refused).toMatchObject({ code: 'role_denied', status: 403 });
    expect((refused as TaskleaseError).requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect((refused as TaskleaseError).detail).toBeTruthy();
    expect(requests).toEqual(['POST /v1/credentials']);

    await orchestrator.tasks.complete(task.id, 'succeeded');
    const closed = await agent.credentials(task.id, 'demo').catch((err: unknown) => err);
    expect(closed).toMatchObject({ code: 'task_not_open', status: 409 });
  });
});
