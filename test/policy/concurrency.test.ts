import { and, eq } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { leases, type Lease } from '../../src/db/schema.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { startTestBroker, type TestBroker, useTestBroker } from '../support/broker.js';

const agents = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
// The fake backend records every credential it mints and every revocation, recorded or not.
const role = (name: string) => ({ name, backend: 'fake', ttl: '15m', max_ttl: '1h', allow: agents });

const CONFLICT = {
  roles: [role('role-a'), role('role-b')],
  policy: { conflicts: [{ name: 'a-and-b', roles: ['role-a', 'role-b'], scope: 'task' as const }] },
};
const QUOTA = { roles: [role('role-q')], policy: { quotas: { max_active_per_task: 5 } } };

type Call = Awaited<ReturnType<TestBroker['call']>>;

/**
 * A broker and a second replica on the same database (its own writer, so its
 * commits race the first one's in separate transactions), sharing one clock.
 */
function useReplicas(driver: (typeof DRIVERS)[number], config: typeof CONFLICT | typeof QUOTA) {
  const ctx = {} as { database: TestDatabase; t: TestBroker; replica: TestBroker };
  useTestBroker(driver, (d, b) => ((ctx.database = d), (ctx.t = b)), { config });
  beforeAll(async () => {
    ctx.replica = await startTestBroker(ctx.database, { clock: ctx.t.clock, config, instanceId: 'replica-2' });
  });
  return ctx;
}

async function openTask(t: TestBroker, agent: string, roles: string[]) {
  const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles, ttl_seconds: 3600 });
  expect(res.status).toBe(201);
  return res.json.task.id as string;
}

/** The credentials minted on either replica since `before` (lease ids). */
const mintedSince = (ctx: { t: TestBroker; replica: TestBroker }, before: Set<string>) =>
  [...ctx.t.fake.mintedIds(), ...ctx.replica.fake.mintedIds()].filter((id) => !before.has(id));
const mintedNow = (ctx: { t: TestBroker; replica: TestBroker }) => new Set([...ctx.t.fake.mintedIds(), ...ctx.replica.fake.mintedIds()]);
const revokeCount = (ctx: { t: TestBroker; replica: TestBroker }, id: string) => (ctx.t.fake.revokeCalls.get(id) ?? 0) + (ctx.replica.fake.revokeCalls.get(id) ?? 0);

/**
 * What must hold whatever the interleaving: every minted credential has a
 * lease row (recorded before released); a credential refused at commit is
 * recorded `revoking` with the refusal as its reason, audited as denied, and
 * revoked at the backend by the next sweep.
 */
async function expectRefusedAtCommitRevoked(
  ctx: { database: TestDatabase; t: TestBroker; replica: TestBroker },
  task: string,
  results: Call[],
  minted: string[],
  reason: string,
) {
  const issued = new Set(results.filter((r) => r.status === 201).map((r) => r.json.lease.id as string));
  const rows = await ctx.database.db.select().from(leases).where(eq(leases.taskId, task));
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of minted) expect(byId.has(id), `minted credential ${id} has no lease row`).toBe(true);
  expect(rows).toHaveLength(minted.length);
  const refusedAtCommit = rows.filter((r) => !issued.has(r.id));
  for (const row of refusedAtCommit) {
    expect(row.status).toBe('revoking');
    expect(row.reason).toBe(reason);
    const audit = await ctx.t.call('GET', `/v1/audit?target=lease:${row.id}&action=credential.denied`, { subject: 'admin' });
    expect(audit.json.items).toHaveLength(1);
    expect(audit.json.items[0].details.code).toBe(reason);
  }

  await ctx.t.broker.sweeper.runOnce();
  for (const row of refusedAtCommit) {
    const [after] = await ctx.database.db.select().from(leases).where(eq(leases.id, row.id));
    expect(after!.status).toBe('revoked');
    expect(after!.reason).toBe(reason);
    expect(revokeCount(ctx, row.id), row.id).toBeGreaterThanOrEqual(1);
  }
  // The issued ones are untouched by the sweep.
  for (const id of issued) expect(byId.get(id)!.status).toBe('active');
  return { issued, refusedAtCommit };
}

const activeOf = async (database: TestDatabase, task: string): Promise<Lease[]> =>
  database.db.select().from(leases).where(and(eq(leases.taskId, task), eq(leases.status, 'active')));

describe.each(DRIVERS)('conflicting roles requested concurrently on %s', (driver) => {
  const ctx = useReplicas(driver, CONFLICT);

  async function race(agent: string, split: boolean) {
    const task = await openTask(ctx.t, agent, ['role-a', 'role-b']);
    const before = mintedNow(ctx);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (split && i % 4 >= 2 ? ctx.replica : ctx.t).call('POST', '/v1/credentials', { subject: agent }, { task, role: i % 2 === 0 ? 'role-a' : 'role-b' }),
      ),
    );
    for (const r of results) {
      expect([201, 403], JSON.stringify(r.json)).toContain(r.status);
      if (r.status === 403) expect(r.json.code).toBe('role_conflict');
    }
    const won = new Set(results.filter((r) => r.status === 201).map((r) => r.json.lease.role as string));
    // Someone wins, and only one of the two roles does.
    expect(won.size).toBe(1);
    const active = await activeOf(ctx.database, task);
    expect(new Set(active.map((l) => l.role))).toEqual(won);
    expect(active).toHaveLength(results.filter((r) => r.status === 201).length);
    // Every refusal names a lease of the winning role.
    const activeIds = new Set(active.map((l) => l.id));
    for (const r of results.filter((r) => r.status === 403)) expect(activeIds).toContain(r.json.conflicts_with);

    await expectRefusedAtCommitRevoked(ctx, task, results, mintedSince(ctx, before), 'role_conflict');
    expect(new Set((await activeOf(ctx.database, task)).map((l) => l.role)).size).toBe(1);
  }

  it('never lets one task hold both roles (one replica)', async () => {
    await race('agent-cc1', false);
  });

  it('never lets one task hold both roles (two replicas committing at once)', async () => {
    await race('agent-cc2', true);
  });
});

describe.each(DRIVERS)('a task quota under concurrent requests on %s', (driver) => {
  const ctx = useReplicas(driver, QUOTA);

  async function race(agent: string, split: boolean) {
    const task = await openTask(ctx.t, agent, ['role-q']);
    const before = mintedNow(ctx);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (split && i % 2 === 1 ? ctx.replica : ctx.t).call('POST', '/v1/credentials', { subject: agent }, { task, role: 'role-q' })),
    );
    const ok = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status !== 201);
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(15);
    for (const r of refused) {
      expect(r.status, JSON.stringify(r.json)).toBe(429);
      expect(r.json.code).toBe('quota_exceeded');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    const active = await activeOf(ctx.database, task);
    expect(active).toHaveLength(5);
    expect(new Set(active.map((l) => l.id))).toEqual(new Set(ok.map((r) => r.json.lease.id)));

    await expectRefusedAtCommitRevoked(ctx, task, results, mintedSince(ctx, before), 'quota_exceeded');
    expect(await activeOf(ctx.database, task)).toHaveLength(5);
  }

  it('issues exactly the quota (one replica)', async () => {
    await race('agent-qq1', false);
  });

  it('issues exactly the quota (two replicas committing at once)', async () => {
    await race('agent-qq2', true);
  });
});
