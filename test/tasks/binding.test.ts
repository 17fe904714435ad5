import { count } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { tasks } from '../../src/db/schema.js';
import { freshId, type TestBroker, useTestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
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

describe.each(DRIVERS)('binding a task only to a subject a token could carry, on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  const open = (subject: string) => t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles: ['demo'], ttl_seconds: 600 });

  it.each([
    ['a lone high surrogate (stored as U+FFFD by both drivers)', 'agent-\ud800'],
    ['a lone low surrogate', 'agent-\udfff'],
    ['a zero-width space', 'agent-1\u200b'],
    ['a zero-width joiner', 'agent-\u200d1'],
    ['a bidi override', 'agent-\u202e1'],
    ['bidi isolates', '\u2066agent-1\u2069'],
    ['a byte-order mark', '\ufeffagent-1'],
    ['a line separator', 'agent-1\u2028'],
    ['more than the 1024 characters a token sub may have', `agent-${'a'.repeat(1019)}`],
  ])('refuses a subject with %s: 400 problem+json, no task', async (_what, subject) => {
    const [before] = await database.db.select({ n: count() }).from(tasks);
    const res = await open(subject);
    expect(res.status, res.text).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.json.code).toBe('validation_failed');
    expect(res.json.errors[0].path).toBe('agent.subject');
    const [after] = await database.db.select({ n: count() }).from(tasks);
    expect(after!.n).toBe(before!.n);
  });

  it("lets an admin find, audit and revoke by any subject a token may carry, up to 1024 characters", async () => {
    const subject = `agent-${'l'.repeat(1000)}`;
    const opened = await open(subject);
    expect(opened.status, opened.text).toBe(201);
    const issued = await t.call('POST', '/v1/credentials', { subject }, { task: opened.json.task.id, role: 'demo' });
    expect(issued.status, issued.text).toBe(201);
    const listed = await t.call('GET', `/v1/leases?subject=${encodeURIComponent(subject)}`, { subject: 'admin' });
    expect(listed.status, listed.text).toBe(200);
    expect(listed.json.items.map((l: { id: string }) => l.id)).toEqual([issued.json.lease.id]);
    const audit = await t.call('GET', `/v1/audit?actor=${encodeURIComponent(`test/${subject}`)}`, { subject: 'admin' });
    expect(audit.status, audit.text).toBe(200);
    expect(audit.json.items.map((e: { action: string }) => e.action)).toContain('credential.issued');
    const revoked = await t.call('POST', '/v1/revocations', { subject: 'admin' }, { subject, reason: 'incident' });
    expect(revoked.status, revoked.text).toBe(202);
    expect(revoked.json.revoking).toBe(1);
  });

  it('accepts U+FFFD itself and any subject up to the verifier\'s 1024 characters', async () => {
    expect((await open('agent-\ufffd')).status).toBe(201);
    expect((await open(`agent-${'a'.repeat(1018)}`)).status).toBe(201);
  });
});
