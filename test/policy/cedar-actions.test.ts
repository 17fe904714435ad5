// Cedar beyond the first request: what is held (context.task_roles, agent_roles and their labels), decided
// again under the commit's locks; and the other actions, OpenTask, Approve and Renew, which the YAML permits
// (`base:*`) and operators' policies narrow.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { RoleSchema } from '../../src/config/schema.js';
import { leases } from '../../src/db/schema.js';
import { createPolicy } from '../../src/policy/decide.js';
import { ADMIN_STATIC_TOKEN, HARNESS_ROLES, useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const RC = 'action == Tasklease::Action::"RequestCredential"';

const POLICIES = `
@id("customer-data-no-egress") @conflict("customer-data-egress")
forbid (principal, ${RC}, resource)
when { (context.agent_role_labels.contains("data=customer") && resource.hasTag("egress")) ||
       (context.agent_role_labels.contains("egress=true") && resource.hasTag("data") && resource.getTag("data") == "customer") };

@id("production-tasks-have-owners")
forbid (principal, action == Tasklease::Action::"OpenTask", resource)
when { resource.hasTag("environment") && resource.getTag("environment") == "production" && resource.owner == "" };

@id("no-long-approvals")
forbid (principal, action == Tasklease::Action::"Approve", resource)
when { context.ttl_seconds > 1800 };
`;

const dir = mkdtempSync(join(tmpdir(), 'cedar-actions-'));
writeFileSync(join(dir, 'ops.cedar'), POLICIES);

const config = {
  roles: [
    ...HARNESS_ROLES,
    // Its relying parties introspect, so a released credential stops counting as held once revoked.
    { name: 'customer-data', backend: 'local', labels: { data: 'customer' }, allow: AGENTS, jwt: { audience: 'crm', relying_parties_introspect: true } },
    { name: 'egress', backend: 'local', labels: { egress: 'true' }, allow: AGENTS },
    { name: 'gated', backend: 'local', ttl: '10m', max_ttl: '1h', requires_approval: true, allow: AGENTS },
  ],
  policy: { cedar: { files: [join(dir, 'ops.cedar')] } },
};

describe.each(DRIVERS)('Cedar on what is held, and on the other actions, on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config: config as never });

  async function openTask(agent: string, roles: string[], extra: Record<string, unknown> = {}) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles, ttl_seconds: 3600, ...extra });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    return res.json.task.id as string;
  }
  const request = (agent: string, task: string, role: string, extra: Record<string, unknown> = {}) => t.call('POST', '/v1/credentials', { subject: agent }, { task, role, ...extra });
  const auditOf = async (target: string) => (await t.call('GET', `/v1/audit?target=${encodeURIComponent(target)}`, { subject: 'admin' })).json.items as { action: string; decision: string; reason: string | null; details: Record<string, unknown> }[];

  it('refuses a role that would complete a toxic pair across two tasks of one agent, as a conflict named by its policy', async () => {
    const first = await openTask('agent-h1', ['customer-data']);
    const second = await openTask('agent-h1', ['egress']);
    const held = await request('agent-h1', first, 'customer-data');
    expect(held.status).toBe(201);
    const refused = await request('agent-h1', second, 'egress');
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ code: 'role_conflict', conflict: 'customer-data-egress' });
    // The dry run says the same, with the policy.
    const dry = await t.call('POST', '/v1/policy/evaluate', { bearer: ADMIN_STATIC_TOKEN }, { identity: { issuer: 'test', subject: 'agent-h1' }, task: second, role: 'egress' });
    expect(dry.json).toMatchObject({ decision: 'deny', code: 'role_conflict', policies: ['customer-data-no-egress'] });
    // Another agent is not concerned; once the held lease ends, the pair is fine.
    expect((await request('agent-h2', await openTask('agent-h2', ['egress']), 'egress')).status).toBe(201);
    await t.call('DELETE', `/v1/leases/${held.json.lease.id}`, { subject: 'agent-h1' });
    await t.broker.sweeper.runOnce();
    expect((await request('agent-h1', second, 'egress')).status).toBe(201);
  });

  it('decides again under the commit locks: of concurrent requests for the pair, one role wins', async () => {
    const a = await openTask('agent-h3', ['customer-data']);
    const b = await openTask('agent-h3', ['egress']);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? request('agent-h3', a, 'customer-data') : request('agent-h3', b, 'egress'))));
    for (const r of results) expect([201, 403], JSON.stringify(r.json)).toContain(r.status);
    const won = new Set(results.filter((r) => r.status === 201).map((r) => r.json.lease.role as string));
    expect(won.size).toBe(1);
    const active = await database.db.select().from(leases).where(and(eq(leases.subject, 'agent-h3'), eq(leases.status, 'active')));
    expect(new Set(active.map((l) => l.role))).toEqual(won);
    // A credential minted but refused at commit is recorded and revoked, never counted as held.
    for (const l of await database.db.select().from(leases).where(and(eq(leases.subject, 'agent-h3'), eq(leases.reason, 'role_conflict')))) expect(l.status).not.toBe('active');
  });

  it('OpenTask: a policy refuses a production task without an owner, audited with the policy; with one it opens', async () => {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-o1' }, roles: ['demo'], ttl_seconds: 600, labels: { environment: 'production' } });
    expect(res.status).toBe(403);
    expect(res.json).toMatchObject({ code: 'policy_denied', policies: ['production-tasks-have-owners'] });
    const [refused] = await auditOf('agent:test/agent-o1');
    expect(refused).toMatchObject({ action: 'task.refused', decision: 'deny', details: { policies: ['production-tasks-have-owners'] } });
    const task = await openTask('agent-o1', ['demo'], { labels: { environment: 'production' }, owner: 'team-payments' });
    const [opened] = await auditOf(`task:${task}`);
    expect(opened).toMatchObject({ action: 'task.opened', details: { task_owner: 'team-payments', policies: ['base:open-task'] } });
  });

  it('Approve: a policy refuses an approval, which stays pending; denying it is never refused', async () => {
    const task = await openTask('agent-a1', ['gated']);
    const long = await request('agent-a1', task, 'gated', { ttl_seconds: 3600 });
    expect(long.status).toBe(202);
    const refused = await t.call('POST', `/v1/approvals/${long.json.approval.id}/approve`, { subject: 'admin' }, { reason: 'ok' });
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ code: 'policy_denied', policies: ['no-long-approvals'] });
    expect((await auditOf(`approval:${long.json.approval.id}`)).map((e) => e.action)).toEqual(['approval.requested', 'approval.refused']);
    expect((await t.call('POST', `/v1/approvals/${long.json.approval.id}/deny`, { subject: 'admin' }, { reason: 'too long' })).status).toBe(200);
    const short = await request('agent-a1', task, 'gated', { ttl_seconds: 600 });
    expect((await t.call('POST', `/v1/approvals/${short.json.approval.id}/approve`, { subject: 'admin' }, { reason: 'ok' })).status).toBe(200);
  });

  it('audits a reload of the policies, and a refused one', async () => {
    writeFileSync(join(dir, 'ops.cedar'), `${POLICIES}\n@id("extra") forbid (principal, ${RC}, resource) when { context.hour == 99 };\n`);
    expect(t.broker.policyReloader.reload('SIGHUP')).toBe(true);
    writeFileSync(join(dir, 'ops.cedar'), 'not cedar');
    expect(t.broker.policyReloader.reload('SIGHUP')).toBe(false);
    writeFileSync(join(dir, 'ops.cedar'), POLICIES);
    await new Promise((r) => setTimeout(r, 50));
    const events = (await t.call('GET', '/v1/audit?actor=system%3Apolicy', { subject: 'admin' })).json.items as { action: string; reason: string | null; details: Record<string, unknown> }[];
    const actions = events.map((e) => e.action);
    expect(actions).toContain('policy.reloaded');
    expect(actions).toContain('policy.reload_refused');
    expect(events.find((e) => e.action === 'policy.reload_refused')!.reason).toMatch(/ops\.cedar/);
  });
});

