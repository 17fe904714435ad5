import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { approvals, leases } from '../../src/db/schema.js';
import type { Identity } from '../../src/identity/types.js';
import { createIssuer } from '../../src/leases/issue.js';
import { createLeaseWriter } from '../../src/leases/writer.js';
import { createLogger } from '../../src/log.js';
import { createPolicy } from '../../src/policy/decide.js';
import { createTaskCache } from '../../src/tasks/cache.js';
import type { Limits } from '../../src/policy/limits.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { type TestBroker, useTestBroker } from '../support/broker.js';

const agents = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
// These roles' relying parties introspect, so a confirmed release frees its slot at once; a jwt that works
// until its exp counts until then (test/policy/held.test.ts).
const role = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  backend: 'local',
  ttl: '15m',
  max_ttl: '1h',
  allow: agents,
  jwt: { relying_parties_introspect: true },
  ...extra,
});

const config = {
  roles: [
    role('read-customers'),
    role('write-public'),
    role('deploy-prod'),
    role('read-secrets'),
    role('plain'),
    role('scarce', { max_active: 2 }),
    role('gated', { requires_approval: true }),
    role('minted-by-fake', { backend: 'fake' }),
    role('trio-a'),
    role('trio-b'),
    role('trio-c'),
  ],
  policy: {
    conflicts: [
      { name: 'exfil', roles: ['read-customers', 'write-public'], scope: 'task' as const },
      { name: 'prod-secrets', roles: ['deploy-prod', 'read-secrets'], scope: 'agent' as const },
      { name: 'trio', roles: ['trio-a', 'trio-b', 'trio-c'], scope: 'agent' as const },
    ],
    quotas: { max_active_per_agent: 3, max_active_per_task: 2 },
  },
};
const ALL_ROLES = config.roles.map((r) => r.name);

type Call = Awaited<ReturnType<TestBroker['call']>>;

