import { describe, expect, it } from 'vitest';
import { DRIVERS } from '../support/db.js';
import { HARNESS_ROLES, type TestBroker, useTestBroker } from '../support/broker.js';

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
    expect(b.status).toBe(429); // the agent still holds one credential
    t.clock.advance(60);
    await t.broker.sweeper.runOnce(); // now confirmed revoked
    const again = await t.call('POST', '/v1/credentials', { subject: 'agent-held' }, { task, role: 'write-b' });
    expect(again.status).toBe(201);
  });
});
