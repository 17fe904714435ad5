import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { createSweeper } from '../../src/sweeper/sweeper.js';
import { leases } from '../../src/db/schema.js';
import { createLogger } from '../../src/log.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { type TestBroker, useTestBroker } from '../support/broker.js';

describe.each(DRIVERS)('sweeper on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  async function issue(role: string, n = 1, ttl?: number) {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: [role], ttl_seconds: 3600 })).json.task.id;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role, ttl_seconds: ttl });
      expect(res.status).toBe(201);
      ids.push(res.json.lease.id);
    }
    return { task, ids };
  }
  const lease = async (id: string) => (await database.db.select().from(leases).where(eq(leases.id, id)))[0]!;
  /** The test database, its transactions passed through `wrap` (a commit that fails or stalls on cue; `call` counts from 0). */
  const transactionsVia = (wrap: (run: () => Promise<unknown>, call: number) => Promise<unknown>): typeof database.db => {
    let calls = 0;
    return new Proxy(database.db, {
      get(target, prop, receiver) {
        if (prop !== 'transaction') return Reflect.get(target, prop, receiver);
        return (fn: Parameters<typeof target.transaction>[0]) => wrap(() => target.transaction(fn), calls++);
      },
    });
  };
  /** Once the claims of a pass that failed have run out, the broker's own sweeper revokes every one of `ids`. */
  async function revokedOnceClaimsRunOut(ids: string[]) {
    t.clock.advance(t.config.sweeper.claim_timeout + 1);
    await t.broker.sweeper.runOnce();
    for (const id of ids) expect((await lease(id)).status).toBe('revoked');
  }
  /** A sweeper of its own, on `db` (the test database, or a proxy of it that fails on cue). */
  const sweeperOn = (db: typeof database.db, id: string, config: Partial<typeof t.config.sweeper> = {}) =>
    createSweeper({ db, clock: t.clock, backends: t.broker.backends, config: { ...t.config.sweeper, ...config }, log: createLogger('silent'), id });

  it('expires leases whose TTL has run out, under a fake clock', async () => {
    const { ids } = await issue('flaky', 2, 120);
    await t.broker.sweeper.runOnce();
    expect((await lease(ids[0]!)).status).toBe('active');
    t.clock.advance(121);
    await t.broker.sweeper.runOnce();
    for (const id of ids) {
      expect(await lease(id)).toMatchObject({ status: 'expired', reason: 'expired', attempts: 0 });
      expect(t.fake.revokeCalls.get(id)).toBe(1);
    }
    const audit = await t.call('GET', `/v1/audit?target=lease:${ids[0]}&action=lease.expired`, { subject: 'admin' });
    expect(audit.json.items).toHaveLength(1);
  });

  it('retries a failing backend with backoff, parks the lease in revoke_failed, and revokes it once the backend recovers', async () => {
    const { task, ids } = await issue('flaky');
    const id = ids[0]!;
    t.fake.failNextRevokes(5);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
    await t.broker.sweeper.runOnce();
    let row = await lease(id);
    expect(row).toMatchObject({ status: 'revoking', attempts: 1, lastError: 'fake_unavailable: fake backend is down' });
    // Not due again until its backoff has passed.
    await t.broker.sweeper.runOnce();
    expect((await lease(id)).attempts).toBe(1);
    for (let i = 0; i < 4; i++) {
      t.clock.advance(600);
      await t.broker.sweeper.runOnce();
    }
    row = await lease(id);
    expect(row.status).toBe('revoke_failed');
    expect(row.attempts).toBeGreaterThanOrEqual(3);
    const visible = await t.call('GET', `/v1/leases?status=revoke_failed&task=${task}`, { subject: 'admin' });
    expect(visible.json.items.map((l: { id: string }) => l.id)).toEqual([id]);
    expect(visible.json.items[0].last_error).toContain('fake backend is down');
    // Filtered by its backend as well; another backend names none of it.
    expect((await t.call('GET', `/v1/leases?backend=fake&task=${task}`, { subject: 'admin' })).json.items.map((l: { id: string }) => l.id)).toEqual([id]);
    expect((await t.call('GET', `/v1/leases?backend=local&task=${task}`, { subject: 'admin' })).json.items).toEqual([]);

    // Still retried, slowly, until the backend answers.
    for (let i = 0; i < 5 && (await lease(id)).status !== 'revoked'; i++) {
      t.clock.advance(301);
      await t.broker.sweeper.runOnce();
    }
    row = await lease(id);
    expect(row).toMatchObject({ status: 'revoked', reason: 'task_completed', attempts: 5, lastError: null });
    expect(t.fake.revokeCalls.get(id)).toBe(1);
  });

  it("shows an admin how a lease's revocation is going, and its holder only the lease's state", async () => {
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-view' }, roles: ['flaky'], ttl_seconds: 3600 });
    const task = opened.json.task.id as string;
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-view' }, { task, role: 'flaky' });
    const id = issued.json.lease.id as string;
    const operatorFields = ['revoke_attempts', 'last_error', 'next_attempt_at'];
    for (const field of operatorFields) expect(issued.json.lease).not.toHaveProperty(field);
    t.fake.failNextRevokes(1);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
    await t.broker.sweeper.runOnce();

    const admin = await t.call('GET', `/v1/leases/${id}`, { subject: 'admin' });
    expect(admin.json.lease).toMatchObject({ id, status: 'revoking', revoke_attempts: 1, last_error: 'fake_unavailable: fake backend is down' });
    expect(Date.parse(admin.json.lease.next_attempt_at)).toBeGreaterThan(t.clock.now().getTime());
    const listed = await t.call('GET', `/v1/leases?task=${task}`, { subject: 'admin' });
    expect(listed.json.items[0]).toMatchObject({ id, revoke_attempts: 1 });

    const holder = await t.call('GET', `/v1/leases/${id}`, { subject: 'agent-view' });
    expect(holder.status).toBe(200);
    expect(holder.json.lease).toMatchObject({ id, status: 'revoking', reason: 'task_completed' });
    for (const field of operatorFields) expect(holder.json.lease).not.toHaveProperty(field);
    // Another agent learns nothing, not even that the lease exists.
    expect((await t.call('GET', `/v1/leases/${id}`, { subject: 'agent-other' })).status).toBe(404);
  });

  it('revokes by admin: one lease, and in bulk by task, subject and role', async () => {
    const one = await issue('flaky');
    const res = await t.call('POST', `/v1/leases/${one.ids[0]}/revoke`, { subject: 'admin' }, { reason: 'suspicious' });
    expect(res.status).toBe(202);
    expect(res.json.lease).toMatchObject({ status: 'revoking', reason: 'admin' });
    const missing = await t.call('POST', `/v1/leases/${crypto.randomUUID()}/revoke`, { subject: 'admin' }, { reason: 'x' });
    expect(missing.status).toBe(404);

    const many = await issue('flaky', 3);
    const bulk = await t.call('POST', '/v1/revocations', { bearer: 'tl-admin-static-token-for-tests-only' }, { task: many.task, reason: 'incident 42' });
    expect(bulk.status).toBe(202);
    expect(bulk.json.revoking).toBe(3);
    const none = await t.call('POST', '/v1/revocations', { subject: 'admin' }, { reason: 'no selector' });
    expect(none.status).toBe(400);

    await t.broker.sweeper.runOnce();
    for (const id of [...one.ids, ...many.ids]) expect(await lease(id)).toMatchObject({ status: 'revoked', reason: 'admin' });
    const audit = await t.call('GET', `/v1/audit?target=lease:${many.ids[0]}&action=lease.revoke_requested`, { subject: 'admin' });
    expect(audit.json.items[0]).toMatchObject({ actor: 'static:ops', details: { note: 'incident 42' } });
    // The admin's action is audited even when it matches nothing.
    const nothing = await t.call('POST', '/v1/revocations', { subject: 'admin' }, { task: 'no-such-task', reason: 'sweep' });
    expect(nothing.json.revoking).toBe(0);
    const adminAudit = await t.call('GET', '/v1/audit?action=admin.revoke&actor=test/admin&limit=500', { subject: 'admin' });
    expect(adminAudit.json.items.at(-1)).toMatchObject({ target: 'leases:bulk', reason: 'sweep', details: { selector: { task: 'no-such-task' } } });

    const byRole = await issue('demo', 2);
    const subjectBulk = await t.call('POST', '/v1/revocations', { subject: 'admin' }, { subject: 'agent-1', role: 'demo', reason: 'rotate' });
    expect(subjectBulk.json.revoking).toBeGreaterThanOrEqual(2);
    await t.broker.sweeper.runOnce();
    for (const id of byRole.ids) expect((await lease(id)).status).toBe('revoked');
  });

  it('two sweepers on one database revoke every due lease exactly once', async () => {
    const tasks = await Promise.all(Array.from({ length: 4 }, () => issue('flaky', 15)));
    for (const { task } of tasks) await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    t.fake.hangRevokes(2);
    const make = (id: string) =>
      createSweeper({
        db: database.db,
        clock: t.clock,
        backends: t.broker.backends,
        config: { ...t.config.sweeper, batch_size: 7, concurrency: 4 },
        log: createLogger('silent'),
        id,
      });
    const [a, b] = [make('replica-a'), make('replica-b')];
    const [ra, rb] = await Promise.all([a.runOnce(), b.runOnce()]);
    t.fake.hangRevokes(0);
    const all = tasks.flatMap((x) => x.ids);
    expect(ra.revoked + rb.revoked).toBe(all.length);
    for (const id of all) {
      expect(t.fake.revokeCalls.get(id), id).toBe(1);
      expect((await lease(id)).status).toBe('revoked');
    }
    if (driver === 'postgres') expect(Math.min(ra.revoked, rb.revoked)).toBeGreaterThan(0);
  });

  it('re-claims the leases of a sweeper that died mid-revocation once its claim runs out', async () => {
    const { task, ids } = await issue('flaky', 2);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    // A replica claims the leases and dies before finishing: simulate its claim stamp.
    await database.db
      .update(leases)
      .set({ claimedBy: 'dead-replica', claimUntil: new Date(t.clock.now().getTime() + 60_000) })
      .where(eq(leases.taskId, task));
    await t.broker.sweeper.runOnce();
    expect((await lease(ids[0]!)).status).toBe('revoking');
    t.clock.advance(61);
    await t.broker.sweeper.runOnce();
    for (const id of ids) expect((await lease(id)).status).toBe('revoked');
  });

  it('a wave whose commit fails fails the pass once the next wave has committed; its leases are swept again after their claim', async () => {
    const { task, ids } = await issue('flaky', 8);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    // The first commit is lost (as if the connection dropped); the next wave's commit runs meanwhile.
    const db = transactionsVia((run, call) => (call === 0 ? Promise.reject(new Error('connection lost')) : run()));
    // Two waves of four.
    const sweeper = sweeperOn(db, 'losing-a-commit', { batch_size: 8, concurrency: 1 });
    await expect(sweeper.runOnce()).rejects.toThrow('connection lost');
    const rows = await Promise.all(ids.map(lease));
    // Nothing of the pass is still running: the second wave is recorded, the first still claimed.
    expect(rows.filter((r) => r.status === 'revoked')).toHaveLength(4);
    expect(rows.filter((r) => r.status === 'revoking' && r.claimedBy === 'losing-a-commit')).toHaveLength(4);
    await revokedOnceClaimsRunOut(ids);
  });

  it('keeps at most four wave commits in flight, and a slow one that fails still fails the pass after the others end', async () => {
    const { task, ids } = await issue('flaky', 24);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    let running = 0;
    let most = 0;
    const db = transactionsVia(async (run, call) => {
      running++;
      most = Math.max(most, running);
      try {
        // Slow commits, so that waves pile up behind them; the third fails late.
        await new Promise((r) => setTimeout(r, 40));
        if (call === 2) throw new Error('commit lost late');
        return await run();
      } finally {
        running--;
      }
    });
    // Six waves of four.
    const sweeper = sweeperOn(db, 'slow-commits', { batch_size: 24, concurrency: 1 });
    await expect(sweeper.runOnce()).rejects.toThrow('commit lost late');
    expect(running).toBe(0);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(4);
    const rows = await Promise.all(ids.map(lease));
    // The failed wave's four are still claimed; every wave revoked before the failure was seen is recorded.
    expect(rows.filter((r) => r.status === 'revoking' && r.claimedBy === 'slow-commits').length).toBeGreaterThanOrEqual(4);
    expect(rows.filter((r) => r.status === 'revoked').length).toBeGreaterThanOrEqual(8);
    await revokedOnceClaimsRunOut(ids);
  });

  it('stop() lets the pass in flight finish and claims nothing after', async () => {
    const { task, ids } = await issue('flaky', 3);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    t.fake.hangRevokes(50);
    const sweeper = sweeperOn(database.db, 'stopping');
    sweeper.start();
    await new Promise((r) => setTimeout(r, 20));
    await sweeper.stop();
    t.fake.hangRevokes(0);
    for (const id of ids) {
      const row = await lease(id);
      // Either fully revoked by the drained pass, or never claimed: nothing half-done.
      expect(row.claimedBy === null || row.status === 'revoked').toBe(true);
    }
    await t.broker.sweeper.runOnce();
    for (const id of ids) expect((await lease(id)).status).toBe('revoked');
  });

  it('records a failure on top of what changed during the attempt (a task completed mid-revocation)', async () => {
    const { task, ids } = await issue('flaky', 1, 60);
    const id = ids[0]!;
    t.clock.advance(61);
    t.fake.failNextRevokes(1);
    t.fake.hangRevokes(200);
    const pass = t.broker.sweeper.runOnce();
    await new Promise((r) => setTimeout(r, 50)); // the expired lease is claimed, its revoke in flight
    await database.db.update(leases).set({ status: 'revoking', reason: 'task_completed', attempts: 0 }).where(eq(leases.id, id));
    await pass;
    t.fake.hangRevokes(0);
    expect(await lease(id)).toMatchObject({ status: 'revoking', reason: 'task_completed', attempts: 1 });
    void task;
  });

  it.each([
    ['commits at full speed', 0],
    ['commits slow enough to be in flight when the claim runs low', 40],
  ])('extends its claim while a slow backend works through a batch, so no other replica takes the leases (%s)', async (_, commitDelayMs) => {
    const { task, ids } = await issue('flaky', 12);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    const calls = new Map<string, number>();
    let n = 0;
    const other = () =>
      createSweeper({ db: database.db, clock: t.clock, backends: t.broker.backends, config: t.config.sweeper, log: createLogger('silent'), id: 'other' });
    const slow = {
      name: 'fake',
      type: 'fake',
      mint: t.fake.backend.mint,
      async revoke({ leaseId }: { leaseId: string }) {
        calls.set(leaseId, (calls.get(leaseId) ?? 0) + 1);
        t.clock.advance(7); // each revoke takes most of its timeout
        if (++n === 9) await other().runOnce(); // another replica sweeps after the first claim would have run out
      },
    };
    const db = transactionsVia(async (run) => {
      await new Promise((r) => setTimeout(r, commitDelayMs));
      return run();
    });
    const sweeper = createSweeper({
      db,
      clock: t.clock,
      backends: new Map([['fake', slow]]),
      config: { ...t.config.sweeper, concurrency: 1, claim_timeout: 60 },
      log: createLogger('silent'),
      id: 'slow',
    });
    const result = await sweeper.runOnce();
    expect(result.revoked).toBe(12);
    for (const id of ids) {
      expect(calls.get(id)).toBe(1);
      expect(t.fake.revokeCalls.get(id)).toBeUndefined();
    }
  });

  it('a backend that hangs beyond the revoke timeout leaves the lease revoking, never revoked, until it answers', async () => {
    const { task, ids } = await issue('flaky', 2);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    const sweeper = createSweeper({
      db: database.db,
      clock: t.clock,
      backends: t.broker.backends,
      config: { ...t.config.sweeper, claim_timeout: 8 }, // a revoke gets 1 s
      log: createLogger('silent'),
      id: 'impatient',
    });
    t.fake.hangRevokes(1500);
    const result = await sweeper.runOnce();
    t.fake.hangRevokes(0);
    expect(result.failed).toBe(2);
    for (const id of ids) expect(await lease(id)).toMatchObject({ status: 'revoking', attempts: 1, lastError: 'revoke timed out after 1s' });
    t.clock.advance(10);
    await sweeper.runOnce();
    for (const id of ids) expect((await lease(id)).status).toBe('revoked');
  });
});
