import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { agentSuspensions, auditEvents, leases } from '../../src/db/schema.js';
import { createIssuer } from '../../src/leases/issue.js';
import { createLeaseWriter } from '../../src/leases/writer.js';
import { createLogger } from '../../src/log.js';
import { createLimits } from '../../src/policy/limits.js';
import { createPolicy } from '../../src/policy/decide.js';
import { createTaskCache } from '../../src/tasks/cache.js';
import type { Identity } from '../../src/identity/types.js';
import { HARNESS_ROLES, freshId, type TestBroker, useTestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';

const owner = (name: string, principal?: string) => ({ name, contact: `${name}@example.com`, principals: principal ? [{ issuer: 'test', subject: principal }] : [] });

/** Registration required; agent-1 alone, a fleet by pattern, and a third agent whose ceiling is demo only. */
export const AGENT_CONFIG = {
  require_registration: true,
  register: [
    { name: 'agent-1', match: { issuer: 'test', subject: 'agent-1' }, owner: owner('team-a', 'owner-a'), purpose: 'reports', roles: ['demo'] },
    { name: 'fleet', match: { issuer: 'test', subject_pattern: 'agent-fleet-.*' }, owner: owner('team-f'), purpose: 'batch work', roles: ['demo', 'flaky'], labels: { data_class: 'restricted' } },
  ],
};
/** Policy reads the agent's labels: a restricted agent's flaky credentials need an approver. */
const POLICY = { approvals: { rules: [{ name: 'restricted-agents', agent_labels: { data_class: 'restricted' }, roles: ['flaky'] }] } };

describe.each(DRIVERS)('the agent registry, on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config: { agents: AGENT_CONFIG, roles: HARNESS_ROLES, policy: POLICY } });

  const open = (subject: string, roles: string[]) => t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles, ttl_seconds: 600 });
  const ask = (subject: string, task: string, role = 'demo') => t.call('POST', '/v1/credentials', { subject }, { task, role });

  it('names the agent and its owner on every lease and its audit event, and filters leases by agent', async () => {
    const task = (await open('agent-fleet-1', ['demo'])).json.task.id;
    const res = await ask('agent-fleet-1', task);
    expect(res.status, res.text).toBe(201);
    expect(res.json.lease).toMatchObject({ agent: 'fleet', agent_owner: 'team-f' });
    const [event] = await database.db.select().from(auditEvents).where(eq(auditEvents.target, `lease:${res.json.lease.id}`));
    expect(event!.details).toMatchObject({ agent: 'fleet', owner: 'team-f' });
    const opened = await database.db.select().from(auditEvents).where(and(eq(auditEvents.target, `task:${task}`), eq(auditEvents.action, 'task.opened')));
    expect(opened[0]!.details).toMatchObject({ agent: 'fleet' });
    const listed = await t.call('GET', '/v1/leases?agent=fleet', { subject: 'admin' });
    expect(listed.json.items.map((l: { id: string }) => l.id)).toContain(res.json.lease.id);
    expect((await t.call('GET', '/v1/leases?agent=agent-1', { subject: 'admin' })).json.items.map((l: { id: string }) => l.id)).not.toContain(res.json.lease.id);
  });

  it('refuses an identity no agent matches, at task open and at issuance, when registration is required', async () => {
    const refused = await open('agent-stray', ['demo']);
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('agent_not_registered');
    // A task opened before registration was required still gets nothing.
    const now = t.clock.now();
    const id = freshId();
    await database.db.execute(
      `insert into tasks (id, agent_issuer, agent_subject, roles, status, created_by, created_at, deadline) values ('${id}', 'test', 'agent-stray', '{demo}', 'open', 'test', '${now.toISOString()}', '${new Date(now.getTime() + 600_000).toISOString()}')` as never,
    );
    const res = await ask('agent-stray', id);
    expect(res.status).toBe(403);
    expect(res.json.code).toBe('agent_not_registered');
  });

  it("holds every agent to its ceiling: a task cannot name a role outside it, and a request for one is refused", async () => {
    const wide = await open('agent-1', ['demo', 'flaky']);
    expect(wide.status).toBe(403);
    expect(wide.json).toMatchObject({ code: 'role_denied', roles: ['flaky'] });
    // An agent registered through the API, whose ceiling is then narrowed: the open task still lists flaky.
    const create = (roles: string[]) =>
      t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'narrowed', match: { issuer: 'test', subject: 'agent-narrowed' }, owner: owner('team-n'), purpose: 'ceiling test', roles });
    expect((await create(['demo', 'flaky'])).status).toBe(201);
    const task = (await open('agent-narrowed', ['demo', 'flaky'])).json.task.id;
    const first = await ask("agent-narrowed", task, "flaky");
    expect(first.status, first.text + t.logs.lines.filter((l) => l.includes("error")).join("\n")).toBe(201);
    expect((await t.call('DELETE', '/v1/agents/narrowed', { subject: 'admin' })).status).toBe(200);
    const again = await create(["demo"]);
    expect(again.status, again.text + t.logs.lines.filter((l) => l.includes("rror")).join("\n")).toBe(201);
    const refused = await ask('agent-narrowed', task, 'flaky');
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('role_denied');
    const [denied] = await database.db.select().from(auditEvents).where(and(eq(auditEvents.target, `task:${task}`), eq(auditEvents.action, 'credential.denied')));
    expect(denied!.reason).toContain("outside agent narrowed's ceiling");
    expect((await ask('agent-narrowed', task, 'demo')).status).toBe(201);
  });

  it('keeps the registry unambiguous and the config file in charge', async () => {
    const body = (name: string, match: Record<string, string>) => ({ name, match: { issuer: 'test', ...match }, owner: owner('x'), purpose: 'p', roles: ['demo'] });
    const post = (b: unknown) => t.call('POST', '/v1/agents', { subject: 'admin' }, b);
    expect((await post(body('agent-1', { subject: 'agent-elsewhere' }))).json.code).toBe('agent_exists');
    const overlap = await post(body('shadow', { subject: 'agent-fleet-9' }));
    expect(overlap.status).toBe(409);
    expect(overlap.json).toMatchObject({ code: 'agent_ambiguous', agents: ['fleet'] });
    expect((await post(body('pattern', { subject_pattern: 'agent-.*' }))).json.code).toBe('agent_ambiguous');
    expect((await post({ ...body('ghost-role', { subject: 'agent-ghost' }), roles: ['nope'] })).json.code).toBe('unknown_role');
    expect((await t.call('DELETE', '/v1/agents/fleet', { subject: 'admin' })).json.code).toBe('agent_from_config');
    expect((await t.call('DELETE', '/v1/agents/never-was', { subject: 'admin' })).json.code).toBe('agent_not_found');
  });

  it('suspends an agent: revokes its leases, refuses its requests, renewals and tasks, and audits it; resume undoes it', async () => {
    const task = (await open('agent-fleet-2', ['demo'])).json.task.id;
    const lease = (await ask('agent-fleet-2', task)).json.lease;
    const suspended = await t.call('POST', '/v1/agents/fleet/suspend', { subject: 'admin' }, { reason: 'token leaked in a log' });
    expect(suspended.status, suspended.text).toBe(200);
    expect(suspended.json.revoking).toBeGreaterThanOrEqual(1);
    const [row] = await database.db.select().from(leases).where(eq(leases.id, lease.id));
    expect(row).toMatchObject({ reason: 'agent_suspended' });
    expect(['revoking', 'revoked']).toContain(row!.status);

    const refused = await ask('agent-fleet-3', task);
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ code: 'agent_suspended', agent: 'fleet', owner: 'team-f', owner_contact: 'team-f@example.com' });
    expect(refused.json.detail).toContain('suspended');
    expect(JSON.stringify(refused.json)).not.toContain('token leaked');
    const renewal = await t.call('POST', `/v1/leases/${lease.id}/renew`, { subject: 'agent-fleet-2' }, {});
    expect(renewal.status).toBe(403);
    expect(renewal.json.code).toBe('agent_suspended');
    expect((await open('agent-fleet-4', ['demo'])).json.code).toBe('agent_suspended');
    // A second suspend keeps the first in force.
    expect((await t.call('POST', '/v1/agents/fleet/suspend', { subject: 'admin' }, { reason: 'again' })).json.suspension.id).toBe(suspended.json.suspension.id);

    const review = await t.call('GET', '/v1/agents/fleet', { subject: 'admin' });
    expect(review.json.agent.suspension).toMatchObject({ reason: 'token leaked in a log', suspended_by: 'test/admin' });
    const resumed = await t.call('POST', '/v1/agents/fleet/resume', { subject: 'admin' }, { reason: 'token rotated' });
    expect(resumed.status).toBe(200);
    expect(resumed.json.suspension).toMatchObject({ resumed_by: 'test/admin', resume_reason: 'token rotated' });
    expect((await ask('agent-fleet-2', task)).status).toBe(201);
    const history = (await t.call('GET', '/v1/agents/fleet', { subject: 'admin' })).json.agent;
    expect(history.suspension).toBeNull();
    expect(history.suspensions[0]).toMatchObject({ reason: 'token leaked in a log', resume_reason: 'token rotated' });
    const actions = (await database.db.select().from(auditEvents).where(eq(auditEvents.target, 'agent:fleet'))).map((e) => e.action);
    expect(actions).toEqual(['agent.suspended', 'agent.suspended', 'agent.resumed']);
  });

  it("lets an agent's owner suspend and resume it, and no one else but admins", async () => {
    expect((await t.call('POST', '/v1/agents/fleet/suspend', { subject: 'owner-a' }, { reason: 'not mine' })).json.code).toBe('not_agent_owner');
    expect((await t.call('POST', '/v1/agents/agent-1/suspend', { subject: 'orchestrator' }, { reason: 'x' })).json.code).toBe('not_agent_owner');
    expect((await t.call('POST', '/v1/agents/agent-1/suspend', { subject: 'owner-a' }, { reason: 'paused by its owner' })).status).toBe(200);
    expect((await t.call('GET', '/v1/agents/agent-1', { subject: 'owner-a' })).json.agent.suspension.suspended_by).toBe('test/owner-a');
    expect((await t.call('POST', '/v1/agents/agent-1/resume', { subject: 'owner-a' }, { reason: 'back' })).status).toBe(200);
    expect((await t.call('GET', '/v1/agents', { subject: 'owner-a' })).json.code).toBe('not_admin');
  });

  it('suspends the identities a rule matches, registered or not, until the rule is lifted', async () => {
    const task = (await open('agent-fleet-5', ['demo'])).json.task.id;
    const other = (await open('agent-fleet-6', ['demo'])).json.task.id;
    const held = (await ask('agent-fleet-5', task)).json.lease;
    const rule = await t.call('POST', '/v1/suspensions', { subject: 'admin' }, { match: { issuer: 'test', subject_pattern: 'agent-fleet-5' }, reason: 'odd traffic' });
    expect(rule.status, rule.text).toBe(201);
    expect(rule.json.revoking).toBe(1);
    expect((await database.db.select().from(leases).where(eq(leases.id, held.id)))[0]!.reason).toBe('agent_suspended');
    expect((await ask('agent-fleet-5', task)).json.code).toBe('agent_suspended');
    expect((await ask('agent-fleet-6', other)).status).toBe(201);
    expect((await t.call('GET', '/v1/suspensions', { subject: 'admin' })).json.items.map((s: { id: string }) => s.id)).toContain(rule.json.suspension.id);
    const withClaims = await t.call('POST', '/v1/suspensions', { subject: 'admin' }, { match: { issuer: 'test', claims: { x: 'y' } }, reason: 'r' });
    expect(withClaims.status).toBe(400);
    expect((await t.call('POST', `/v1/suspensions/${rule.json.suspension.id}/lift`, { subject: 'admin' }, { reason: 'explained' })).status).toBe(200);
    expect((await ask('agent-fleet-5', task)).status).toBe(201);
    expect((await t.call('POST', `/v1/suspensions/${rule.json.suspension.id}/lift`, { subject: 'admin' }, { reason: 'again' })).json.code).toBe('suspension_not_found');
  });

  it('reviews what an agent holds against its ceiling, and lists the agents whose ceiling is wider than their use', async () => {
    const task = (await open('agent-fleet-7', ['demo'])).json.task.id;
    await ask('agent-fleet-7', task);
    expect((await ask('agent-1', (await open('agent-1', ['demo'])).json.task.id)).status).toBe(201);
    const review = (await t.call('GET', '/v1/agents/fleet', { subject: 'admin' })).json.agent;
    expect(review.roles).toEqual(['demo', 'flaky']);
    expect(review.held[0]).toMatchObject({ role: 'demo' });
    expect(review.held[0].count).toBeGreaterThanOrEqual(1);
    expect(review.unused_roles).toEqual(['flaky']);
    expect(review.last_activity).not.toBeNull();
    expect(review.active_leases.count).toBeGreaterThanOrEqual(1);
    expect(review.active_leases.items.every((l: { agent: string; status: string }) => l.agent === 'fleet' && l.status === 'active')).toBe(true);
    const wider = (await t.call('GET', '/v1/agents?unused_roles=true', { subject: 'admin' })).json.items;
    expect(wider.find((a: { name: string }) => a.name === 'fleet')).toMatchObject({ unused_roles: ['flaky'] });
    expect(wider.find((a: { name: string }) => a.name === 'agent-1')).toBeUndefined();
    const all = (await t.call('GET', '/v1/agents', { subject: 'admin' })).json.items.map((a: { name: string }) => a.name);
    expect(all).toEqual(expect.arrayContaining(['agent-1', 'fleet']));
  });

  it("lets policy read the agent's labels: an approval rule on agent labels gates that agent's requests only", async () => {
    const task = (await open('agent-fleet-11', ['demo', 'flaky'])).json.task.id;
    const gated = await ask('agent-fleet-11', task, 'flaky');
    expect(gated.status, gated.text).toBe(202);
    expect(gated.json.approval.required_by).toBe('rule:restricted-agents');
    expect((await ask('agent-fleet-11', task, 'demo')).status).toBe(201);
    // The dry run says the same, and names the agent.
    const explained = await t.call('POST', '/v1/policy/evaluate', { subject: 'admin' }, { identity: { issuer: 'test', subject: 'agent-fleet-11' }, task, role: 'flaky' });
    expect(explained.json).toMatchObject({ decision: 'approval_required', required_by: 'rule:restricted-agents', agent: 'fleet' });
  });

  it('counts per agent: issued, refused by code, and active leases', async () => {
    const task = (await open('agent-fleet-10', ['demo'])).json.task.id;
    expect((await ask('agent-fleet-10', task)).status).toBe(201);
    expect((await ask('agent-stray-2', task)).json.code).toBe('agent_not_registered');
    const text = await t.broker.metrics.registry.metrics();
    expect(text).toMatch(/^tasklease_agent_credentials_issued_total\{agent="fleet"\} [1-9]/m);
    expect(text).toMatch(/^tasklease_agent_credentials_denied_total\{agent="-",code="agent_not_registered"\} [1-9]/m);
    expect(text).toMatch(/^tasklease_agent_leases_active\{agent="fleet"\} [1-9]/m);
  });

  it('decides again in the commit when the registry moved after the decision: a suspension it had not seen refuses the credential', async () => {
    const task = (await open('agent-fleet-8', ['demo'])).json.task.id;
    const identity: Identity = { issuer: 'test', subject: 'agent-fleet-8', claims: { sub: 'agent-fleet-8' }, tokenSha256: 'b'.repeat(64), expiresAt: new Date(t.clock.now().getTime() + 3600_000) };
    // The decision is made on the registry before the suspension; the commit sees the suspension.
    const before = await t.broker.agentService.resolve(identity);
    await t.call('POST', '/v1/agents/fleet/suspend', { subject: 'admin' }, { reason: 'between decision and commit' });
    const issue = createIssuer({
      db: database.db,
      clock: t.clock,
      policy: createPolicy(t.config.roles, t.config.policy, { requireRegistration: true }),
      limits: createLimits(t.config.policy),
      approvals: t.broker.approvals,
      refusals: t.broker.refusals,
      backends: t.broker.backends,
      writer: createLeaseWriter({ writes: database.writes, limits: createLimits(t.config.policy), onRevokeRequested: () => {} }),
      taskCache: createTaskCache({ db: database.db, clock: t.clock }),
      log: createLogger('silent'),
      agents: { resolve: async () => before, resolveAt: t.broker.agentService.resolveAt },
    });
    const outcome = await issue({ identity, taskId: task, roleName: 'demo' }).then(
      () => 'issued',
      (err: { code?: string }) => err.code,
    );
    expect(outcome).toBe('agent_suspended');
    const rows = await database.db.select().from(leases).where(eq(leases.taskId, task));
    expect(rows).toHaveLength(1);
    // Never released: its own reason, so it never counts as held (policy/limits.ts NEVER_RELEASED); the audit has the code.
    expect(rows[0]).toMatchObject({ status: 'revoking', reason: 'registry_changed' });
    const suspensions = await database.db.select().from(agentSuspensions).where(eq(agentSuspensions.agent, 'fleet'));
    expect(suspensions.some((s) => s.resumedAt === null)).toBe(true);
    await t.call('POST', '/v1/agents/fleet/resume', { subject: 'admin' }, { reason: 'done' });
  });
});
