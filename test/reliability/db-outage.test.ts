import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import { leases } from '../../src/db/schema.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { ADMIN_STATIC_TOKEN, freshId, startTestBroker, type TestBroker } from '../support/broker.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

describe('a database outage during load', () => {
  let direct: TestDatabase;
  let viaProxy: Database;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let t: TestBroker;

  beforeAll(async () => {
    direct = await openTestDatabase('postgres');
    proxy = await startTcpProxy({ host: '127.0.0.1', port: 5432 });
    const url = direct.url!.replace('127.0.0.1:5432', `127.0.0.1:${proxy.port}`);
    viaProxy = await openDatabase({ url, dataDir: '/nonexistent', poolSize: 8 });
    t = await startTestBroker(viaProxy, { config: { log_level: 'silent' } });
  });
  afterAll(async () => {
    await viaProxy?.close().catch(() => {});
    await proxy?.close();
    await direct?.drop();
  });

  it('fails closed with 503 problem+json, releases no credential without a committed lease, and recovers without a restart', async () => {
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 3600 });
    expect(opened.status).toBe(201);
    const task = opened.json.task.id;
    expect((await t.call('GET', '/readyz', {})).status).toBe(200);

    const issued: string[] = [];
    const statuses = new Map<number, number>();
    let stop = false;
    const load = Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 200 && !stop; i++) {
        const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 201) issued.push(res.json.lease.id);
        else {
          expect(res.status, res.text).toBe(503);
          expect(res.headers.get('content-type')).toContain('application/problem+json');
          expect(['database_unavailable', 'request_timeout']).toContain(res.json.code);
          expect(res.text).not.toContain('eyJ'); // no token in an error
        }
      }
    });
    await new Promise((r) => setTimeout(r, 150));
    proxy.down();
    await new Promise((r) => setTimeout(r, 300));
    const during = await t.call('GET', '/readyz', {});
    expect(during.status).toBe(503);
    expect((await t.call('GET', '/v1/readiness', { bearer: ADMIN_STATIC_TOKEN })).json.checks.database).toBe(false);
    proxy.up();
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(load);
    console.log('statuses during the outage run:', Object.fromEntries(statuses));

    // Recovered without a restart.
    const after = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
    expect(after.status).toBe(201);
    expect((await t.call('GET', '/readyz', {})).status).toBe(200);
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);

    // Every credential a client received has its committed lease row.
    const rows = await direct.db.select({ id: leases.id }).from(leases).where(inArray(leases.id, issued.length ? issued : ['00000000-0000-0000-0000-000000000000']));
    expect(rows.length).toBe(issued.length);
    const all = await direct.db.select({ id: leases.id }).from(leases).where(eq(leases.taskId, task));
    expect(all.length).toBeGreaterThanOrEqual(issued.length);
  });
});
