import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { IAMClient, ListRolePoliciesCommand } from '@aws-sdk/client-iam';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { awsRevocations, leases } from '../../src/db/schema.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { dumpTables, expectNoSecrets } from '../support/secrets.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/agents/tasklease-reports';
const OPEN_ROLE_ARN = 'arn:aws:iam::123456789012:role/tasklease-unrevocable';
const BOUND_ROLE_ARN = 'arn:aws:iam::123456789012:role/tasklease-bound';
const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

describe.each(DRIVERS)('aws-sts backend on %s', (driver) => {
  let database: TestDatabase;
  let aws: AwsFake;
  let t: TestBroker;
  const clock = createManualClock(new Date());

  beforeAll(async () => {
    aws = await startAwsFake({ roles: [{ arn: ROLE_ARN, maxSessionDuration: 7200 }, { arn: OPEN_ROLE_ARN }, { arn: BOUND_ROLE_ARN }], clock });
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, {
      clock,
      awsCredentials: aws.credentials,
      config: {
        backends: {
          aws: { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url, revocation: {} },
          'aws-norevoke': { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url },
        },
        roles: [
          ...HARNESS_ROLES,
          {
            name: 'reports',
            backend: 'aws',
            ttl: '5m',
            max_ttl: '2h',
            allow: AGENTS,
            aws: {
              role_arn: ROLE_ARN,
              max_session_duration: 7200,
              session_policy: {
                Version: '2012-10-17',
                Statement: [
                  { Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::reports/{{task}}/*' },
                  { Effect: 'Allow', Action: 'iam:ListRolePolicies', Resource: '*' }, // the tests' probe
                ],
              },
              tags: { team: 'analytics' },
            },
          },
          { name: 'plain-aws', backend: 'aws-norevoke', ttl: '15m', allow: AGENTS, aws: { role_arn: OPEN_ROLE_ARN } },
          { name: 'short', backend: 'aws', ttl: '2m', allow: AGENTS, aws: { role_arn: BOUND_ROLE_ARN } },
          {
            name: 'managed',
            backend: 'aws',
            ttl: '2m',
            allow: AGENTS,
            aws: { role_arn: BOUND_ROLE_ARN, policy_arns: ['arn:aws:iam::123456789012:policy/reports-read'] },
          },
          {
            name: 'per-agent',
            backend: 'aws-norevoke',
            ttl: '15m',
            allow: AGENTS,
            aws: {
              role_arn: OPEN_ROLE_ARN,
              session_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::reports/{{agent}}/*' }] },
            },
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await database?.drop();
    await aws?.close();
  });

  async function openTask(agent: string, roles: string[]) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles, ttl_seconds: 3600 });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }
  const sessionClient = (c: Record<string, string>) =>
    new STSClient({ region: 'us-east-1', endpoint: aws.url, maxAttempts: 1, credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! } });
  const iamAs = (c: Record<string, string>) =>
    new IAMClient({ region: 'us-east-1', endpoint: aws.url, maxAttempts: 1, credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! } });

  it('issues task-bound STS credentials: session name, SourceIdentity, tags, session policy, clamped duration', async () => {
    const task = await openTask('agent-aws', ['reports']);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-aws' }, { task, role: 'reports' });
    expect(res.status).toBe(201);
    const { lease, credentials } = res.json;
    expect(credentials).toMatchObject({ type: 'aws', AccessKeyId: expect.stringMatching(/^ASIA/), Region: 'us-east-1' });
    const session = aws.sessions.get(credentials.AccessKeyId)!;
    expect(session.roleArn).toBe(ROLE_ARN);
    expect(session.sessionName).toBe(`tl-${lease.id}`);
    expect(session.sourceIdentity).toBe(`tl-${lease.id}`);
    expect(session.tags).toMatchObject({ team: 'analytics', 'tasklease:task': task, 'tasklease:lease': lease.id, 'tasklease:agent': 'test/agent-aws' });
    expect(session.transitiveTagKeys).toEqual(['tasklease:agent-id']);
    const policy = JSON.parse(session.policy!);
    expect(policy.Statement[0].Resource).toBe(`arn:aws:s3:::reports/${task}/*`);
    // A 5-minute lease: STS grants no less than 900 s, so the session policy ends the session at the lease's end.
    expect(session.durationSeconds).toBe(900);
    expect(Date.parse(lease.expires_at) - Date.parse(lease.issued_at)).toBe(300_000);
    expect(lease.backend_expires_at).toBe(lease.expires_at);
    expect(policy.Statement.at(-1)).toEqual({
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { DateGreaterThan: { 'aws:CurrentTime': lease.expires_at.replace(/\.\d{3}Z$/, 'Z') } },
    });
    expect(lease).toMatchObject({ credential_ref: credentials.AccessKeyId, revocable: true });
    await expect(sessionClient(credentials).send(new GetCallerIdentityCommand({}))).resolves.toBeDefined();
  });

  it('completing the task adds the deny entry, the session is refused by AWS, and the entry is pruned after expiry', async () => {
    const task = await openTask('agent-aws2', ['reports']);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-aws2' }, { task, role: 'reports' });
    const { lease, credentials } = res.json;
    await expect(iamAs(credentials).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-reports' }))).resolves.toBeDefined();
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    const [row] = await database.db.select().from(leases).where(eq(leases.id, lease.id));
    expect(row).toMatchObject({ status: 'revoked', reason: 'task_completed' });
    const policy = JSON.parse(aws.rolePolicies(ROLE_ARN).get('tasklease-revoked')!);
    expect(JSON.stringify(policy)).toContain(`tl-${lease.id}`);
    expect(aws.isDenied(credentials.AccessKeyId)).toBe(true);
    await expect(iamAs(credentials).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-reports' }))).rejects.toMatchObject({ name: expect.stringMatching(/AccessDenied/) });

    clock.advance(2 * 3600 + 60); // every session issued so far has expired at AWS
    await t.broker.sweeper.runOnce();
    const after = aws.rolePolicies(ROLE_ARN).get('tasklease-revoked');
    expect(after === undefined || !after.includes(`tl-${lease.id}`)).toBe(true);
  });

  it('a session dies at AWS when its lease ends, with no broker: a natural expiry writes no deny entry, an early end still does', async () => {
    const task = await openTask('agent-bound', ['short', 'managed']);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-bound' }, { task, role: 'short' });
    expect(res.status).toBe(201);
    const { lease, credentials } = res.json;
    const session = aws.sessions.get(credentials.AccessKeyId)!;
    expect(session.durationSeconds).toBe(900); // STS's minimum: 780 s past the 120 s lease
    expect(lease.backend_expires_at).toBe(lease.expires_at);
    expect(credentials.Expiration).toBe(lease.expires_at); // what the caller is told, not STS's 900 s
    // Without a template, the session policy allows what the role allows, until the lease's end.
    expect(JSON.parse(session.policy!).Statement[0]).toEqual({ Effect: 'Allow', Action: '*', Resource: '*' });
    await expect(iamAs(credentials).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-bound' }))).resolves.toBeDefined();

    // The broker is gone: nothing revokes, yet AWS refuses the session once the lease has ended.
    clock.advance(121);
    await expect(iamAs(credentials).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-bound' }))).rejects.toMatchObject({ name: expect.stringMatching(/AccessDenied/) });
    expect(clock.now().getTime()).toBeLessThan(session.expiration.getTime()); // STS alone would still honour it

    // The sweeper expires the lease and writes nothing to IAM: the session is already dead there.
    const mark = aws.calls.length;
    await t.broker.sweeper.runOnce();
    const [row] = await database.db.select().from(leases).where(eq(leases.id, lease.id));
    expect(row).toMatchObject({ status: 'expired' });
    expect(aws.calls.slice(mark).filter((c) => c.action === 'PutRolePolicy')).toEqual([]);
    expect(await database.db.select().from(awsRevocations).where(eq(awsRevocations.sourceIdentity, `tl-${lease.id}`))).toEqual([]);

    // With managed session policies only the bound is added (an Allow * beside them would undo their limit); an early end still writes the entry.
    const managed = await t.call('POST', '/v1/credentials', { subject: 'agent-bound' }, { task, role: 'managed' });
    expect(JSON.parse(aws.sessions.get(managed.json.credentials.AccessKeyId)!.policy!).Statement).toEqual([
      { Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateGreaterThan: { 'aws:CurrentTime': managed.json.lease.expires_at.replace(/\.\d{3}Z$/, 'Z') } } },
    ]);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    expect(aws.rolePolicies(BOUND_ROLE_ARN).get('tasklease-revoked')).toContain(`tl-${managed.json.lease.id}`);
    expect(aws.isDenied(managed.json.credentials.AccessKeyId)).toBe(true);
  });

  it('a subject holding * gets its own prefix in the session policy, not a wildcard over other agents’ (IAM escapes)', async () => {
    const created = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-*' }, roles: ['per-agent'], ttl_seconds: 3600 });
    expect(created.status).toBe(201);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-*' }, { task: created.json.task.id, role: 'per-agent' });
    expect(res.status).toBe(201);
    const key = res.json.credentials.AccessKeyId;
    expect(JSON.parse(aws.sessions.get(key)!.policy!).Statement[0].Resource).toBe('arn:aws:s3:::reports/test/agent-${*}/*');
    expect(aws.sessionPolicyAllows(key, 's3:GetObject', 'arn:aws:s3:::reports/test/agent-*/report.csv')).toBe(true);
    expect(aws.sessionPolicyAllows(key, 's3:GetObject', 'arn:aws:s3:::reports/test/agent-other/report.csv')).toBe(false);
  });

  it('says plainly when a role cannot be revoked early, and still ends the lease', async () => {
    const task = await openTask('agent-aws3', ['plain-aws']);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-aws3' }, { task, role: 'plain-aws' });
    expect(res.json.lease.revocable).toBe(false);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    const audit = await t.call('GET', `/v1/audit?target=lease:${res.json.lease.id}&action=lease.revoked`, { subject: 'admin' });
    expect(audit.json.items[0].details.not_revocable).toMatch(/works until its backend expiry/);
    expect(aws.rolePolicies(OPEN_ROLE_ARN).size).toBe(0);
  });

  it('maps AWS errors to stable problem codes and fails closed', async () => {
    const task = await openTask('agent-aws4', ['reports']);
    aws.failNext('sts', 'AssumeRole', { status: 403, code: 'AccessDenied', message: 'not authorized' });
    const denied = await t.call('POST', '/v1/credentials', { subject: 'agent-aws4' }, { task, role: 'reports' });
    expect(denied.status).toBe(502);
    expect(denied.json).toMatchObject({ code: 'backend_error', backend_code: 'aws_access_denied' });
    aws.failNext('sts', 'AssumeRole', { status: 400, code: 'MalformedPolicyDocument', message: 'bad' });
    const malformed = await t.call('POST', '/v1/credentials', { subject: 'agent-aws4' }, { task, role: 'reports' });
    expect(malformed.json).toMatchObject({ code: 'backend_error', backend_code: 'aws_malformed_policy' });
    aws.failNext('sts', 'AssumeRole', { status: 400, code: 'Throttling', message: 'slow down' }, 1);
    const throttledOnce = await t.call('POST', '/v1/credentials', { subject: 'agent-aws4' }, { task, role: 'reports' });
    expect(throttledOnce.status).toBe(201); // retried with backoff by the SDK
    aws.failNext('sts', 'AssumeRole', { status: 400, code: 'Throttling', message: 'slow down' }, 5);
    const throttled = await t.call('POST', '/v1/credentials', { subject: 'agent-aws4' }, { task, role: 'reports' });
    expect(throttled.status).toBe(503);
    expect(throttled.json.backend_code).toBe('aws_throttled');
    const rows = await database.db.select().from(leases).where(eq(leases.taskId, task));
    expect(rows).toHaveLength(1);
  });

  it('keeps secret keys and session tokens out of every table and log line', async () => {
    const task = await openTask('agent-aws9', ['reports']);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-aws9' }, { task, role: 'reports' });
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    const secrets = [res.json.credentials.SecretAccessKey, res.json.credentials.SessionToken, aws.credentials.secretAccessKey];
    expectNoSecrets(secrets, [...(await dumpTables(database)), ...t.logs.lines]);
  });
});
