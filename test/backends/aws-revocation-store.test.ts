/**
 * The AWS revocation store's invariants, on both drivers: adoption records
 * every lease of the role that ended while its session still works at AWS
 * (and nothing else), idempotently, deciding `untagged` from
 * aws_tagged_since as `add` does; and, through the broker and the AWS fake,
 * a revoked session's row is committed before the policy write that carries
 * it, so a failed write loses nothing: the next write, by any replica,
 * renders it.
 */
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsRevocationStore, type AwsRevocationStore } from '../../src/backends/aws-revocation-store.js';
import { createAwsStsBackend } from '../../src/backends/aws-sts.js';
import { createManualClock } from '../../src/clock.js';
import type { RoleConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { awsRevocations, leases, tasks, type LeaseStatus } from '../../src/db/schema.js';
import { newId } from '../../src/ids.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

const ARN = 'arn:aws:iam::123456789012:role/tasklease-store';
const OTHER_ARN = 'arn:aws:iam::123456789012:role/tasklease-store-other';
const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

describe.each(DRIVERS)('the AWS revocation store on %s', (driver) => {
  let database: TestDatabase;
  let aws: AwsFake;
  let t: TestBroker;
  const clock = createManualClock(new Date('2030-01-01T12:00:00Z'));
  const config = (url: string) => ({
    backends: { aws: { type: 'aws-sts' as const, region: 'us-east-1', sts_endpoint: url, iam_endpoint: url, revocation: {} } },
    roles: [...HARNESS_ROLES, { name: 'store', backend: 'aws', ttl: '15m', allow: AGENTS, aws: { role_arn: ARN } }],
  });

  beforeAll(async () => {
    aws = await startAwsFake({ roles: [{ arn: ARN }, { arn: OTHER_ARN }], clock });
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, { clock, awsCredentials: aws.credentials, config: config(aws.url) });
  });
  afterAll(async () => {
    await database?.drop();
    await aws?.close();
  });

  const at = (seconds: number) => new Date(clock.now().getTime() + seconds * 1000);
  async function lease(task: string, fields: { status: LeaseStatus; role?: string; issuedAgo?: number; liveFor?: number; revocable?: boolean }) {
    const id = newId(clock);
    await database.db.insert(leases).values({
      id,
      taskId: task,
      role: fields.role ?? 'adopt',
      backend: 'aws',
      issuer: 'test',
      subject: 'agent-old',
      tokenSha256: 'a'.repeat(64),
      status: fields.status,
      credentialRef: `ASIA${id.slice(0, 8)}`,
      issuedAt: at(-(fields.issuedAgo ?? 60)),
      expiresAt: at(-1),
      backendExpiresAt: at(fields.liveFor ?? 600),
      revocable: fields.revocable ?? true,
      endedAt: fields.status === 'revoked' || fields.status === 'expired' ? at(-1) : null,
    });
    return `tl-${id}`;
  }

  it('adopts every ended lease of the role whose session still lives, whatever ended it, and nothing else; twice changes nothing', async () => {
    const store = createAwsRevocationStore(database.db);
    const task = newId(clock);
    await database.db.insert(tasks).values({ id: task, agentSubject: 'agent-old', roles: ['adopt'], status: 'open', createdBy: 'test/orchestrator', createdAt: at(-120), deadline: at(3600) });
    const roles = [{ role: 'adopt', roleArn: OTHER_ARN }];
    // Issued before this version's first session on the role: they may lack the agent tag.
    const ended = await Promise.all((['revoking', 'revoke_failed', 'revoked', 'expired'] as const).map((status) => lease(task, { status, issuedAgo: 60 })));
    await store.markTagged(OTHER_ARN, at(-30));
    const tagged = await lease(task, { status: 'revoked', issuedAgo: 10 });
    const ignored = await Promise.all([
      lease(task, { status: 'active' }),
      lease(task, { status: 'revoked', liveFor: -1 }), // dead at AWS already
      lease(task, { status: 'revoked', revocable: false }),
      lease(task, { status: 'revoked', role: 'elsewhere' }),
    ]);

    await store.adoptLeases('aws', roles, clock.now());
    await store.adoptLeases('aws', roles, clock.now());
    const rows = await database.db.select().from(awsRevocations).where(eq(awsRevocations.roleArn, OTHER_ARN));
    expect(rows.map((r) => r.sourceIdentity).sort()).toEqual([...ended, tagged].sort());
    for (const r of rows) expect(r, r.sourceIdentity).toMatchObject({ agent: 'test/agent-old', untagged: r.sourceIdentity !== tagged });
    for (const id of ignored) expect(rows.map((r) => r.sourceIdentity)).not.toContain(id);

    // add decides untagged the same way; a lease never recorded was minted just now, by this version.
    const active = ignored[0]!;
    await store.add(OTHER_ARN, active.slice(3), { sourceIdentity: active, agent: 'test/agent-old', expiresAt: at(600), createdAt: clock.now() });
    const unrecorded = newId(clock);
    await store.add(OTHER_ARN, unrecorded, { sourceIdentity: `tl-${unrecorded}`, agent: 'test/agent-new', expiresAt: at(600), createdAt: clock.now() });
    const added = await database.db.select().from(awsRevocations).where(eq(awsRevocations.roleArn, OTHER_ARN));
    expect(added.find((r) => r.sourceIdentity === active)?.untagged).toBe(true);
    expect(added.find((r) => r.sourceIdentity === `tl-${unrecorded}`)?.untagged).toBe(false);
  });

  it('a revoked session is recorded before the policy write: a failed write loses nothing, and the next write (another replica’s) carries it', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-w' }, roles: ['store'], ttl_seconds: 3600 })).json.task.id;
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-w' }, { task, role: 'store' });
    expect(issued.status).toBe(201);
    const { lease: l, credentials } = issued.json;
    const mark = aws.calls.length;
    aws.failNext('iam', 'PutRolePolicy', { status: 403, code: 'AccessDenied', message: 'not authorized' }, 100);
    expect((await t.call('DELETE', `/v1/leases/${l.id}`, { subject: 'agent-w' })).status).toBe(202);
    await t.broker.sweeper.runOnce();
    // IAM refused every write: the lease is not revoked, but its row was committed before the first write.
    const writes = aws.calls.slice(mark).filter((c) => c.action === 'PutRolePolicy');
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.every((c) => c.status === 403)).toBe(true);
    const [row] = await database.db.select().from(leases).where(eq(leases.id, l.id));
    expect(row!.status).not.toBe('revoked');
    expect(aws.rolePolicies(ARN).get('tasklease-revoked')).toBeUndefined();
    const [entry] = await database.db.select().from(awsRevocations).where(eq(awsRevocations.sourceIdentity, `tl-${l.id}`));
    expect(entry).toMatchObject({ roleArn: ARN, agent: 'test/agent-w', untagged: false });
    aws.clearFailures();

    const replica = await startTestBroker(database, { clock, awsCredentials: aws.credentials, config: config(aws.url), instanceId: 'replica-2' });
    await replica.broker.sweeper.runOnce(); // its housekeeping writes the role's policy from the rows
    expect(aws.rolePolicies(ARN).get('tasklease-revoked')).toContain(`tl-${l.id}`);
    expect(aws.isDenied(credentials.AccessKeyId)).toBe(true);
  });

  it('revoke commits the row before it asks for the write (adoption aside): the write it waits for carries it', async () => {
    const real = createAwsRevocationStore(database.db);
    const order: string[] = [];
    // Adoption would also find a revoking lease; here there is no lease row at all, so only the ordering keeps the entry.
    const store: AwsRevocationStore = {
      ...real,
      adoptLeases: async () => {},
      async add(roleArn, leaseId, entry) {
        await real.add(roleArn, leaseId, entry);
        order.push(`committed, ${aws.calls.filter((c) => c.action === 'PutRolePolicy').length} writes`);
      },
    };
    const role = { name: 'store', backend: 'aws', aws: { role_arn: ARN, max_session_duration: 3600, policy_arns: [], tags: {} } } as unknown as RoleConfig;
    const backend = createAwsStsBackend({
      name: 'aws',
      config: { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url, revocation: { policy_name: 'order-test', max_policy_chars: 10_240 } },
      role: () => role,
      roleNames: () => ['store'],
      clock,
      log: createLogger('silent'),
      lock: (_key, fn) => fn(),
      store,
      credentials: aws.credentials,
    });
    const writesBefore = aws.calls.filter((c) => c.action === 'PutRolePolicy').length;
    const leaseId = newId(clock);
    await backend.revoke({ leaseId, ref: 'ASIAORDER', role: 'store', agent: 'test/agent-order', backendExpiresAt: at(600) });
    expect(order).toEqual([`committed, ${writesBefore} writes`]);
    expect(aws.rolePolicies(ARN).get('order-test')).toContain(`tl-${leaseId}`);
  });

  it('a rolling upgrade: an ended lease whose entry only an old replica wrote (to IAM) is adopted before every later write, not once per process', async () => {
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-roll' }, roles: ['store'], ttl_seconds: 3600 })).json.task.id;
    await t.broker.sweeper.runOnce(); // this replica has written the role's policy (and adopted) already
    // An old replica released a lease: its entry went to IAM only, and the next whole-policy write must keep it.
    const old = await lease(task, { status: 'revoked', role: 'store', liveFor: 900 });
    clock.advance(1);
    await t.broker.sweeper.runOnce();
    expect(aws.rolePolicies(ARN).get('tasklease-revoked')).toContain(old);
  });

  it('housekeeping does not write a role’s policy again when nothing in it changed', async () => {
    await t.broker.sweeper.runOnce();
    const mark = aws.calls.length;
    clock.advance(1);
    await t.broker.sweeper.runOnce();
    clock.advance(1);
    await t.broker.sweeper.runOnce();
    expect(aws.calls.slice(mark).filter((c) => c.service === 'iam').map((c) => c.action)).toEqual([]);
    // A change is written, once.
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-quiet' }, roles: ['store'], ttl_seconds: 3600 })).json.task.id;
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-quiet' }, { task, role: 'store' });
    expect((await t.call('DELETE', `/v1/leases/${issued.json.lease.id}`, { subject: 'agent-quiet' })).status).toBe(202);
    await t.broker.sweeper.runOnce();
    await t.broker.sweeper.runOnce();
    expect(aws.calls.slice(mark).filter((c) => c.action === 'PutRolePolicy')).toHaveLength(1);

    // An unchanged policy is still written once an hour (IAM may have applied two replicas' writes out of order).
    await database.db.insert(awsRevocations).values({ roleArn: ARN, sourceIdentity: 'tl-long', agent: 'test/agent-long', expiresAt: at(5 * 3600), createdAt: clock.now(), untagged: false });
    clock.advance(3601);
    await t.broker.sweeper.runOnce(); // everything else has expired: a new document
    const hourly = aws.calls.length;
    clock.advance(60);
    await t.broker.sweeper.runOnce();
    expect(aws.calls.slice(hourly).filter((c) => c.action === 'PutRolePolicy')).toHaveLength(0);
    clock.advance(3600);
    await t.broker.sweeper.runOnce();
    expect(aws.calls.slice(hourly).filter((c) => c.action === 'PutRolePolicy')).toHaveLength(1);
  });
});
