import { describe, expect, it } from 'vitest';
import { type TestBroker, useTestBroker } from '../support/broker.js';
import { createTestIssuer, type TestIssuer } from '../support/issuer.js';

const other: TestIssuer = await createTestIssuer('other', 'https://other-issuer.test.invalid', 'https://tasklease.test');

describe('binding a task to one issuer when several are trusted', () => {
  let t!: TestBroker;
  useTestBroker('postgres', (_d, b) => (t = b), {
    config: {
      issuers: [
        { name: 'other', issuer: other.url, jwks: other.config.jwks, audiences: [other.audience], algorithms: ['ES256'] },
      ],
    },
  });

  it('requires agent.issuer, and an agent from another issuer with the same subject is refused', async () => {
    const open = (agent: Record<string, string>) =>
      t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent, roles: ['demo'], ttl_seconds: 600 });
    const missing = await open({ subject: 'agent-1' });
    expect(missing.status).toBe(400);
    expect(missing.json.detail).toContain('agent.issuer is required');
    expect((await open({ subject: 'agent-1', issuer: 'nope' })).status).toBe(400);

    const bound = await open({ subject: 'agent-1', issuer: 'test' });
    expect(bound.status).toBe(201);
    const impostor = await other.sign('agent-1');
    const res = await t.call('POST', '/v1/credentials', { bearer: impostor }, { task: bound.json.task.id, role: 'demo' });
    expect(res.status).toBe(404);
    const real = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: bound.json.task.id, role: 'demo' });
    expect(real.status).toBe(201);
  });
});
