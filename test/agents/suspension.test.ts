import { eq, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { agents, leases, registryState } from '../../src/db/schema.js';
import { parseConfig, ConfigError } from '../../src/config/load.js';
import { HARNESS_ROLES, type TestBroker, useTestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { until } from '../support/child-broker.js';
import { revokeHeld } from '../../src/agents/held.js';

const owner = (name: string, principal?: string) => ({ name, contact: `${name}@example.com`, principals: principal ? [{ issuer: 'test', subject: principal }] : [] });
/** Registration not required: identities may hold leases before an agent is registered for them. */
const AGENTS = {
  require_registration: false,
  register: [{ name: 'owned', match: { issuer: 'test', subject: 'agent-owned' }, owner: owner('team-o', 'owner-o'), purpose: 'owner rules', roles: ['demo'] }],
};
const definition = (subject: string, extra: Record<string, unknown> = {}) => ({ match: { issuer: 'test', subject }, owner: owner('team'), purpose: 'p', roles: ['demo'], ...extra });

describe.each(DRIVERS)('suspensions, on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config: { agents: AGENTS, roles: HARNESS_ROLES } });

  const open = async (subject: string) => (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles: ['demo'], ttl_seconds: 600 })).json.task.id as string;
  const ask = (subject: string, task: string) => t.call('POST', '/v1/credentials', { subject }, { task, role: 'demo' });
  const statusOf = async (id: string) => (await database.db.select().from(leases).where(eq(leases.id, id)))[0]!;

  it("revokes the leases an agent's identity held before the agent was registered", async () => {
    const task = await open('agent-late');
    const before = (await ask('agent-late', task)).json.lease;
    expect(before.agent).toBeNull();
    expect((await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'late', ...definition('agent-late') })).status).toBe(201);
    const suspended = await t.call('POST', '/v1/agents/late/suspend', { subject: 'admin' }, { reason: 'found late' });
    expect(suspended.json.revoking).toBe(1);
    expect(suspended.json.suspension.revoked).toBe(1);
    expect(await statusOf(before.id)).toMatchObject({ reason: 'agent_suspended' });
  });

  it("lets an owner lift only its own suspension: an admin's stays until an admin lifts it", async () => {
    expect((await t.call('POST', '/v1/agents/owned/suspend', { subject: 'admin' }, { reason: 'incident' })).status).toBe(200);
    const refused = await t.call('POST', '/v1/agents/owned/resume', { subject: 'owner-o' }, { reason: 'not so fast' });
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('not_admin');
    expect((await t.call('POST', '/v1/agents/owned/resume', { subject: 'admin' }, { reason: 'over' })).status).toBe(200);
    // The owner's own suspension is the owner's to lift.
    expect((await t.call('POST', '/v1/agents/owned/suspend', { subject: 'owner-o' }, { reason: 'pausing' })).status).toBe(200);
    expect((await t.call('POST', '/v1/agents/owned/resume', { subject: 'owner-o' }, { reason: 'resuming' })).status).toBe(200);
  });

  it('refuses an owner who could be an agent, through the API and in the config', async () => {
    const selfOwned = await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'self', ...definition('agent-self', { owner: owner('team', 'agent-self') }) });
    expect(selfOwned.status).toBe(400);
    expect(selfOwned.json).toMatchObject({ code: 'validation_failed', agents: ['self'] });
    const ownsOther = await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'other', ...definition('agent-other', { owner: owner('team', 'agent-owned') }) });
    expect(ownsOther.json).toMatchObject({ code: 'validation_failed', agents: ['owned'] });
    // The other way round: an agent whose identity is already another agent's owner.
    const isAnOwner = await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'owner-as-agent', ...definition('owner-o') });
    expect(isAnOwner.json).toMatchObject({ code: 'validation_failed', agents: ['owned'] });
    const config = () =>
      parseConfig(
        {
          issuers: [{ name: 'test', issuer: 'https://issuer.test' }],
          backends: { local: { type: 'jwt' } },
          roles: [{ name: 'demo', backend: 'local', allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }] }],
          agents: { register: [{ name: 'a', ...definition('agent-a', { owner: owner('team', 'agent-b') }) }, { name: 'b', ...definition('agent-b') }] },
        },
        'test',
      );
    expect(config).toThrow(ConfigError);
    expect(config).toThrow("agents.register[0].owner.principals: an owner could be the identity of agent 'b'");
  });

  it('ends the suspension of a deleted agent: a new agent of that name starts in good standing', async () => {
    await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'gone', ...definition('agent-gone') });
    await t.call('POST', '/v1/agents/gone/suspend', { subject: 'admin' }, { reason: 'r' });
    expect((await t.call('DELETE', '/v1/agents/gone', { subject: 'admin' })).status).toBe(200);
    await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'gone', ...definition('agent-gone') });
    expect((await ask('agent-gone', await open('agent-gone'))).status).toBe(201);
    const review = (await t.call('GET', '/v1/agents/gone', { subject: 'admin' })).json.agent;
    expect(review.suspension).toBeNull();
    expect(review.suspensions[0]).toMatchObject({ resume_reason: 'agent deleted' });
  });

  it('refuses the identities an unreadable stored agent matches, rather than forgetting it', async () => {
    await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'broken', ...definition('agent-broken') });
    const task = await open('agent-broken');
    // As a later, stricter schema would find it: the ceiling no longer parses; the rule still does.
    await database.db.transaction(async (tx) => {
      await tx.update(registryState).set({ generation: sql`${registryState.generation} + 1` }).where(eq(registryState.id, 1));
      await tx.update(agents).set({ definition: { ...definition('agent-broken'), roles: 'demo' } }).where(eq(agents.name, 'broken'));
    });
    await t.broker.registry.reload();
    const refused = await ask('agent-broken', task);
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('policy_error');
  });
});

