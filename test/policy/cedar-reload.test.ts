// Reloading the operator's Cedar files: SIGHUP's and a changed file's path (policy/cedar/reload.ts), and what a
// broker shows meanwhile: the set in force on /readyz and /v1/readiness, degraded while a reload is refused.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { createPolicyReloader } from '../../src/policy/cedar/reload.js';
import { ADMIN_STATIC_TOKEN, startTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';

const FORBID_DEMO = '@id("no-demo")\nforbid (principal, action == Tasklease::Action::"RequestCredential", resource == Tasklease::Role::"demo");\n';
const FORBID_NOTHING = '@id("no-demo")\nforbid (principal, action == Tasklease::Action::"RequestCredential", resource == Tasklease::Role::"demo") when { context.hour == 99 };\n';
const INVALID = '@id("no-demo")\nforbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { principal.nope };\n';

describe('reloading the policies of a running broker', () => {
  let database!: TestDatabase;
  let t!: TestBroker;
  let file = '';
  beforeAll(async () => {
    file = join(mkdtempSync(join(tmpdir(), 'cedar-reload-')), 'ops.cedar');
    writeFileSync(file, FORBID_NOTHING);
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, { config: { policy: { cedar: { files: [file] } } } as never });
  }, 60_000);
  afterAll(() => database?.drop());

  const dryRun = async () => {
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 });
    return (await t.call('POST', '/v1/policy/evaluate', { bearer: ADMIN_STATIC_TOKEN }, { identity: { issuer: 'test', subject: 'agent-1' }, task: task.json.task.id, role: 'demo' })).json;
  };

  it('decides by the new set once reloaded, and every surface shows its hash', async () => {
    const before = (await t.call('GET', '/readyz', {})).json.policy_set as string;
    expect(await dryRun()).toMatchObject({ decision: 'allow', policy_set: before });
    writeFileSync(file, FORBID_DEMO);
    expect(t.broker.policyReloader.reload('SIGHUP')).toBe(true);
    const after = (await t.call('GET', '/readyz', {})).json;
    expect(after.status).toBe('ready');
    expect(after.policy_set).not.toBe(before);
    expect(await dryRun()).toMatchObject({ decision: 'deny', policies: ['no-demo'], policy_set: after.policy_set });
  });

  it('keeps the set in force when the new one does not load: degraded, logged and counted, until a reload succeeds', async () => {
    const inForce = (await t.call('GET', '/readyz', {})).json.policy_set as string;
    writeFileSync(file, INVALID);
    expect(t.broker.policyReloader.reload('SIGHUP')).toBe(false);
    const ready = await t.call('GET', '/readyz', {});
    expect({ status: ready.status, json: ready.json }).toEqual({ status: 200, json: { status: 'degraded', policy_set: inForce } });
    const detail = await t.call('GET', '/v1/readiness', { bearer: ADMIN_STATIC_TOKEN });
    expect(detail.json.status).toBe('degraded');
    expect(detail.json.checks.policy.reloadError).toMatch(/ops\.cedar:2: .*nope/);
    expect(await dryRun()).toMatchObject({ decision: 'deny', policies: ['no-demo'] });
    expect(await t.broker.metrics.registry.getSingleMetricAsString('tasklease_policy_reload_failures_total')).toMatch(/ 1$/m);
    expect(t.logs.lines.some((l) => l.includes('the policies did not reload'))).toBe(true);
    writeFileSync(file, FORBID_NOTHING);
    expect(t.broker.policyReloader.reload('SIGHUP')).toBe(true);
    expect((await t.call('GET', '/readyz', {})).json.status).toBe('ready');
    expect(await dryRun()).toMatchObject({ decision: 'allow' });
  });

  it('reloads when a file changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cedar-watch-'));
    const watched = join(dir, 'w.cedar');
    writeFileSync(watched, FORBID_NOTHING);
    const { createPolicy } = await import('../../src/policy/decide.js');
    const { readPolicyFiles } = await import('../../src/policy/cedar/files.js');
    const policy = createPolicy(t.config.roles, undefined, { requireRegistration: false, cedar: readPolicyFiles([watched], '/') });
    const reloader = createPolicyReloader({ policy, files: [watched], log: createLogger('silent') });
    const stop = reloader.watch(20);
    const before = policy.cedar.hash;
    await new Promise((r) => setTimeout(r, 50));
    writeFileSync(watched, FORBID_DEMO);
    for (let i = 0; i < 100 && policy.cedar.hash === before; i++) await new Promise((r) => setTimeout(r, 20));
    stop();
    expect(policy.cedar.hash).not.toBe(before);
    expect(policy.cedar.ids).toContain('no-demo');
  });
});
