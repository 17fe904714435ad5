// The SSF transmitter: a CAEP session-revoked SET per receiver when a jwt lease ends, written in the sweeper's
// transaction, pushed (RFC 8935) with backoff per receiver, or handed to polls (RFC 8936) until acknowledged.
import { and, eq, sql } from 'drizzle-orm';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leases, outbox, OUTBOX_KINDS } from '../../src/db/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { listOutbox } from '../../src/notify/outbox.js';
import { SESSION_REVOKED } from '../../src/oauth/ssf/events.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { trackBroker } from '../support/scan.js';
import { startReceiver, type Receiver } from '../notify/receiver.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const POLL_SECRET = 'ssf-poll-secret-for-tests-only-0123';
const PUSH_AUTH = 'Bearer ssf-push-credential-for-tests-only';
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

describe.each(DRIVERS)('SSF transmitter on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  let orders!: Receiver;
  let billing!: Receiver;
  let jwks!: ReturnType<typeof createLocalJWKSet>;

  beforeAll(async () => {
    [orders, billing] = await Promise.all([startReceiver(), startReceiver()]);
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, {
      config: {
        roles: [
          ...HARNESS_ROLES,
          { name: 'orders', backend: 'local', allow: AGENTS, jwt: { audience: 'https://orders.example' } },
          { name: 'billing', backend: 'local', allow: AGENTS, jwt: { audience: 'https://billing.example' } },
          { name: 'quiet', backend: 'local', allow: AGENTS, jwt: { audience: 'https://nobody-listens.example' } },
        ],
        oauth: {
          security_events: { max_attempts: 2, timeout: 1, poll_redelivery: 30 },
          resource_servers: [
            { client_id: 'orders-api', secret_sha256: sha256Hex('orders-secret-0123456789'), audiences: ['https://orders.example'], security_events: { delivery: 'push', endpoint_url: `${orders.url}/ssf`, authorization_header: PUSH_AUTH } },
            { client_id: 'billing-api', secret_sha256: sha256Hex('billing-secret-0123456789'), audiences: ['https://billing.example'], security_events: { delivery: 'push', endpoint_url: `${billing.url}/events` } },
            { client_id: 'reports', secret_sha256: sha256Hex(POLL_SECRET), audiences: ['https://orders.example', 'https://billing.example'], security_events: { delivery: 'poll' } },
          ],
        },
      },
    });
    jwks = createLocalJWKSet((await t.broker.keys.jwks()) as JSONWebKeySet);
    trackBroker(database, new Set([POLL_SECRET, 'ssf-push-credential-for-tests-only']), []);
  });
  afterAll(async () => {
    await database?.drop();
    await Promise.all([orders?.close(), billing?.close()]);
  });

  /** Opens a task for `agent` holding one lease per role given; the leases' ids. */
  async function holding(agent: string, roles: string[]): Promise<{ task: string; ids: string[] }> {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: [...new Set(roles)], ttl_seconds: 3600 })).json.task.id as string;
    const ids: string[] = [];
    for (const role of roles) {
      const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role, ttl_seconds: 600 });
      expect(res.status, res.text).toBe(201);
      ids.push(res.json.lease.id as string);
    }
    return { task, ids };
  }
  const complete = async (task: string) => expect((await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' })).status).toBe(202);
  const eventsFor = (lease: string) => database.db.select().from(outbox).where(and(eq(outbox.kind, OUTBOX_KINDS.securityEvent), sql`${outbox.payload}->>'lease' = ${lease}`));
  const verify = (set: string) => jwtVerify(set, jwks, { issuer: t.config.public_url, typ: 'secevent+jwt' });
  const poll = (body: unknown, auth = basic('reports', POLL_SECRET)) =>
    t.broker.app.request('/ssf/poll', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  /** Acknowledges everything earlier cases left for the poll receiver. */
  async function drainPoll() {
    for (;;) {
      const drained = (await (await poll({ returnImmediately: true, maxEvents: 1000 })).json()) as { sets: Record<string, string> };
      if (Object.keys(drained.sets).length === 0) return;
      await poll({ ack: Object.keys(drained.sets), maxEvents: 0 });
    }
  }

  it('publishes its configuration at /.well-known/ssf-configuration', async () => {
    const res = await t.call('GET', '/.well-known/ssf-configuration', {});
    expect(res.json).toMatchObject({
      spec_version: '1_0',
      issuer: 'https://tasklease.test',
      jwks_uri: 'https://tasklease.test/.well-known/jwks.json',
      delivery_methods_supported: ['urn:ietf:rfc:8935', 'urn:ietf:rfc:8936'],
      poll_endpoint: 'https://tasklease.test/ssf/poll',
    });
  });

  it('pushes one signed session-revoked SET per receiver and lease when the task completes, in the commit that ends the lease', async () => {
    orders.reset();
    const { task, ids } = await holding('agent-s1', ['orders', 'orders', 'billing', 'quiet']);
    await complete(task);
    // Revoking is not the end: nothing is written until the sweeper has ended the leases.
    expect(await eventsFor(ids[0]!)).toHaveLength(0);
    await t.broker.sweeper.runOnce();
    // Each orders lease: one row for orders-api, one for the poll receiver; billing: billing-api and reports; quiet: none.
    expect((await eventsFor(ids[0]!)).map((r) => r.destination).sort()).toEqual(['orders-api', 'reports']);
    expect((await eventsFor(ids[2]!)).map((r) => r.destination).sort()).toEqual(['billing-api', 'reports']);
    expect(await eventsFor(ids[3]!)).toHaveLength(0);

    expect(await t.broker.transmitter.runOnce()).toEqual({ delivered: 3, failed: 0 });
    expect(orders.received).toHaveLength(2);
    const pushed = orders.received[0]!;
    expect(pushed.headers).toMatchObject({ 'content-type': 'application/secevent+jwt', accept: 'application/json', authorization: PUSH_AUTH });
    const { payload, protectedHeader } = await verify(pushed.body);
    expect(protectedHeader.typ).toBe('secevent+jwt');
    const lease = payload.txn as string;
    expect(ids.slice(0, 2)).toContain(lease);
    expect(payload).toMatchObject({
      aud: 'orders-api',
      sub_id: { format: 'jwt_id', iss: 'https://tasklease.test', jti: lease },
      events: { [SESSION_REVOKED]: { initiating_entity: 'policy', reason_admin: { en: 'task_completed' } } },
    });
    // SSF 1.0 section 4.1: no `sub` and no `exp` in a SET.
    expect(payload.sub).toBeUndefined();
    expect(payload.exp).toBeUndefined();
    // The SET's jti is the outbox row: receivers dedupe on it.
    const [row] = (await eventsFor(lease)).filter((r) => r.destination === 'orders-api');
    expect(row).toMatchObject({ id: payload.jti, status: 'delivered', attempts: 1 });
    const metrics = await t.broker.metrics.registry.metrics();
    expect(metrics).toMatch(/tasklease_security_events_delivered_total\{receiver="orders-api"\} 2/);
  });

  it('tells of an expiry and an admin revocation, and says who caused the end', async () => {
    const { ids } = await holding('agent-s2', ['orders', 'orders']);
    expect((await t.call('POST', `/v1/leases/${ids[0]}/revoke`, { subject: 'admin' }, { reason: 'test' })).status).toBeLessThan(300);
    t.clock.advance(601_000);
    await t.broker.sweeper.runOnce();
    const reasons = async (id: string) => {
      const [row] = (await eventsFor(id)).filter((r) => r.destination === 'orders-api');
      return (row!.payload as any).set.events[SESSION_REVOKED];
    };
    expect(await reasons(ids[0]!)).toMatchObject({ initiating_entity: 'admin', reason_admin: { en: 'admin' } });
    expect(await reasons(ids[1]!)).toMatchObject({ initiating_entity: 'system', reason_admin: { en: 'expired' } });
    await t.broker.transmitter.runOnce();
  });

  it('backs off a receiver that fails, one request per backoff, without holding up the others; then delivers', async () => {
    orders.reset();
    billing.reset();
    orders.answer({ status: 503 });
    const { task } = await holding('agent-s3', ['orders', 'orders', 'orders', 'billing']);
    await complete(task);
    await t.broker.sweeper.runOnce();
    // One attempt at orders-api (it failed; its other rows wait), billing-api delivered.
    expect(await t.broker.transmitter.runOnce()).toEqual({ delivered: 1, failed: 1 });
    expect(orders.received).toHaveLength(1);
    expect(billing.received).toHaveLength(1);
    expect(await t.broker.transmitter.runOnce()).toEqual({ delivered: 0, failed: 0 });
    const metrics = await t.broker.metrics.registry.metrics();
    expect(metrics).toMatch(/tasklease_security_event_failures_total\{receiver="orders-api"\} 1/);
    expect(metrics).toMatch(/tasklease_security_events_undelivered\{receiver="orders-api",status="pending"\} 3/);
    // Past the receiver's backoff and the row's: all three go.
    t.clock.advance(120_000);
    expect(await t.broker.transmitter.runOnce()).toEqual({ delivered: 3, failed: 0 });
    const log = t.logs.lines.join('\n');
    expect(log).toContain('security event not delivered; will retry');
    expect(log).not.toContain(orders.url);
  });

  it('hands SETs to a poll until they are acknowledged, again after poll_redelivery if not, and records what the receiver could not process', async () => {
    await drainPoll();
    const { task, ids } = await holding('agent-s4', ['orders', 'billing', 'orders']);
    await complete(task);
    await t.broker.sweeper.runOnce();
    const first = (await (await poll({ returnImmediately: true, maxEvents: 2 })).json()) as { sets: Record<string, string>; moreAvailable: boolean };
    expect(Object.keys(first.sets)).toHaveLength(2);
    expect(first.moreAvailable).toBe(true);
    for (const [jti, set] of Object.entries(first.sets)) {
      const { payload } = await verify(set);
      expect(payload).toMatchObject({ jti, aud: 'reports' });
      expect(ids).toContain((payload.sub_id as { jti: string }).jti);
    }
    // Not acknowledged yet: the next poll gets only the third.
    const [a, b] = Object.keys(first.sets);
    const second = (await (await poll({ returnImmediately: true })).json()) as { sets: Record<string, string>; moreAvailable: boolean };
    expect(Object.keys(second.sets)).toHaveLength(1);
    const [c] = Object.keys(second.sets);
    // Acknowledge one, report an error for another (in a poll that takes nothing more), leave the third.
    expect((await (await poll({ ack: [a], setErrs: { [c!]: { err: 'invalid_key', description: 'ignore <this>' } }, maxEvents: 0 })).json())).toEqual({ sets: {}, moreAvailable: false });
    const byId = async (id: string) => (await database.db.select().from(outbox).where(eq(outbox.id, id)))[0]!;
    expect(await byId(a!)).toMatchObject({ status: 'delivered' });
    expect(await byId(c!)).toMatchObject({ status: 'delivered', lastError: 'the receiver could not process it: invalid_key' });
    // After poll_redelivery the unacknowledged one comes back, with the same jti.
    t.clock.advance(31_000);
    const again = (await (await poll({ returnImmediately: true })).json()) as { sets: Record<string, string> };
    expect(Object.keys(again.sets)).toEqual([b]);
    await poll({ ack: [b], maxEvents: 0 });
  });

  it('a poll that finds nothing waits, and answers as soon as an event is written', async () => {
    await drainPoll();
    const { task } = await holding('agent-s5', ['billing']);
    const started = Date.now();
    const waiting = poll({ maxEvents: 10 });
    await new Promise((r) => setTimeout(r, 200));
    await complete(task);
    await t.broker.sweeper.runOnce();
    const answer = (await (await waiting).json()) as { sets: Record<string, string> };
    expect(Object.keys(answer.sets)).toHaveLength(1);
    // Woken by the event, not by the 10 s limit (a bound for the test's sake, not a timing claim).
    expect(Date.now() - started).toBeLessThan(9000);
    await poll({ ack: Object.keys(answer.sets), maxEvents: 0 });
  });

  it('refuses a poll without the right credentials, from a push receiver, or with a malformed body', async () => {
    const refused = async (res: Response) => ({ status: res.status, body: await res.json() });
    expect(await refused(await poll({}, basic('reports', 'wrong')))).toMatchObject({ status: 401, body: { err: 'authentication_failed' } });
    expect(await refused(await poll({}, 'Bearer whatever'))).toMatchObject({ status: 401, body: { err: 'authentication_failed' } });
    expect(await refused(await poll({}, basic('orders-api', 'orders-secret-0123456789')))).toMatchObject({ status: 403, body: { err: 'access_denied' } });
    expect(await refused(await poll({ maxEvents: -1 }))).toMatchObject({ status: 400, body: { err: 'invalid_request' } });
    expect(await refused(await poll({ ack: 'not-a-list' }))).toMatchObject({ status: 400, body: { err: 'invalid_request' } });
    const notJson = await t.broker.app.request('/ssf/poll', { method: 'POST', headers: { authorization: basic('reports', POLL_SECRET), 'content-type': 'application/json' }, body: '{' });
    expect(await refused(notJson)).toMatchObject({ status: 400, body: { err: 'invalid_request' } });
    // Unknown and malformed ids in an ack are ignored.
    expect((await poll({ ack: ['nope', '00000000-0000-7000-8000-000000000000'], returnImmediately: true })).status).toBe(200);
  });

  it('deletes delivered events after keep_delivered, never undelivered ones', async () => {
    const delivered = async () => (await database.db.select({ n: sql<number>`count(*)::int` }).from(outbox).where(and(eq(outbox.kind, OUTBOX_KINDS.securityEvent), eq(outbox.status, 'delivered'))))[0]!.n;
    expect(await delivered()).toBeGreaterThan(0);
    t.clock.advance(86_401_000);
    await t.broker.sweeper.runOnce();
    expect(await delivered()).toBe(0);
  });

  it('never follows a redirect: a SET goes to its receiver only', async () => {
    t.broker.transmitter.retryNow();
    await t.broker.transmitter.runOnce();
    billing.reset();
    billing.answer({ status: 307, location: `${orders.url}/elsewhere` });
    orders.reset();
    const { task, ids } = await holding('agent-s7', ['billing']);
    await complete(task);
    await t.broker.sweeper.runOnce();
    expect(await t.broker.transmitter.runOnce()).toEqual({ delivered: 0, failed: 1 });
    const [row] = (await eventsFor(ids[0]!)).filter((r) => r.destination === 'billing-api');
    expect(row).toMatchObject({ status: 'pending', lastError: 'answered 307 (redirects are not followed)' });
    expect(orders.received).toHaveLength(0);
  });

  it('shows a failing push in the console outbox by receiver name, about the lease, never the URL', async () => {
    // Whatever earlier cases left (the day that passed above ended their leases' tokens too) goes first.
    t.broker.transmitter.retryNow();
    await t.broker.transmitter.runOnce();
    orders.reset();
    orders.answer({ status: 500 });
    const { task, ids } = await holding('agent-s6', ['orders']);
    await complete(task);
    await t.broker.sweeper.runOnce();
    await t.broker.transmitter.runOnce();
    const [row] = (await eventsFor(ids[0]!)).filter((r) => r.destination === 'orders-api');
    expect(row).toMatchObject({ status: 'pending', attempts: 1, lastError: 'answered 500' });
    const entries = await listOutbox(database.db, 50);
    expect(entries.failing.find((e) => e.id === row!.id)).toMatchObject({ kind: 'security_event', destination: 'orders-api', leaseId: ids[0], role: 'orders' });
  });
});

describe('SSF transmitter: the event and the end of the lease are one commit', () => {
  let database!: TestDatabase;
  let t!: TestBroker;
  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, {
      config: {
        roles: [...HARNESS_ROLES, { name: 'orders', backend: 'local', allow: AGENTS, jwt: { audience: 'https://orders.example' } }],
        oauth: { resource_servers: [{ client_id: 'reports', secret_sha256: sha256Hex(POLL_SECRET), audiences: ['https://orders.example'], security_events: { delivery: 'poll' } }] },
      },
    });
  });
  afterAll(() => database?.drop());

  it('when the event cannot be written the lease does not end; once it can, both land', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-c1' }, roles: ['orders'], ttl_seconds: 3600 })).json.task.id as string;
    const lease = (await t.call('POST', '/v1/credentials', { subject: 'agent-c1' }, { task, role: 'orders' })).json.lease.id as string;
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await database.db.execute(sql`create function refuse_outbox() returns trigger language plpgsql as $$ begin raise exception 'outbox unavailable'; end $$`);
    await database.db.execute(sql`create trigger refuse_outbox before insert on outbox for each row execute function refuse_outbox()`);
    await t.broker.sweeper.runOnce().catch(() => {});
    const status = async () => (await database.db.select({ status: leases.status }).from(leases).where(eq(leases.id, lease)))[0]!.status;
    expect(await status()).toBe('revoking');
    await database.db.execute(sql`drop trigger refuse_outbox on outbox`);
    t.clock.advance(60_000);
    await t.broker.sweeper.runOnce();
    expect(await status()).toBe('revoked');
    const rows = await database.db.select().from(outbox).where(sql`${outbox.payload}->>'lease' = ${lease}`);
    expect(rows).toHaveLength(1);
  });
});