describe.each(DRIVERS)('conflicting roles, quotas and the dry run on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config });

  async function openTask(agent: string, extra: Record<string, unknown> = {}) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ALL_ROLES, ttl_seconds: 3600, ...extra });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }

  const request = (agent: string, task: string, roleName: string) => t.call('POST', '/v1/credentials', { subject: agent }, { task, role: roleName });

  async function issue(agent: string, task: string, roleName: string): Promise<string> {
    const res = await request(agent, task, roleName);
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    return res.json.lease.id as string;
  }

  async function release(agent: string, leaseId: string) {
    const res = await t.call('DELETE', `/v1/leases/${leaseId}`, { subject: agent });
    expect(res.status).toBe(202);
    await t.broker.sweeper.runOnce();
  }

  async function denials(task: string) {
    const res = await t.call('GET', `/v1/audit?target=task:${task}&action=credential.denied`, { subject: 'admin' });
    expect(res.status).toBe(200);
    return res.json.items as { actor: string; decision: string; reason: string; details: Record<string, unknown> }[];
  }

  function expectRefused(res: Call, status: number, code: string) {
    expect(res.status, JSON.stringify(res.json)).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.json.code).toBe(code);
    expect(res.json.credentials).toBeUndefined();
  }

  /** Seconds until the soonest of these leases ends, as Retry-After should say. */
  async function secondsUntilFirstEnds(ids: string[]) {
    const rows = await Promise.all(ids.map(async (id) => (await database.db.select().from(leases).where(eq(leases.id, id)))[0]!));
    const soonest = Math.min(...rows.map((r) => r.expiresAt.getTime()));
    return Math.max(1, Math.ceil((soonest - t.clock.now().getTime()) / 1000));
  }

  describe('conflicting roles', () => {
    it('refuses the second role of a task-scoped conflict, names the held lease, and allows it once that lease is released', async () => {
      const task = await openTask('agent-c1');
      const held = await issue('agent-c1', task, 'read-customers');

      const refused = await request('agent-c1', task, 'write-public');
      expectRefused(refused, 403, 'role_conflict');
      expect(refused.json.conflicts_with).toBe(held);
      expect(refused.json.conflict).toBe('exfil');
      expect(await database.db.select().from(leases).where(eq(leases.taskId, task))).toHaveLength(1);

      // The conflict is symmetric: holding either role blocks the other.
      const task2 = await openTask('agent-c1b');
      const held2 = await issue('agent-c1b', task2, 'write-public');
      const refused2 = await request('agent-c1b', task2, 'read-customers');
      expectRefused(refused2, 403, 'role_conflict');
      expect(refused2.json.conflicts_with).toBe(held2);

      await release('agent-c1', held);
      const heldRow = (await database.db.select().from(leases).where(eq(leases.id, held)))[0]!;
      expect(heldRow.status).toBe('revoked');
      const allowed = await request('agent-c1', task, 'write-public');
      expect(allowed.status).toBe(201);

      const [denial] = await denials(task);
      expect(denial).toMatchObject({ actor: 'test/agent-c1', decision: 'deny', details: { code: 'role_conflict', role: 'write-public', conflicts_with: held, conflict: 'exfil' } });
    });

    it('allows both roles of a task-scoped conflict in two different tasks of one agent', async () => {
      const a = await openTask('agent-c2');
      const b = await openTask('agent-c2');
      await issue('agent-c2', a, 'read-customers');
      expect((await request('agent-c2', b, 'write-public')).status).toBe(201);
    });

    it('refuses an agent-scoped conflict across two tasks of one agent, but not across agents', async () => {
      const a = await openTask('agent-c3');
      const b = await openTask('agent-c3');
      const held = await issue('agent-c3', a, 'deploy-prod');

      const refused = await request('agent-c3', b, 'read-secrets');
      expectRefused(refused, 403, 'role_conflict');
      expect(refused.json).toMatchObject({ conflicts_with: held, conflict: 'prod-secrets' });

      // Another agent holding nothing may take it.
      const other = await openTask('agent-c4');
      expect((await request('agent-c4', other, 'read-secrets')).status).toBe(201);

      await release('agent-c3', held);
      expect((await request('agent-c3', b, 'read-secrets')).status).toBe(201);
      // ...and now the first role is the one refused.
      const back = await request('agent-c3', a, 'deploy-prod');
      expectRefused(back, 403, 'role_conflict');

      const [denial] = await denials(b);
      expect(denial!.details).toMatchObject({ code: 'role_conflict', conflicts_with: held, conflict: 'prod-secrets' });
    });

    it('refuses only the request that would complete a set of three roles', async () => {
      const a = await openTask('agent-c6');
      const b = await openTask('agent-c6');
      await issue('agent-c6', a, 'trio-a');
      const heldB = await issue('agent-c6', b, 'trio-b');
      // Holding two of the three is allowed; the third would complete the set.
      const refused = await request('agent-c6', b, 'trio-c');
      expectRefused(refused, 403, 'role_conflict');
      expect(refused.json.conflict).toBe('trio');
      await release('agent-c6', heldB);
      expect((await request('agent-c6', b, 'trio-c')).status).toBe(201);
    });

    it('does not count a lease past its expiry as held', async () => {
      const task = await openTask('agent-c5', { ttl_seconds: 3600 });
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-c5' }, { task, role: 'read-customers', ttl_seconds: 5 });
      expect(res.status).toBe(201);
      expectRefused(await request('agent-c5', task, 'write-public'), 403, 'role_conflict');
      t.clock.advance(6);
      expect((await request('agent-c5', task, 'write-public')).status).toBe(201);
    });
  });

  describe('quotas', () => {
    it('caps the active leases of one agent, with Retry-After until the first one ends', async () => {
      const a = await openTask('agent-q1');
      const b = await openTask('agent-q1');
      const held = [await issue('agent-q1', a, 'plain'), await issue('agent-q1', a, 'plain'), await issue('agent-q1', b, 'plain')];

      const refused = await request('agent-q1', b, 'plain');
      expectRefused(refused, 429, 'quota_exceeded');
      const retry = await secondsUntilFirstEnds(held);
      expect(refused.headers.get('retry-after')).toBe(String(retry));
      expect(refused.json.retry_after).toBe(retry);

      const [denial] = await denials(b);
      expect(denial).toMatchObject({ decision: 'deny', reason: 'the agent holds 3 active leases', details: { code: 'quota_exceeded', role: 'plain', retry_after: retry } });

      // Other agents are not affected; releasing one lease frees a slot.
      const other = await openTask('agent-q1-other');
      expect((await request('agent-q1-other', other, 'plain')).status).toBe(201);
      await release('agent-q1', held[0]!);
      expect((await request('agent-q1', b, 'plain')).status).toBe(201);
    });

    it('caps the active leases of one task', async () => {
      const task = await openTask('agent-q2');
      const held = [await issue('agent-q2', task, 'plain'), await issue('agent-q2', task, 'read-secrets')];
      const refused = await request('agent-q2', task, 'plain');
      expectRefused(refused, 429, 'quota_exceeded');
      expect(Number(refused.headers.get('retry-after'))).toBe(await secondsUntilFirstEnds(held));

      // The same agent may still use another task.
      const other = await openTask('agent-q2');
      expect((await request('agent-q2', other, 'plain')).status).toBe(201);

      const [denial] = await denials(task);
      expect(denial).toMatchObject({ reason: 'the task holds 2 active leases', details: { code: 'quota_exceeded' } });
    });

    it("caps a role's active leases across agents (max_active)", async () => {
      const tasks = await Promise.all(['agent-s1', 'agent-s2', 'agent-s3'].map((a) => openTask(a)));
      const held = [await issue('agent-s1', tasks[0]!, 'scarce'), await issue('agent-s2', tasks[1]!, 'scarce')];
      const refused = await request('agent-s3', tasks[2]!, 'scarce');
      expectRefused(refused, 429, 'quota_exceeded');
      expect(Number(refused.headers.get('retry-after'))).toBe(await secondsUntilFirstEnds(held));
      // Another role is unaffected.
      expect((await request('agent-s3', tasks[2]!, 'plain')).status).toBe(201);

      const [denial] = await denials(tasks[2]!);
      expect(denial).toMatchObject({ reason: 'role scarce holds 2 active leases', details: { code: 'quota_exceeded', role: 'scarce' } });

      await release('agent-s1', held[0]!);
      expect((await request('agent-s3', tasks[2]!, 'scarce')).status).toBe(201);
    });

    it("stops at a task's lease budget, which released leases still count against", async () => {
      const task = await openTask('agent-b1', { max_leases: 2 });
      const first = await issue('agent-b1', task, 'plain');
      await issue('agent-b1', task, 'write-public');

      const third = await request('agent-b1', task, 'plain');
      expectRefused(third, 409, 'task_lease_limit');
      expect(third.headers.get('retry-after')).toBeNull();

      await release('agent-b1', first);
      expectRefused(await request('agent-b1', task, 'plain'), 409, 'task_lease_limit');
      expect(await database.db.select().from(leases).where(eq(leases.taskId, task))).toHaveLength(2);

      const refusals = await denials(task);
      expect(refusals).toHaveLength(2);
      for (const d of refusals) expect(d.details).toMatchObject({ code: 'task_lease_limit', role: 'plain' });
    });
  });

  describe('the dry run (POST /v1/policy/evaluate)', () => {
    const evaluate = (as: string, task: string, roleName: string, subject: string, extra: Record<string, unknown> = {}) =>
      t.call('POST', '/v1/policy/evaluate', { subject: as }, { identity: { issuer: 'test', subject }, task, role: roleName, ...extra });

    it('refuses claims nested too deep to become policy tags (400, never a 500)', async () => {
      const task = await openTask('agent-d0');
      const deep = t.call('POST', '/v1/policy/evaluate', { subject: 'admin' }, `{"identity":{"issuer":"test","subject":"agent-d0","claims":{"deep":${'['.repeat(10_000)}${']'.repeat(10_000)}}},"task":"${task}","role":"plain"}`);
      expect(await deep).toMatchObject({ status: 400, json: { code: 'validation_failed' } });
      const fine = await evaluate('admin', task, 'plain', 'agent-d0', { identity: { issuer: 'test', subject: 'agent-d0', claims: { nested: { a: [1, [2, [3]]] } } } });
      expect(fine.status).toBe(200);
    });

    it('explains allow, deny and approval_required, and issues nothing', async () => {
      const task = await openTask('agent-d1');
      const held = await issue('agent-d1', task, 'read-customers');
      const before = await database.db.select().from(leases).where(eq(leases.taskId, task));

      const allow = await evaluate('admin', task, 'plain', 'agent-d1', { ttl_seconds: 120 });
      expect(allow.status).toBe(200);
      expect(allow.json).toMatchObject({ decision: 'allow', ttl_seconds: 120 });
      expect(allow.json.code).toBeUndefined();

      const conflict = await evaluate('admin', task, 'write-public', 'agent-d1');
      expect(conflict.status).toBe(200);
      expect(conflict.json).toMatchObject({ decision: 'deny', code: 'role_conflict', conflicts_with: held });
      expect(conflict.json.reason).toContain('exfil');

      const gated = await evaluate('admin', task, 'gated', 'agent-d1');
      expect(gated.json).toMatchObject({ decision: 'approval_required', required_by: 'role:gated', ttl_seconds: 900 });

      // The admin sees the real reason the agent would not.
      const stranger = await evaluate('admin', task, 'plain', 'agent-d2');
      expect(stranger.json).toMatchObject({ decision: 'deny', code: 'task_not_found', reason: 'task is bound to another agent' });
      const unknown = await evaluate('admin', task, 'no-such-role', 'agent-d1');
      expect(unknown.json).toMatchObject({ decision: 'deny', code: 'role_denied', reason: 'unknown role' });

      const after = await database.db.select().from(leases).where(eq(leases.taskId, task));
      expect(after).toEqual(before);
      expect(await database.db.select().from(approvals).where(eq(approvals.taskId, task))).toHaveLength(0);
      expect(await denials(task)).toHaveLength(0);

      const audit = await t.call('GET', `/v1/audit?target=task:${task}&action=policy.evaluated`, { subject: 'admin' });
      expect(audit.json.items.map((e: { details: { decision: string } }) => e.details.decision)).toEqual(['allow', 'deny', 'approval_required', 'deny', 'deny']);
    });

    it('explains quota refusals', async () => {
      const task = await openTask('agent-d3');
      await issue('agent-d3', task, 'plain');
      await issue('agent-d3', task, 'plain');
      const res = await evaluate('admin', task, 'plain', 'agent-d3');
      expect(res.json).toMatchObject({ decision: 'deny', code: 'quota_exceeded', reason: 'the task holds 2 active leases' });
    });

    it('is for admins only', async () => {
      const task = await openTask('agent-d4');
      for (const who of ['agent-d4', 'orchestrator']) {
        const res = await evaluate(who, task, 'plain', 'agent-d4');
        expect(res.status).toBe(403);
        expect(res.json.code).toBe('not_admin');
      }
    });
  });

  describe('fail closed', () => {
    it('refuses with policy_error, mints nothing and audits the denial when the limits check throws', async () => {
      const task = await openTask('agent-f1');
      const throwing: Limits = {
        check: async () => {
          throw new Error('limits exploded');
        },
        constrained: () => true,
        lockKeys: () => [],
      };
      const log = createLogger('silent');
      const issue = createIssuer({
        db: database.db,
        clock: t.clock,
        policy: createPolicy(t.config.roles, t.config.policy),
        limits: throwing,
        approvals: t.broker.approvals,
        refusals: t.broker.refusals,
        backends: t.broker.backends,
        writer: createLeaseWriter({ writes: database.writes, limits: throwing, onRevokeRequested: () => {} }),
        taskCache: createTaskCache({ db: database.db, clock: t.clock }),
        log,
        agents: t.broker.agentService,
      });
      const identity: Identity = { issuer: 'test', subject: 'agent-f1', claims: { sub: 'agent-f1' }, tokenSha256: 'a'.repeat(64), expiresAt: new Date(t.clock.now().getTime() + 3600_000) };
      const mintedBefore = t.fake.mintedIds().length;

      const outcome = await issue({ identity, taskId: task, roleName: 'minted-by-fake', requestId: 'req-fail-closed' }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(outcome).toBeInstanceOf(AppError);
      expect((outcome as AppError).code).toBe('policy_error');
      // The message is ours, never the internal error's.
      expect((outcome as AppError).message).not.toContain('exploded');

      expect(t.fake.mintedIds()).toHaveLength(mintedBefore);
      expect(await database.db.select().from(leases).where(eq(leases.taskId, task))).toHaveLength(0);
      const [denial] = await denials(task);
      expect(denial).toMatchObject({ actor: 'test/agent-f1', decision: 'deny', reason: 'policy evaluation failed', details: { code: 'policy_error', role: 'minted-by-fake' } });
      expect(JSON.stringify(denial)).not.toContain('exploded');

      // The same request through the real limits is issued, so the refusal came from the failing check.
      const ok = await request('agent-f1', task, 'minted-by-fake');
      expect(ok.status).toBe(201);
      const rows = await database.db.select().from(leases).where(and(eq(leases.taskId, task), eq(leases.status, 'active')));
      expect(rows).toHaveLength(1);
    });
  });
});

