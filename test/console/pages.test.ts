/**
 * The console's approval, agents and leases pages, in process against both
 * drivers, per person: dev/admin (an admin) and dev/approver-a (an approver
 * of `gated` and the owner of the agent `worker`, not of `other`). What each
 * page answers each of them, and that every action goes through the services:
 * a suspension revokes the agent's lease and refuses its next request, an
 * owner cannot act on another's agent, only admins see and revoke leases.
 */
import { eq } from 'drizzle-orm';
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema.js';
import { useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { devConsoleConfig, devToken, signedIn } from './support.js';

const owner = (name: string, subject: string) => ({ name, contact: `${name}@example.com`, principals: [{ issuer: 'dev', subject }] });
const config = await devConsoleConfig({
  agents: {
    require_registration: false,
    register: [
      { name: 'worker', match: { issuer: 'test', subject: 'agent-worker' }, owner: owner('team-a', 'approver-a'), purpose: 'deploys the shop', roles: ['demo', 'gated'] },
      { name: 'other', match: { issuer: 'test', subject: 'agent-other' }, owner: owner('team-b', 'owner-b'), purpose: 'writes reports', roles: ['demo'] },
      { name: 'asker', match: { issuer: 'test', subject: 'agent-asker' }, owner: owner('team-c', 'owner-c'), purpose: 'asks for approvals', roles: ['demo', 'gated'] },
    ],
  },
});

async function openTask(t: TestBroker, agent: string, roles: string[]): Promise<string> {
  const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: agent }, roles, ttl_seconds: 3600 });
  expect(task.status, task.text).toBe(201);
  return task.json.task.id;
}
async function lease(t: TestBroker, agent: string): Promise<{ task: string; id: string }> {
  const task = await openTask(t, agent, ['demo']);
  const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role: 'demo' });
  expect(res.status, res.text).toBe(201);
  return { task, id: res.json.lease.id };
}
async function gated(t: TestBroker, role: string, agent: string): Promise<string> {
  const task = await openTask(t, agent, [role]);
  const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role });
  expect(res.status, res.text).toBe(202);
  return res.json.approval.id;
}
const adminBearer = () => devToken(config.data_dir, 'admin');