describe('a suspension waiting for the registry is not starved by issuance commits (postgres)', () => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker('postgres', (d, b) => ((database = d), (t = b)), { config: { agents: AGENTS, roles: HARNESS_ROLES } });

  it('a commit that comes after the waiting suspension waits for it, and then sees its version', async () => {
    const holder = postgres(database.url!, { max: 1, onnotice: () => {} });
    const latecomer = postgres(database.url!, { max: 1, onnotice: () => {} });
    // Each of the two above is busy in its transaction: this one watches.
    const observer = postgres(database.url!, { max: 1, onnotice: () => {} });
    try {
      const before = (await observer<{ generation: string }[]>`select generation::text from registry_state where id = 1`)[0]!.generation;
      // A commit in flight holds the row FOR SHARE.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const first = holder.begin(async (tx) => {
        await tx`select generation from registry_state where id = 1 for share`;
        await held;
      });
      const waiting = async (n: number) =>
        // Lock waits of this database's sessions, of any kind (a row's or the table's).
        (await observer<{ n: number }[]>`select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid where a.datname = current_database() and not l.granted`)[0]!.n >= n;
      await until(10_000, async () => (await observer`select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'registry_state' and l.granted and l.mode = 'RowShareLock'`)[0]!.n >= 1, 20);
      const suspension = t.call('POST', '/v1/agents/owned/suspend', { subject: 'admin' }, { reason: 'under load' });
      expect(await until(10_000, () => waiting(1), 20), 'the suspension waits for the commit in flight').toBe(true);
      // A later commit asks for the row FOR SHARE: it must queue behind the suspension, not join the first.
      const later = latecomer.begin(async (tx) => (await tx<{ generation: string }[]>`select generation::text from registry_state where id = 1 for share`)[0]!.generation);
      expect(await until(10_000, () => waiting(2), 20), 'the later commit queues behind the suspension').toBe(true);
      release();
      await first;
      expect((await suspension).status).toBe(200);
      const seen = await later;
      expect(seen).not.toBe(before);
      const after = (await observer<{ generation: string }[]>`select generation::text from registry_state where id = 1`)[0]!.generation;
      expect(seen).toBe(after);
    } finally {
      await Promise.all([holder, latecomer, observer].map((c) => c.end({ timeout: 1 })));
    }
  });
});

describe.each(DRIVERS)('a suspension of an agent holding many leases, on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), { config: { agents: AGENTS, roles: HARNESS_ROLES } });

  it('revokes every one of them, across batches, and counts them', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-owned' }, roles: ['demo'], ttl_seconds: 600 })).json.task.id as string;
    const now = t.clock.now();
    const end = new Date(now.getTime() + 600_000);
    const rows = Array.from({ length: 1234 }, (_, i) => ({
      id: `01000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      taskId: task,
      role: 'demo',
      backend: 'local',
      issuer: 'test',
      subject: 'agent-owned',
      tokenSha256: 'c'.repeat(64),
      status: 'active' as const,
      credentialRef: `bulk-${i}`,
      issuedAt: now,
      expiresAt: end,
      backendExpiresAt: end,
      agent: i % 3 === 0 ? null : 'owned',
      agentOwner: i % 3 === 0 ? null : 'team-o',
    }));
    for (let i = 0; i < rows.length; i += 200) await database.db.insert(leases).values(rows.slice(i, i + 200));
    const suspended = await t.call('POST', '/v1/agents/owned/suspend', { subject: 'admin' }, { reason: 'bulk' });
    expect(suspended.json.revoking).toBe(1234);
    expect(suspended.json.suspension.revoked).toBe(1234);
    const left = await database.db.select().from(leases).where(sql`${leases.taskId} = ${task} and ${leases.status} = 'active'`);
    expect(left).toHaveLength(0);

    // Suspensions whose calls were cut short (a crash between batches): housekeeping finishes them, once each call had its
    // minute: the agent's leases, those its identity held before registration, and a rule's.
    const rule = await t.call('POST', '/v1/suspensions', { subject: 'admin' }, { match: { issuer: 'test', subject: 'agent-ruled' }, reason: 'rule' });
    expect(rule.status).toBe(201);
    const stragglers = [
      { ...rows[1]!, id: '01000000-0000-7000-8000-999999999991', credentialRef: 'straggler-1' },
      { ...rows[0]!, id: '01000000-0000-7000-8000-999999999992', credentialRef: 'straggler-2', agent: null, agentOwner: null },
      { ...rows[0]!, id: '01000000-0000-7000-8000-999999999993', credentialRef: 'straggler-3', subject: 'agent-ruled', agent: null, agentOwner: null },
    ];
    await database.db.insert(leases).values(stragglers);
    expect(await t.broker.agentService.revokeLeftovers()).toBe(0);
    t.clock.advance(61);
    expect(await t.broker.agentService.revokeLeftovers()).toBe(3);
    for (const straggler of stragglers) {
      expect((await database.db.select().from(leases).where(eq(leases.id, straggler.id)))[0]).toMatchObject({ status: 'revoking', reason: 'agent_suspended' });
    }

    // A suspension lifted while its revocation runs stops it: what the agent holds after the resume is not revoked.
    await t.call('POST', '/v1/agents/owned/resume', { subject: 'admin' }, { reason: 'done' });
    const after = { ...rows[1]!, id: '01000000-0000-7000-8000-999999999994', credentialRef: 'after-resume' };
    await database.db.insert(leases).values(after);
    expect(await revokeHeld(database.db, t.clock, { agent: 'owned' }, suspended.json.suspension.id, { actor: 'test' })).toBe(0);
    expect((await database.db.select().from(leases).where(eq(leases.id, after.id)))[0]!.status).toBe('active');
  });
});
