import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/ids.js';
import { ADMIN_STATIC_TOKEN, type TestBroker, useTestBroker } from '../support/broker.js';

describe('orchestrator scopes by task labels', () => {
  let t!: TestBroker;
  useTestBroker('postgres', (_d, b) => (t = b), {
    config: {
      principals: {
        orchestrators: [
          { issuer: 'test', subject: 'orchestrator' },
          { issuer: 'test', subject: 'orch-payments', scope: { labels: { team: 'payments' } } },
        ],
        admins: [{ issuer: 'test', subject: 'admin' }, { name: 'ops', token_sha256: sha256Hex(ADMIN_STATIC_TOKEN) }],
      },
    },
  });

  const open = async (labels: Record<string, string>) => {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600, labels });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  };

  it('lets a scoped orchestrator read and complete tasks whose labels contain its scope, and no others', async () => {
    const payments = await open({ team: 'payments', environment: 'staging' });
    const search = await open({ team: 'search' });
    expect((await t.call('GET', `/v1/tasks/${payments}`, { subject: 'orch-payments' })).status).toBe(200);
    expect((await t.call('GET', `/v1/tasks/${search}`, { subject: 'orch-payments' })).status).toBe(404);
    expect((await t.call('POST', `/v1/tasks/${search}/complete`, { subject: 'orch-payments' }, { outcome: 'x' })).status).toBe(404);
    const done = await t.call('POST', `/v1/tasks/${payments}/complete`, { subject: 'orch-payments' }, { outcome: 'done' });
    expect(done.status).toBe(202);
    expect(done.json.task.status).toBe('completed');
  });

  it('returns labels and the lease budget on the task', async () => {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600, labels: { environment: 'production' }, max_leases: 3 });
    expect(res.json.task).toMatchObject({ labels: { environment: 'production' }, max_leases: 3 });
    const bad = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600, labels: { 'bad key!': 'x' } });
    expect(bad.status).toBe(400);
  });
});