describe.each(DRIVERS)('console pages (%s)', (driver) => {
  let t: TestBroker;
  let database: TestDatabase;
  useTestBroker(driver, (db, broker) => ((database = db), (t = broker)), { config });

  const as = (subject: string) => signedIn(t, subject);
  const leaseStatus = async (id: string) => (await database.db.select().from(leases).where(eq(leases.id, id)))[0]!.status;

  it("shows one approval on its own page to whoever may see it, and a 404 like a missing one to anyone else", async () => {
    const admin = await as('admin');
    const approver = await as('approver-a');
    const mine = await gated(t, 'gated', 'agent-x1');
    const notMine = await gated(t, 'gated-b', 'agent-x2');
    const answers = async (c: typeof admin, path: string) => (await c.request('GET', path)).status;
    expect(await answers(admin, `/console/approvals/${mine}`)).toBe(200);
    expect(await answers(admin, `/console/approvals/${notMine}`)).toBe(200);
    expect(await answers(approver, `/console/approvals/${mine}`)).toBe(200);
    const hidden = await approver.request('GET', `/console/approvals/${notMine}`);
    const missing = await approver.request('GET', `/console/approvals/${randomUUID()}`);
    expect([hidden.status, missing.status, (await approver.request('GET', '/console/approvals/not-a-uuid')).status]).toEqual([404, 404, 404]);
    expect(hidden.text).toBe(missing.text);
    expect(hidden.text).not.toContain('gated-b');

    // One screen to decide on: the agent asking (registered: its owner and purpose), and what its task already holds.
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, {
      agent: { issuer: 'test', subject: 'agent-asker' },
      roles: ['demo', 'gated'],
      ttl_seconds: 3600,
      purpose: 'rotate the <reports> key',
      owner: 'team-c',
    });
    expect(opened.json.task).toMatchObject({ purpose: 'rotate the <reports> key', owner: 'team-c' });
    const task = opened.json.task.id as string;
    expect((await t.call('POST', '/v1/credentials', { subject: 'agent-asker' }, { task, role: 'demo' })).status).toBe(201);
    const asks = await t.call('POST', '/v1/credentials', { subject: 'agent-asker' }, { task, role: 'gated' });
    const full = (await admin.request('GET', `/console/approvals/${asks.json.approval.id}`)).text;
    expect(full).toMatch(/<strong>asker<\/strong> · owner team-c <span class="muted">team-c@example.com<\/span> · asks for approvals/);
    expect(full).toMatch(/Task holds<\/dt><dd><span class="held"><code>demo<\/code>/);
    // Why the task exists and who answers for it, as text (escaped).
    expect(full).toContain('<div>Purpose: rotate the &lt;reports&gt; key</div><div>Owner: team-c</div>');
    expect((await admin.request('GET', `/console/approvals/${mine}`)).text).toContain('no registered agent');

    // The decide form on the page returns to the page.
    const page = await approver.request('GET', `/console/approvals/${mine}`);
    expect(page.text).toContain('name="back" value="detail"');
    const res = await approver.request('POST', `/console/approvals/${mine}/decide`, { csrf: approver.token, verdict: 'approve', reason: 'ok', back: 'detail' });
    expect({ status: res.status, location: res.headers.get('location') }).toEqual({ status: 303, location: `/console/approvals/${mine}?notice=approved` });
    expect((await approver.request('GET', `/console/approvals/${mine}?notice=approved`)).text).toContain('Approved.');
  });

  it('lists the whole registry to admins, and to an owner the agents it owns, as the API decides', async () => {
    await lease(t, 'agent-worker');
    const admin = await as('admin');
    const approver = await as('approver-a');
    const list = await admin.request('GET', '/console/agents');
    expect(list.status).toBe(200);
    for (const text of ['worker', 'team-a', 'deploys the shop', 'demo ×1', 'gated (unused)', 'in good standing']) expect(list.text).toContain(text);
    expect(list.text).toContain('href="/console/agents/worker#switch"');
    expect(list.text).toContain('href="/console/agents/other#switch"');
    const theirs = await approver.request('GET', '/console/agents');
    expect(theirs.text).toContain('href="/console/agents/worker#switch"');
    expect(theirs.text).not.toContain('/console/agents/other');
    // Another's agent is answered like a missing one (GET /v1/agents/{name} refuses non-owners whether it exists or not).
    expect((await approver.request('GET', '/console/agents/other')).status).toBe(404);
    expect((await approver.request('GET', '/console/agents/ghost')).status).toBe(404);
    expect((await approver.request('GET', '/console/agents/worker')).text).toContain('action="/console/agents/worker/suspend"');
    for (const path of ['/console/agents/ghost', '/console/agents/Not%20A%20Name', `/console/agents/${'a'.repeat(64)}`]) expect((await admin.request('GET', path)).status, path).toBe(404);
  });

  it("lets an owner suspend its own agent (its lease revoked, its next request refused) and resume it, never another's", async () => {
    const held = await lease(t, 'agent-worker');
    const approver = await as('approver-a');
    const refused = await approver.request('POST', '/console/agents/other/suspend', { csrf: approver.token, reason: 'not mine' });
    // Another's agent answers the page a missing one does: the console tells nothing of the registry.
    expect(refused.status).toBe(404);
    expect((await approver.request('POST', '/console/agents/no-such-agent/suspend', { csrf: approver.token, reason: 'x' })).status).toBe(404);
    expect((await t.call('GET', '/v1/agents/other', { bearer: await adminBearer() })).json.agent.suspension).toBeNull();

    const noReason = await approver.request('POST', '/console/agents/worker/suspend', { csrf: approver.token, reason: '' });
    expect(noReason.headers.get('location')).toBe('/console/agents/worker?notice=reason_required');
    const done = await approver.request('POST', '/console/agents/worker/suspend', { csrf: approver.token, reason: 'leaked its token' });
    expect(done.headers.get('location')).toBe('/console/agents/worker?notice=suspended');
    expect(['revoking', 'revoked']).toContain(await leaseStatus(held.id));
    const asked = await t.call('POST', '/v1/credentials', { subject: 'agent-worker' }, { task: held.task, role: 'demo' });
    expect({ status: asked.status, code: asked.json.code }).toEqual({ status: 403, code: 'agent_suspended' });
    const page = await approver.request('GET', '/console/agents/worker?notice=suspended');
    expect(page.text).toContain('leaked its token');
    expect(page.text).toContain('action="/console/agents/worker/resume"');
    const audit = await t.call('GET', '/v1/audit?target=agent:worker', { bearer: await adminBearer() });
    expect(audit.json.items.map((e: { actor: string; action: string }) => `${e.action} ${e.actor}`)).toContain('agent.suspended dev/approver-a');

    const back = await approver.request('POST', '/console/agents/worker/resume', { csrf: approver.token, reason: 'token rotated' });
    expect(back.headers.get('location')).toBe('/console/agents/worker?notice=resumed');
    expect((await t.call('POST', '/v1/credentials', { subject: 'agent-worker' }, { task: held.task, role: 'demo' })).status).toBe(201);

    // An admin's suspension is lifted by an admin only.
    const admin = await as('admin');
    expect((await admin.request('POST', '/console/agents/worker/suspend', { csrf: admin.token, reason: 'incident 7' })).headers.get('location')).toBe('/console/agents/worker?notice=suspended');
    expect((await approver.request('POST', '/console/agents/worker/resume', { csrf: approver.token, reason: 'mine' })).headers.get('location')).toBe('/console/agents/worker?notice=not_admin');
    expect((await admin.request('POST', '/console/agents/worker/resume', { csrf: admin.token, reason: 'incident closed' })).headers.get('location')).toBe('/console/agents/worker?notice=resumed');
  });

  it('shows leases to admins only, filtered, revoke_failed first, and revokes one with a reason', async () => {
    const one = await lease(t, 'agent-worker');
    const two = await lease(t, 'agent-other');
    const approver = await as('approver-a');
    expect((await approver.request('GET', '/console/leases')).status).toBe(403);
    expect((await approver.request('POST', `/console/leases/${one.id}/revoke`, { csrf: approver.token, reason: 'x' })).status).toBe(403);
    expect(await leaseStatus(one.id)).toBe('active');

    const admin = await as('admin');
    const filtered = await admin.request('GET', '/console/leases?status=active&agent=worker');
    expect(filtered.status).toBe(200);
    expect(filtered.text).toContain(`lease-${one.id}`);
    expect(filtered.text).not.toContain(`lease-${two.id}`);
    expect((await admin.request('GET', `/console/leases?task=${two.task}`)).text).toContain(`lease-${two.id}`);
    expect((await admin.request('GET', '/console/leases?subject=agent-other&role=demo')).text).not.toContain(`lease-${one.id}`);
    // By backend too (through leases.list, as GET /v1/leases?backend=): the form shows the filter back.
    const local = await admin.request('GET', `/console/leases?backend=local&task=${one.task}`);
    expect(local.text).toContain(`lease-${one.id}`);
    expect(local.text).toContain('name="backend" value="local"');
    expect((await admin.request('GET', `/console/leases?backend=vault&task=${one.task}`)).text).not.toContain(`lease-${one.id}`);
    // Odd filters match what they can, never an error page.
    expect((await admin.request('GET', '/console/leases?status=nope&role=%00&agent=A%20B&cursor=zzz')).status).toBe(200);

    // A credential the broker could not revoke leads the page, with its attempts and last error.
    await database.db.update(leases).set({ status: 'revoke_failed', attempts: 3, lastError: 'backend said 503' }).where(eq(leases.id, two.id));
    const page = await admin.request('GET', '/console/leases?agent=worker');
    expect(page.text).toMatch(/id="revoke-failed"[\s\S]*3 attempts: backend said 503/);
    expect(page.text).toContain(`lease-${two.id}`);

    const res = await admin.request('POST', `/console/leases/${one.id}/revoke?agent=worker`, { csrf: admin.token, reason: 'rotating keys' });
    expect({ status: res.status, location: res.headers.get('location') }).toEqual({ status: 303, location: '/console/leases?agent=worker&notice=revoking' });
    expect(['revoking', 'revoked']).toContain(await leaseStatus(one.id));
    const audit = await t.call('GET', `/v1/audit?target=lease:${one.id}`, { bearer: await adminBearer() });
    expect(audit.json.items).toContainEqual(expect.objectContaining({ action: 'admin.revoke', actor: 'dev/admin', reason: 'rotating keys' }));
    expect((await admin.request('POST', `/console/leases/${randomUUID()}/revoke`, { csrf: admin.token, reason: 'x' })).status).toBe(404);
    expect((await admin.request('POST', '/console/leases/not-an-id/revoke', { csrf: admin.token, reason: 'x' })).status).toBe(404);
  });
});