describe('Cedar on renewals and on approvals weighed', () => {
  const role = (name: string, extra: Record<string, unknown> = {}) => RoleSchema.parse({ name, backend: 'jwt', allow: [{ issuer: 'dev', subject_pattern: '.*' }], ...extra });
  const now = new Date('2026-12-07T10:00:00Z');
  const identity = { issuer: 'dev', subject: 'agent-1', claims: {}, tokenSha256: 'h', expiresAt: now };
  const task = { id: 't1', agentSubject: 'agent-1', agentIssuer: null, roles: ['db', 'gated'], labels: {}, status: 'open', createdBy: 'orch', createdAt: now, deadline: new Date(now.getTime() + 7_200_000), purpose: null, owner: null } as never;
  const src = (id: string, text: string) => ({ id, origin: id, text });

  it('Renew: permitted by base:renew unless a policy forbids it', () => {
    const policy = createPolicy([role('db')], undefined, {
      requireRegistration: false,
      cedar: [src('no-long-renewals', 'forbid (principal, action == Tasklease::Action::"Renew", resource) when { context.ttl_seconds > 900 && !context.approved };')],
    });
    const renew = (ttlSeconds: number, approved: boolean) => policy.mayRenew({ identity, task, role: policy.role('db')!, lease: 'l1', ttlSeconds, approved, now });
    expect(renew(600, false)).toEqual({ allow: true, policies: ['base:renew'] });
    expect(renew(3600, false)).toMatchObject({ allow: false, policies: ['no-long-renewals'] });
    expect(renew(3600, true)).toMatchObject({ allow: true });
  });

  it('weighs an approver decision with context.approved: a forbid on it makes a gated request a refusal', () => {
    const policy = createPolicy([role('gated', { requires_approval: true, max_ttl: 7200 })], undefined, {
      requireRegistration: false,
      cedar: [src('approvals-short', 'forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { context.approved && context.ttl_seconds > 1800 };')],
    });
    const decide = (requestedTtl: number) => policy.decide({ identity, task, roleName: 'gated', requestedTtl, now });
    expect(decide(600)).toMatchObject({ allow: true, approvalRequiredBy: 'role:gated' });
    expect(decide(3600)).toMatchObject({ allow: false, code: 'role_denied', policies: ['approvals-short'] });
  });

  it('refuses, fail closed, a request whose held roles a policy needs but nobody read', () => {
    const policy = createPolicy([role('db')], undefined, { requireRegistration: false, cedar: [src('held', 'forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { context.task_roles.contains("x") };')] });
    expect(policy.heldMatters('db')).toBe(true);
    expect(policy.decide({ identity, task, roleName: 'db', requestedTtl: undefined, now })).toMatchObject({ allow: false, code: 'policy_error' });
    expect(policy.decide({ identity, task, roleName: 'db', requestedTtl: undefined, now, held: { task: new Map(), agent: new Map() } })).toMatchObject({ allow: true });
  });
});
