import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { approvals, leases } from '../../src/db/schema.js';
import { UUID_RE } from '../../src/ids.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { type TestBroker, useTestBroker } from '../support/broker.js';

const agents = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const APPROVAL_TTL = 60;

const config = {
  roles: [
    {
      name: 'gated',
      backend: 'local',
      allow: agents,
      requires_approval: true,
      // approver-1 decides for this role; agent-self may both request and approve (never its own request).
      approvers: [
        { issuer: 'test', subject: 'approver-1' },
        { issuer: 'test', subject_pattern: 'agent-self' },
      ],
    },
    { name: 'normal', backend: 'local', allow: agents },
  ],
  policy: { approvals: { ttl: APPROVAL_TTL, rules: [{ name: 'prod', labels: { environment: 'production' } }] } },
};

describe.each(DRIVERS)('approval gates on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config });

  async function openTask(agent: string, extra: Record<string, unknown> = {}) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['gated', 'normal'], ttl_seconds: 3600, ...extra });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }

  const request = (agent: string, body: Record<string, unknown>) => t.call('POST', '/v1/credentials', { subject: agent }, body);

  async function requestApproval(agent: string, task: string, role = 'gated') {
    const res = await request(agent, { task, role });
    expect(res.status).toBe(202);
    return res.json.approval.id as string;
  }

  const leasesOf = (task: string) => database.db.select().from(leases).where(eq(leases.taskId, task));

  async function auditOf(target: string) {
    const res = await t.call('GET', `/v1/audit?target=${encodeURIComponent(target)}`, { subject: 'admin' });
    expect(res.status).toBe(200);
    return res.json.items as { action: string; actor: string; decision: string; reason: string | null; details: Record<string, unknown> }[];
  }

  it('answers a gated role with 202 and a pending approval, and creates no lease', async () => {
    const task = await openTask('agent-1');
    const res = await request('agent-1', { task, role: 'gated', ttl_seconds: 300 });
    expect(res.status).toBe(202);
    const approval = res.json.approval;
    expect(approval.id).toMatch(UUID_RE);
    expect(approval).toMatchObject({
      status: 'pending',
      task,
      role: 'gated',
      requester: { issuer: 'test', subject: 'agent-1' },
      required_by: 'role:gated',
      requested_ttl_seconds: 300,
      decided_by: null,
    });
    expect(Date.parse(approval.expires_at) - t.clock.now().getTime()).toBe(APPROVAL_TTL * 1000);
    expect(res.json.credentials).toBeUndefined();
    expect(await leasesOf(task)).toHaveLength(0);

    // The same task's ungated role is issued at once.
    const normal = await request('agent-1', { task, role: 'normal' });
    expect(normal.status).toBe(201);

    const events = await auditOf(`approval:${approval.id}`);
    expect(events.map((e) => e.action)).toEqual(['approval.requested']);
    expect(events[0]).toMatchObject({ actor: 'test/agent-1', reason: 'role:gated', details: { task, role: 'gated' } });
  });

  it('gates even an ordinary role on a task whose labels match an approval rule', async () => {
    const task = await openTask('agent-2', { labels: { environment: 'production', team: 'data' } });
    const res = await request('agent-2', { task, role: 'normal' });
    expect(res.status).toBe(202);
    expect(res.json.approval).toMatchObject({ status: 'pending', role: 'normal', required_by: 'rule:prod' });
    expect(await leasesOf(task)).toHaveLength(0);

    // A role that requires approval itself names itself, even on a labelled task.
    const gated = await request('agent-2', { task, role: 'gated' });
    expect(gated.json.approval.required_by).toBe('role:gated');

    // Other labels do not gate.
    const staging = await openTask('agent-2', { labels: { environment: 'staging' } });
    expect((await request('agent-2', { task: staging, role: 'normal' })).status).toBe(201);
  });

  it('shows an approval to admins, to its role approvers and to its requester, and to no one else', async () => {
    const task = await openTask('agent-3');
    const gatedId = await requestApproval('agent-3', task);
    const prodTask = await openTask('agent-3', { labels: { environment: 'production' } });
    const ruleId = await requestApproval('agent-3', prodTask, 'normal');

    const ids = (res: { json: { items: { id: string }[] } }) => res.json.items.map((a) => a.id);
    const admin = await t.call('GET', '/v1/approvals', { subject: 'admin' });
    expect(admin.status).toBe(200);
    expect(ids(admin)).toEqual(expect.arrayContaining([gatedId, ruleId]));

    const approver = await t.call('GET', '/v1/approvals?status=pending', { subject: 'approver-1' });
    expect(approver.status).toBe(200);
    expect(ids(approver)).toContain(gatedId);
    // approver-1 approves `gated` only; the rule-gated `normal` request is for admins.
    expect(ids(approver)).not.toContain(ruleId);
    for (const item of approver.json.items) expect(item.role).toBe('gated');

    const stranger = await t.call('GET', '/v1/approvals', { subject: 'agent-9' });
    expect(stranger.status).toBe(200);
    expect(stranger.json.items).toEqual([]);

    const mine = await t.call('GET', `/v1/approvals/${gatedId}`, { subject: 'agent-3' });
    expect(mine.status).toBe(200);
    expect(mine.json.approval).toMatchObject({ id: gatedId, status: 'pending' });
    expect((await t.call('GET', `/v1/approvals/${gatedId}`, { subject: 'approver-1' })).status).toBe(200);

    const other = await t.call('GET', `/v1/approvals/${gatedId}`, { subject: 'agent-9' });
    expect(other.status).toBe(404);
    expect(other.json.code).toBe('approval_not_found');
    expect((await t.call('GET', `/v1/approvals/${ruleId}`, { subject: 'approver-1' })).status).toBe(404);
  });

  it('approves, redeems exactly once, and records the approval on the lease', async () => {
    const task = await openTask('agent-4');
    const id = await requestApproval('agent-4', task);

    const approved = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'approver-1' }, { reason: 'ticket CHG-42' });
    expect(approved.status).toBe(200);
    expect(approved.json.approval).toMatchObject({ id, status: 'approved', decided_by: 'test/approver-1', decision_reason: 'ticket CHG-42' });
    expect(approved.json.approval.decided_at).toBe(t.clock.now().toISOString());
    // A decided request cannot be decided again.
    const again = await t.call('POST', `/v1/approvals/${id}/deny`, { subject: 'admin' }, { reason: 'too late' });
    expect(again.status).toBe(409);
    expect(again.json.code).toBe('approval_not_pending');

    const issued = await request('agent-4', { task, role: 'gated', approval: id });
    expect(issued.status).toBe(201);
    expect(typeof issued.json.credentials.token).toBe('string');
    expect(issued.json.lease).toMatchObject({ status: 'active', task, role: 'gated', subject: 'agent-4' });
    const leaseId = issued.json.lease.id as string;

    const twice = await request('agent-4', { task, role: 'gated', approval: id });
    expect(twice.status).toBe(409);
    expect(twice.json.code).toBe('approval_not_redeemable');
    expect(await leasesOf(task)).toHaveLength(1);

    const polled = await t.call('GET', `/v1/approvals/${id}`, { subject: 'agent-4' });
    expect(polled.json.approval.status).toBe('redeemed');

    const leaseEvents = await auditOf(`lease:${leaseId}`);
    const issuedEvent = leaseEvents.find((e) => e.action === 'credential.issued');
    expect(issuedEvent?.details.approval).toBe(id);

    const events = await auditOf(`approval:${id}`);
    expect(events.map((e) => e.action)).toEqual(['approval.requested', 'approval.approved', 'approval.redeemed']);
    expect(events[1]).toMatchObject({ actor: 'test/approver-1', decision: 'allow', reason: 'ticket CHG-42', details: { task, role: 'gated', requester: 'test/agent-4' } });
    expect(events[2]).toMatchObject({ actor: 'test/agent-4', decision: 'allow', details: { task, role: 'gated' } });
  });

  it('lets an admin approve a rule-gated request, redeemable only for its own task and role', async () => {
    const task = await openTask('agent-5', { labels: { environment: 'production' } });
    const id = await requestApproval('agent-5', task, 'normal');
    // approver-1 approves only `gated`: for this request it is a stranger.
    const notTheirs = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'approver-1' }, { reason: 'sure' });
    expect(notTheirs.status).toBe(404);
    expect(notTheirs.json.code).toBe('approval_not_found');

    const approved = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'admin' }, { reason: 'prod change window' });
    expect(approved.status).toBe(200);
    expect(approved.json.approval.decided_by).toBe('test/admin');

    const wrongRole = await request('agent-5', { task, role: 'gated', approval: id });
    expect(wrongRole.status).toBe(409);
    expect(wrongRole.json.code).toBe('approval_not_redeemable');
    const otherTask = await openTask('agent-5', { labels: { environment: 'production' } });
    const wrongTask = await request('agent-5', { task: otherTask, role: 'normal', approval: id });
    expect(wrongTask.status).toBe(409);
    expect(wrongTask.json.code).toBe('approval_not_redeemable');

    const issued = await request('agent-5', { task, role: 'normal', approval: id });
    expect(issued.status).toBe(201);
  });

  it('never redeems for longer than the TTL the approver saw', async () => {
    const task = await openTask('agent-12');
    const short = await request('agent-12', { task, role: 'gated', ttl_seconds: 120 });
    expect(short.json.approval.requested_ttl_seconds).toBe(120);
    const id = short.json.approval.id as string;
    expect((await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'approver-1' }, { reason: 'two minutes' })).status).toBe(200);
    const issued = await request('agent-12', { task, role: 'gated', approval: id, ttl_seconds: 3600 });
    expect(issued.status).toBe(201);
    expect(Date.parse(issued.json.lease.expires_at) - Date.parse(issued.json.lease.issued_at)).toBe(120_000);

    // Without a requested TTL the approver sees (and redemption gets at most) the role's default.
    const plain = await request('agent-12', { task, role: 'gated' });
    expect(plain.json.approval.requested_ttl_seconds).toBe(900);
  });

  it('does not record an approval on a lease it was not redeemed for', async () => {
    // agent-13's approved request stays unused...
    const theirs = await openTask('agent-13');
    const id = await requestApproval('agent-13', theirs);
    expect((await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'approver-1' }, { reason: 'ok' })).status).toBe(200);
    // ...while agent-14 names it on a request for a role that needs no approval.
    const task = await openTask('agent-14');
    const res = await request('agent-14', { task, role: 'normal', approval: id });
    const [row] = await database.db.select().from(approvals).where(eq(approvals.id, id));
    expect(row!.status).toBe('approved');
    expect((await auditOf(`approval:${id}`)).map((e) => e.action)).toEqual(['approval.requested', 'approval.approved']);
    if (res.status === 201) {
      // Issued without the approval: the audit must not claim one was used.
      const events = await auditOf(`lease:${res.json.lease.id}`);
      const issued = events.find((e) => e.action === 'credential.issued');
      expect(issued).toBeDefined();
      expect(issued!.details.approval).toBeUndefined();
    } else {
      // Or refused outright, with nothing issued.
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(await leasesOf(task)).toHaveLength(0);
    }
  });

  it('refuses to redeem a denied request', async () => {
    const task = await openTask('agent-6');
    const id = await requestApproval('agent-6', task);
    const denied = await t.call('POST', `/v1/approvals/${id}/deny`, { subject: 'approver-1' }, { reason: 'not during the freeze' });
    expect(denied.status).toBe(200);
    expect(denied.json.approval).toMatchObject({ status: 'denied', decided_by: 'test/approver-1', decision_reason: 'not during the freeze' });

    const redeem = await request('agent-6', { task, role: 'gated', approval: id });
    expect(redeem.status).toBe(409);
    expect(redeem.json.code).toBe('approval_not_redeemable');
    const approve = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'admin' }, { reason: 'override' });
    expect(approve.status).toBe(409);
    expect(approve.json.code).toBe('approval_not_pending');
    expect(await leasesOf(task)).toHaveLength(0);

    const events = await auditOf(`approval:${id}`);
    expect(events.map((e) => e.action)).toEqual(['approval.requested', 'approval.denied']);
    expect(events[1]).toMatchObject({ actor: 'test/approver-1', decision: 'deny', reason: 'not during the freeze' });
  });

  it('forbids a requester who is also an approver from deciding its own request', async () => {
    const task = await openTask('agent-self');
    const id = await requestApproval('agent-self', task);
    for (const verdict of ['approve', 'deny']) {
      const res = await t.call('POST', `/v1/approvals/${id}/${verdict}`, { subject: 'agent-self' }, { reason: 'looks fine to me' });
      expect(res.status).toBe(403);
      expect(res.json.code).toBe('self_approval');
    }
    const [row] = await database.db.select().from(approvals).where(eq(approvals.id, id));
    expect(row!.status).toBe('pending');
    expect((await auditOf(`approval:${id}`)).map((e) => e.action)).toEqual(['approval.requested']);

    // agent-self is an approver of `gated`, so it may decide someone else's request.
    const otherTask = await openTask('agent-7');
    const otherId = await requestApproval('agent-7', otherTask);
    const decided = await t.call('POST', `/v1/approvals/${otherId}/approve`, { subject: 'agent-self' }, { reason: 'peer review' });
    expect(decided.status).toBe(200);
    expect(decided.json.approval.decided_by).toBe('test/agent-self');
  });

  it('does not let anyone else decide (the approval stays hidden)', async () => {
    const task = await openTask('agent-8');
    const id = await requestApproval('agent-8', task);
    const res = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'agent-9' }, { reason: 'me too' });
    expect(res.status).toBe(404);
    expect(res.json.code).toBe('approval_not_found');
    const orchestrator = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'orchestrator' }, { reason: 'me too' });
    expect(orchestrator.status).toBe(404);
  });

  it('expires a pending request past the approval TTL, and the sweeper marks it expired', async () => {
    const task = await openTask('agent-10');
    const id = await requestApproval('agent-10', task);
    t.clock.advance(APPROVAL_TTL + 1);

    const late = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'approver-1' }, { reason: 'sorry, was away' });
    expect(late.status).toBe(409);
    expect(late.json.code).toBe('approval_not_pending');

    await t.broker.sweeper.runOnce();
    const polled = await t.call('GET', `/v1/approvals/${id}`, { subject: 'agent-10' });
    expect(polled.status).toBe(200);
    expect(polled.json.approval.status).toBe('expired');

    const events = await auditOf(`approval:${id}`);
    expect(events.map((e) => e.action)).toEqual(['approval.requested', 'approval.expired']);
    expect(events[1]).toMatchObject({ actor: 'system:sweeper', details: { task, role: 'gated' } });
  });

  it('expires an approved request that is not redeemed in time', async () => {
    const task = await openTask('agent-11');
    const id = await requestApproval('agent-11', task);
    const approved = await t.call('POST', `/v1/approvals/${id}/approve`, { subject: 'approver-1' }, { reason: 'ok' });
    expect(approved.status).toBe(200);
    // The redemption window is the approval TTL from the decision.
    expect(Date.parse(approved.json.approval.expires_at) - t.clock.now().getTime()).toBe(APPROVAL_TTL * 1000);
    t.clock.advance(APPROVAL_TTL + 1);

    const redeem = await request('agent-11', { task, role: 'gated', approval: id });
    expect(redeem.status).toBe(409);
    expect(redeem.json.code).toBe('approval_not_redeemable');
    expect(await leasesOf(task)).toHaveLength(0);

    await t.broker.sweeper.runOnce();
    const [row] = await database.db.select().from(approvals).where(eq(approvals.id, id));
    expect(row!.status).toBe('expired');
    expect((await auditOf(`approval:${id}`)).map((e) => e.action)).toEqual(['approval.requested', 'approval.approved', 'approval.expired']);
  });
});
