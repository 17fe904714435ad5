import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema.js';
import { createIssuer } from '../../src/leases/issue.js';
import { createLeaseWriter } from '../../src/leases/writer.js';
import { createLogger } from '../../src/log.js';
import { createPolicy } from '../../src/policy/decide.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { type TestBroker, useTestBroker } from '../support/broker.js';

describe.each(DRIVERS)('issuance racing task completion on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  // Five rounds: the commit and the completion take the same locks (task row, then the audit chain's head)
  // in the same order, so neither side ever fails with a deadlock, whatever the interleaving.
  it.each([1, 2, 3, 4, 5])('never leaves an active lease on a completed task, and revokes every credential it did not record (round %i)', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-race' }, roles: ['flaky'], ttl_seconds: 600 })).json.task.id;
    const mintedBefore = new Set(t.fake.mintedIds());
    const requests = Array.from({ length: 30 }, () => t.call('POST', '/v1/credentials', { subject: 'agent-race' }, { task, role: 'flaky' }));
    const completion = t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
    const results = await Promise.all(requests);
    expect((await completion).status).toBe(202);
    await t.broker.sweeper.runOnce();

    const issued = results.filter((r) => r.status === 201).map((r) => r.json.lease.id as string);
    const refused = results.filter((r) => r.status !== 201);
    for (const r of refused) expect([r.status, r.json.code]).toEqual([409, 'task_not_open']);
    const rows = await database.db.select().from(leases).where(eq(leases.taskId, task));
    // Every credential that was minted has a row: the issued ones, and those whose task closed mid-mint.
    const ids = rows.map((r) => r.id);
    for (const id of issued) expect(ids).toContain(id);
    for (const row of rows) expect(row.status).toBe('revoked');
    for (const row of rows.filter((r) => !issued.includes(r.id))) {
      expect(row.reason).toBe('task_closed');
      const audit = await t.call('GET', `/v1/audit?target=lease:${row.id}&action=credential.denied`, { subject: 'admin' });
      expect(audit.json.items).toHaveLength(1);
    }
    // Every credential minted here, recorded or refused at commit, was revoked at the backend.
    const minted = t.fake.mintedIds().filter((id) => !mintedBefore.has(id));
    expect(minted.length).toBeGreaterThanOrEqual(issued.length);
    for (const id of minted) expect(t.fake.revokeCalls.get(id), id).toBeGreaterThanOrEqual(1);
  });
});

const noLimits = { check: async () => undefined, constrained: () => false, lockKeys: () => [] };
const unregistered = { generation: 0, kind: 'unregistered' as const };

describe('a commit that fails after minting', () => {
  const role = { name: 'r', backend: 'b', ttl: 60, max_ttl: 60, allow: [{ issuer: 'i', subject: 'a' }], approvers: [] };
  const task = { id: 't', agentIssuer: null, agentSubject: 'a', roles: ['r'], status: 'open', labels: {}, createdBy: 'o', createdAt: new Date(), deadline: new Date(Date.now() + 60_000) };
  const identity = { issuer: 'i', subject: 'a', claims: {}, tokenSha256: 'h', expiresAt: new Date() };
  function issuer(writer: Pick<Parameters<typeof createIssuer>[0], 'writer'>['writer'], forgotten: string[] = []) {
    const revoked: string[] = [];
    const backend = {
      name: 'b',
      type: 'fake',
      mint: async ({ leaseId, now }: { leaseId: string; now: Date }) => ({ credentials: { secret: 's' }, ref: `ref-${leaseId}`, expiresAt: now }),
      revoke: async ({ ref }: { ref: string }) => {
        revoked.push(ref);
      },
    };
    const issue = createIssuer({
      db: {} as never,
      clock: { now: () => new Date() },
      policy: createPolicy([role as never]),
      limits: noLimits,
      approvals: {} as never,
      refusals: { refuse: async () => {} },
      backends: new Map([['b', backend as never]]),
      writer,
      taskCache: { get: async () => task as never, forget: (id) => forgotten.push(id) },
      log: createLogger('silent'),
      agents: { resolve: async () => unregistered, resolveAt: async () => unregistered },
    });
    return { issue, revoked };
  }

  it('revokes the minted credential and returns the error (recorded before released)', async () => {
    const failure = new Error('connection lost');
    const { issue, revoked } = issuer({ recordLease: async () => Promise.reject(failure), audit: async () => {} });
    await expect(issue({ identity, taskId: 't', roleName: 'r' })).rejects.toBe(failure);
    expect(revoked).toHaveLength(1);
  });

  it('forgets a cached task that the commit found closed, so the next request reads it again', async () => {
    const forgotten: string[] = [];
    const refusal = { code: 'task_not_open' as const, reason: 'task closed while the credential was minted', extra: {} };
    const { issue } = issuer({ recordLease: async (row) => ({ lease: row as never, refusal }), audit: async () => {} }, forgotten);
    await expect(issue({ identity, taskId: 't', roleName: 'r' })).rejects.toMatchObject({ code: 'task_not_open' });
    expect(forgotten).toEqual(['t']);
  });
});

describe.each(DRIVERS)('one bad request in a group commit on %s', (driver) => {
  let t!: TestBroker;
  let database!: TestDatabase;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  it('a value the database refuses fails only its own item in the batch', async () => {
    const writer = createLeaseWriter({ writes: database.writes, limits: noLimits, onRevokeRequested: () => {} });
    const event = (target: string, details: Record<string, unknown> = {}) => ({ at: new Date(), actor: 'test', action: 'test.event', target, details });
    const results = await Promise.allSettled([
      writer.audit([event('ok-1')]),
      writer.audit([event('bad', { x: 'a\u0000b' })]),
      writer.audit([event('ok-2')]),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('fails only itself; its neighbours are issued', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-batch' }, roles: ['demo'], ttl_seconds: 600 })).json.task.id;
    const good = Array.from({ length: 12 }, () => t.call('POST', '/v1/credentials', { subject: 'agent-batch' }, { task, role: 'demo' }));
    const bad = t.call('POST', '/v1/credentials', { subject: 'agent-batch' }, { task: 'nope', role: 'x\u0000' });
    const results = await Promise.all([...good, bad]);
    expect(results.slice(0, 12).map((r) => r.status)).toEqual(Array(12).fill(201));
    expect(results[12]!.status).toBe(400);
  });
});
