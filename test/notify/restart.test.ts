import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestIssuer } from '../support/issuer.js';
import { http, killBroker, startBroker, until, useChildBrokers } from '../support/child-broker.js';
import { startReceiver, verifyDelivery, type Receiver } from './receiver.js';

const SECRET = 'whsec-restart-test-0123456789abcdef';
const AUDIENCE = 'https://tasklease.restart.test';

/**
 * DESIGN.md promise 9: a notification written with its approval request
 * survives the broker that wrote it. Broker A takes the request while the
 * receiver is down, tries once, and is killed; broker B, started later on the
 * same database, delivers it.
 */
describe('approval notifications across a broker restart (postgres)', () => {
  const shared = useChildBrokers('notify');
  let receiver: Receiver | undefined;
  afterAll(() => receiver?.close());

  it('delivers a notification written by a broker killed before it could deliver', async () => {
    const issuer = await createTestIssuer('test', 'https://issuer.restart.invalid', AUDIENCE);
    // The receiver's port, free again: nothing listens there until broker A is gone.
    const probe = await startReceiver();
    const port = probe.port;
    await probe.close();

    const configFile = join(shared.env.TASKLEASE_DATA_DIR!, 'tasklease.yaml');
    writeFileSync(
      configFile,
      JSON.stringify({
        public_url: AUDIENCE,
        issuers: [issuer.config],
        principals: { orchestrators: [{ issuer: 'test', subject: 'orchestrator' }], admins: [] },
        backends: { local: { type: 'jwt' } },
        roles: [{ name: 'gated', backend: 'local', allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }], requires_approval: true }],
        notifications: {
          interval: 1,
          timeout: 2,
          webhooks: [{ name: 'hooks', url: `http://127.0.0.1:${port}/hook`, secret: '${TL_TEST_WEBHOOK_SECRET}' }],
        },
      }),
    );
    const env = { ...shared.env, TASKLEASE_CONFIG: configFile, TL_TEST_WEBHOOK_SECRET: SECRET };

    const a = await startBroker(env);
    const orchestrator = await issuer.sign('orchestrator');
    const agent = await issuer.sign('agent-1');
    const task = await http('POST', `${a.url}/v1/tasks`, { token: orchestrator, body: { agent: { subject: 'agent-1' }, roles: ['gated'], ttl_seconds: 3600 } });
    expect(task.status).toBe(201);
    const requested = await http('POST', `${a.url}/v1/credentials`, { token: agent, body: { task: task.json.task.id, role: 'gated' } });
    expect(requested.status).toBe(202);
    const id = requested.json.approval.id as string;

    // A tried (nothing listens) and recorded the failure; then it dies.
    const row = () => shared.pg.sql<{ status: string; attempts: number; last_error: string | null }[]>`select status, attempts, last_error from outbox where payload->'approval'->>'id' = ${id}`;
    expect(await until(10_000, async () => ((await row())[0]?.attempts ?? 0) >= 1)).toBe(true);
    await killBroker(a);
    expect((await row())[0]).toMatchObject({ status: 'pending', last_error: 'could not connect (ECONNREFUSED)' });

    receiver = await startReceiver(port);
    const b = await startBroker(env);
    expect(await until(15_000, async () => receiver!.received.length > 0)).toBe(true);
    const [delivery] = receiver.received;
    expect(verifyDelivery(delivery!.headers, delivery!.body, SECRET, Math.floor(Date.now() / 1000))).toEqual({ ok: true });
    expect(JSON.parse(delivery!.body).approval.id).toBe(id);
    expect(await until(5_000, async () => (await row())[0]?.status === 'delivered')).toBe(true);

    for (const output of [a.stdout(), a.stderr(), b.stdout(), b.stderr()]) expect(output).not.toContain(SECRET);
    await killBroker(b);
  });
});
