import { describe, expect, it } from 'vitest';
import { dumpTables, expectNoSecrets } from './support/secrets.js';
import { DRIVERS, type TestDatabase } from './support/db.js';
import { type TestBroker, useTestBroker } from './support/broker.js';

describe.each(DRIVERS)('no secret at rest on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  it('keeps issued tokens, fake secrets, identity tokens and keys out of tables, logs and audit events', async () => {
    const secrets: string[] = [];
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo', 'flaky'], ttl_seconds: 600 })).json.task.id;
    for (const role of ['demo', 'flaky', 'demo']) {
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role });
      expect(res.status).toBe(201);
      const c = res.json.credentials;
      secrets.push(c.token ?? c.secret);
      const introspected = await t.call('POST', '/v1/introspect', { subject: 'agent-1' }, `token=${c.token ?? 'x'}`, 'application/x-www-form-urlencoded');
      expect(introspected.status).toBe(200);
    }
    // Failures and denials must not leak the identity token either.
    await t.call('POST', '/v1/credentials', { subject: 'agent-2' }, { task, role: 'demo' });
    t.fake.failNextRevokes(1);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
    await t.broker.sweeper.runOnce();
    t.clock.advance(60);
    await t.broker.sweeper.runOnce();

    secrets.push(...t.fake.secrets());
    for (const subject of ['agent-1', 'agent-2', 'orchestrator', 'admin']) secrets.push(await t.tokenFor(subject));
    // The signing keys' private parts (JWK `d`) must stay in their 0600 files.
    const { readdirSync, readFileSync } = await import('node:fs');
    const keyDir = `${t.config.data_dir}/keys`;
    for (const file of readdirSync(keyDir)) secrets.push((JSON.parse(readFileSync(`${keyDir}/${file}`, 'utf8')) as { d: string }).d);
    expect(secrets.length).toBeGreaterThanOrEqual(9);

    const places = [...(await dumpTables(database)), ...t.logs.lines];
    const audit = await t.call('GET', '/v1/audit?limit=500', { subject: 'admin' });
    places.push(audit.text);
    const jwks = await t.call('GET', '/.well-known/jwks.json', {});
    places.push(jwks.text);
    expect(places.length).toBeGreaterThan(10);
    expectNoSecrets(secrets, places);
  });
});