describe.each(DRIVERS)('the per-agent rate limit on %s', (driver) => {
  let t!: TestBroker;
  useTestBroker(driver, (_d, b) => (t = b), {
    config: { roles: [role('plain')], policy: { rate_limit: { per_agent_per_second: 1, burst: 3 } } },
  });

  async function openTask(agent: string) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['plain'], ttl_seconds: 3600 });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }
  const request = (agent: string, task: string) => t.call('POST', '/v1/credentials', { subject: agent }, { task, role: 'plain' });

  it('allows a burst, refuses the next request with Retry-After, and refills with time', async () => {
    const task = await openTask('agent-r1');
    for (let i = 0; i < 3; i++) expect((await request('agent-r1', task)).status).toBe(201);

    const limited = await request('agent-r1', task);
    expect(limited.status).toBe(429);
    expect(limited.json.code).toBe('rate_limited');
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(limited.json.retry_after).toBe(1);

    // Other agents have their own bucket.
    const other = await openTask('agent-r2');
    expect((await request('agent-r2', other)).status).toBe(201);

    t.clock.advance(1);
    expect((await request('agent-r1', task)).status).toBe(201);
    expect((await request('agent-r1', task)).status).toBe(429);

    // A full refill allows a whole burst again, and no more.
    t.clock.advance(3);
    for (let i = 0; i < 3; i++) expect((await request('agent-r1', task)).status).toBe(201);
    expect((await request('agent-r1', task)).status).toBe(429);

    // The first refusal of the window is audited as it was; the two repeats as one count when the window ends.
    await t.broker.refusals.flushDue();
    const first = await t.call('GET', `/v1/audit?target=task:${task}&action=credential.denied`, { subject: 'admin' });
    expect(first.json.items).toHaveLength(1);
    expect(first.json.items[0].details).toMatchObject({ code: 'rate_limited', role: 'plain', retry_after: 1 });
    t.clock.advance(60);
    await t.broker.refusals.flushDue();
    // The count is the identity's window, whatever task each repeat named: it names the agent.
    const audit = await t.call('GET', `/v1/audit?actor=test/agent-r1&action=credential.denied`, { subject: 'admin' });
    expect(audit.json.items.map((e: { target: string; details: { count?: number } }) => [e.target, e.details.count])).toEqual([
      [`task:${task}`, undefined],
      ['agent:test/agent-r1', 2],
    ]);
  });
});
