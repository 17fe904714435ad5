import { createLocalJWKSet, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema.js';
import { newId } from '../../src/ids.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { freshId, HARNESS_ROLES, type TestBroker, useTestBroker } from '../support/broker.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

describe.each(DRIVERS)('a released credential still counts until its revocation is confirmed, on %s', (driver) => {
  let t!: TestBroker;
  useTestBroker(driver, (_d, b) => (t = b), {
    config: {
      roles: [...HARNESS_ROLES, { name: 'read-a', backend: 'fake', allow: AGENTS }, { name: 'write-b', backend: 'fake', allow: AGENTS }],
      policy: { quotas: { max_active_per_agent: 1 }, conflicts: [{ name: 'ab', roles: ['read-a', 'write-b'], scope: 'task' }] },
    },
  });

  it('refuses the conflicting role and the over-quota request while the release is not confirmed, and allows them after', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-held' }, roles: ['read-a', 'write-b'], ttl_seconds: 600 })).json.task.id;
    const a = await t.call('POST', '/v1/credentials', { subject: 'agent-held' }, { task, role: 'read-a' });
    expect(a.status).toBe(201);
    t.fake.failNextRevokes(1);
    await t.call('DELETE', `/v1/leases/${a.json.lease.id}`, { subject: 'agent-held' });
    await t.broker.sweeper.runOnce(); // the backend fails: the credential may still work
    const b = await t.call('POST', '/v1/credentials', { subject: 'agent-held' }, { task, role: 'write-b' });
    // The agent still holds read-a: a conflict, and over its quota. The conflict is said first (retrying would not help).
    expect(b.json).toMatchObject({ code: 'role_conflict', conflict: 'ab', conflicts_with: a.json.lease.id });
    t.clock.advance(60);
    await t.broker.sweeper.runOnce(); // now confirmed revoked
    const again = await t.call('POST', '/v1/credentials', { subject: 'agent-held' }, { task, role: 'write-b' });
    expect(again.status).toBe(201);
  });
});

describe.each(DRIVERS)('a released jwt credential still counts until its exp, unless its relying parties introspect, on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  const jwtRole = (name: string, extra: Record<string, unknown> = {}) => ({ name, backend: 'local', ttl: '10m', max_ttl: '1h', allow: AGENTS, ...extra });
  const introspected = { jwt: { audience: 'api', relying_parties_introspect: true } };
  useTestBroker(driver, (d, b) => ((database = d), (t = b)), {
    config: {
      roles: [
        ...HARNESS_ROLES,
        jwtRole('read'),
        jwtRole('write'),
        jwtRole('read-i', introspected),
        jwtRole('write-i', introspected),
        jwtRole('scarce', { max_active: 1 }),
      ],
      policy: {
        conflicts: [
          { name: 'rw', roles: ['read', 'write'], scope: 'task' },
          { name: 'rw-introspected', roles: ['read-i', 'write-i'], scope: 'task' },
        ],
      },
    },
  });

  async function openTask(agent: string) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['read', 'write', 'read-i', 'write-i', 'scarce'], ttl_seconds: 3600 });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    return res.json.task.id as string;
  }
  async function getAndRelease(agent: string, task: string, role: string, ttlSeconds: number) {
    const got = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role, ttl_seconds: ttlSeconds });
    expect(got.status, JSON.stringify(got.json)).toBe(201);
    expect((await t.call('DELETE', `/v1/leases/${got.json.lease.id}`, { subject: agent })).status).toBe(202);
    await t.broker.sweeper.runOnce();
    const view = await t.call('GET', `/v1/leases/${got.json.lease.id}`, { subject: agent });
    expect(view.json.lease.status).toBe('revoked');
    return { lease: got.json.lease as { id: string; revocable: boolean }, token: got.json.credentials.token as string };
  }

  it('refuses the conflicting role while the released token still verifies against the JWKS, and allows it after exp', async () => {
    const task = await openTask('agent-jwt-1');
    const { lease, token } = await getAndRelease('agent-jwt-1', task, 'read', 120);

    // A relying party that checks only the signature still accepts the released token...
    const jwks = createLocalJWKSet((await t.call('GET', '/.well-known/jwks.json', {})).json);
    await expect(jwtVerify(token, jwks, { issuer: 'https://tasklease.test', currentDate: t.clock.now() })).resolves.toBeDefined();
    // ...although introspection says inactive.
    const introspection = await t.call('POST', '/v1/introspect', { subject: 'agent-jwt-1' }, `token=${token}`, 'application/x-www-form-urlencoded');
    expect(introspection.json.active).toBe(false);

    const refused = await t.call('POST', '/v1/credentials', { subject: 'agent-jwt-1' }, { task, role: 'write' });
    expect(refused.status, JSON.stringify(refused.json)).toBe(403);
    expect(refused.json).toMatchObject({ code: 'role_conflict', conflicts_with: lease.id, conflict: 'rw' });
    expect(lease.revocable).toBe(false); // said plainly on the lease

    t.clock.advance(121); // past the released token's exp: it works nowhere now
    const allowed = await t.call('POST', '/v1/credentials', { subject: 'agent-jwt-1' }, { task, role: 'write' });
    expect(allowed.status, JSON.stringify(allowed.json)).toBe(201);
  });

  it("counts a released token against a role's max_active until its exp", async () => {
    const [a, b] = [await openTask('agent-jwt-2'), await openTask('agent-jwt-3')];
    await getAndRelease('agent-jwt-2', a, 'scarce', 60);
    const refused = await t.call('POST', '/v1/credentials', { subject: 'agent-jwt-3' }, { task: b, role: 'scarce' });
    expect(refused.status).toBe(429);
    expect(refused.json.code).toBe('quota_exceeded');
    t.clock.advance(61);
    expect((await t.call('POST', '/v1/credentials', { subject: 'agent-jwt-3' }, { task: b, role: 'scarce' })).status).toBe(201);
  });

  it('frees the slot at release when the role declares that its relying parties introspect', async () => {
    const task = await openTask('agent-jwt-4');
    const { lease } = await getAndRelease('agent-jwt-4', task, 'read-i', 120);
    expect(lease.revocable).toBe(true);
    const allowed = await t.call('POST', '/v1/credentials', { subject: 'agent-jwt-4' }, { task, role: 'write-i' });
    expect(allowed.status, JSON.stringify(allowed.json)).toBe(201);
  });

  it('does not count an unrevocable credential refused at commit, which never reached anyone', async () => {
    const task = await openTask('agent-jwt-5');
    const now = t.clock.now();
    // What the lease writer records when a concurrent request took the slot first (see leases/writer.ts).
    await database.db.insert(leases).values({
      id: newId(t.clock),
      taskId: task,
      role: 'read',
      backend: 'local',
      issuer: 'test',
      subject: 'agent-jwt-5',
      tokenSha256: 'a'.repeat(64),
      status: 'revoking',
      reason: 'role_conflict',
      credentialRef: 'never-released',
      issuedAt: now,
      expiresAt: new Date(now.getTime() + 600_000),
      backendExpiresAt: new Date(now.getTime() + 600_000),
      revocable: false,
      revokeRequestedAt: now,
      nextAttemptAt: now,
    });
    const allowed = await t.call('POST', '/v1/credentials', { subject: 'agent-jwt-5' }, { task, role: 'write' });
    expect(allowed.status, JSON.stringify(allowed.json)).toBe(201);
  });
});
