/**
 * Early revocation on an IAM role that several agents share, through the AWS
 * fake with the real SDK clients: one agent's churn fills the role's deny
 * policy, and only that agent's older sessions pay for it; and an entry
 * survives IAM answering a read with an older policy, because the broker never
 * reads the policy back.
 */
import { IAMClient, ListRolePoliciesCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';

const SHARED_ARN = 'arn:aws:iam::123456789012:role/tasklease-shared';
const STALE_ARN = 'arn:aws:iam::123456789012:role/tasklease-stale';
const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

const brokerConfig = (url: string) => ({
  backends: { aws: { type: 'aws-sts' as const, region: 'us-east-1', sts_endpoint: url, iam_endpoint: url, revocation: {} } },
  roles: [
    ...HARNESS_ROLES,
    { name: 'shared', backend: 'aws', ttl: '15m', allow: AGENTS, aws: { role_arn: SHARED_ARN } },
    { name: 'stale', backend: 'aws', ttl: '15m', allow: AGENTS, aws: { role_arn: STALE_ARN } },
  ],
});

describe.each(DRIVERS)('a shared IAM role on %s', (driver) => {
  let database: TestDatabase;
  let aws: AwsFake;
  let t: TestBroker;
  const clock = createManualClock(new Date());

  beforeAll(async () => {
    aws = await startAwsFake({ roles: [{ arn: SHARED_ARN }, { arn: STALE_ARN }], clock });
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, { clock, awsCredentials: aws.credentials, config: brokerConfig(aws.url) });
  });
  afterAll(async () => {
    await database?.drop();
    await aws?.close();
  });

  async function openTask(agent: string, role: string): Promise<string> {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: [role], ttl_seconds: 3600 });
    expect(res.status).toBe(201);
    return res.json.task.id;
  }
  async function credential(agent: string, task: string, role: string) {
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role });
    expect(res.status).toBe(201);
    return res.json as { lease: { id: string }; credentials: Record<string, string> };
  }
  async function release(agent: string, leaseId: string) {
    expect((await t.call('DELETE', `/v1/leases/${leaseId}`, { subject: agent })).status).toBe(202);
  }
  const listPolicies = (c: Record<string, string>, roleName: string) =>
    new IAMClient({ region: 'us-east-1', endpoint: aws.url, maxAttempts: 1, credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! } }).send(
      new ListRolePoliciesCommand({ RoleName: roleName }),
    );

  it("276 release cycles by one agent cut off only that agent's older sessions; another agent's live session keeps working, and the cut-off is audited and counted", async () => {
    const bystanderTask = await openTask('agent-bystander', 'shared');
    const bystander = await credential('agent-bystander', bystanderTask, 'shared');
    await expect(listPolicies(bystander.credentials, 'tasklease-shared')).resolves.toBeDefined();

    // A session of the role the broker did not issue (no agent tag): no agent's cut-off may touch it.
    const sts = (credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }) => new STSClient({ region: 'us-east-1', endpoint: aws.url, maxAttempts: 1, credentials });
    const outsider = await sts(aws.credentials).send(new AssumeRoleCommand({ RoleArn: SHARED_ARN, RoleSessionName: 'outsider' }));

    const churnTask = await openTask('agent-churn', 'shared');
    // A session the churning agent chains from one of its own: it keeps the agent tag (transitive), so the cut-off ends it too.
    const first = await credential('agent-churn', churnTask, 'shared');
    const chained = await sts({ accessKeyId: first.credentials.AccessKeyId!, secretAccessKey: first.credentials.SecretAccessKey!, sessionToken: first.credentials.SessionToken! }).send(
      new AssumeRoleCommand({ RoleArn: SHARED_ARN, RoleSessionName: 'chained' }),
    );
    await release('agent-churn', first.lease.id);
    const released: string[] = [first.credentials.AccessKeyId!];
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 23; i++) {
        const { lease, credentials } = await credential('agent-churn', churnTask, 'shared');
        await release('agent-churn', lease.id);
        released.push(credentials.AccessKeyId!);
      }
      await t.broker.sweeper.runOnce();
      clock.advance(1);
    }

    // Every released session is refused by IAM, by name or by the churning agent's own cut-off.
    for (const key of released) expect(aws.isDenied(key), key).toBe(true);
    expect(aws.isDenied(chained.Credentials!.AccessKeyId!)).toBe(true);
    expect(aws.isDenied(outsider.Credentials!.AccessKeyId!)).toBe(false);
    // The bystander's session was never revoked, and still works.
    expect(aws.isDenied(bystander.credentials.AccessKeyId!)).toBe(false);
    await expect(listPolicies(bystander.credentials, 'tasklease-shared')).resolves.toBeDefined();
    // A session the churning agent gets after its cut-off works too.
    const fresh = await credential('agent-churn', churnTask, 'shared');
    await expect(listPolicies(fresh.credentials, 'tasklease-shared')).resolves.toBeDefined();

    const policy = JSON.parse(aws.rolePolicies(SHARED_ARN).get('tasklease-revoked')!) as { Statement: { Sid: string; Condition: Record<string, Record<string, unknown>> }[] };
    expect(policy.Statement.map((s) => s.Sid)).not.toContain('TaskleaseCutoff');
    const agentCutoffs = policy.Statement.filter((s) => s.Sid.startsWith('TaskleaseAgent'));
    expect(agentCutoffs).toHaveLength(1);
    expect(agentCutoffs[0]!.Condition.StringEquals!['aws:PrincipalTag/tasklease:agent-id']).toBe(aws.sessions.get(fresh.credentials.AccessKeyId!)!.tags['tasklease:agent-id']);

    const audit = await t.call('GET', `/v1/audit?action=aws.revocation_cutoff`, { subject: 'admin' });
    expect(audit.json.items.length).toBeGreaterThanOrEqual(1);
    for (const event of audit.json.items) {
      expect(event).toMatchObject({ target: `aws-role:${SHARED_ARN}`, details: { scope: 'agent', agents: ['test/agent-churn'] } });
    }
    const metrics = await t.broker.metrics.registry.metrics();
    expect(metrics).toMatch(new RegExp(`tasklease_aws_revocation_cutoffs_total\\{role_arn="${SHARED_ARN}",scope="agent",agent="test/agent-churn"\\} [1-9]`));
    expect(metrics).not.toMatch(/scope="role"/);
  }, 240_000);

  it('an entry survives IAM answering reads with an older policy: nothing is read back', async () => {
    const task = await openTask('agent-stale', 'stale');
    const first = await credential('agent-stale', task, 'stale');
    const second = await credential('agent-stale', task, 'stale');
    const mark = aws.calls.length;
    await release('agent-stale', first.lease.id);
    await t.broker.sweeper.runOnce();
    expect(aws.rolePolicies(STALE_ARN).get('tasklease-revoked')).toContain(`tl-${first.lease.id}`);

    aws.staleReads(10); // IAM is eventually consistent: reads now miss the latest write
    await release('agent-stale', second.lease.id);
    await t.broker.sweeper.runOnce();
    const policy = aws.rolePolicies(STALE_ARN).get('tasklease-revoked')!;
    expect(policy).toContain(`tl-${first.lease.id}`);
    expect(policy).toContain(`tl-${second.lease.id}`);
    expect(aws.isDenied(first.credentials.AccessKeyId!)).toBe(true);
    expect(aws.calls.slice(mark).filter((c) => c.action === 'GetRolePolicy')).toEqual([]);
    aws.staleReads(0);
  });

  it('after an upgrade, entries an earlier version kept only in IAM are adopted from the leases before the first write', async () => {
    const task = await openTask('agent-upgrade', 'stale');
    const { lease } = await credential('agent-upgrade', task, 'stale');
    await release('agent-upgrade', lease.id);
    await t.broker.sweeper.runOnce();
    expect(aws.rolePolicies(STALE_ARN).get('tasklease-revoked')).toContain(`tl-${lease.id}`);
    // As an earlier version left it: the entry in IAM, none in the database.
    await database.db.execute(sql`delete from aws_revocations`);
    const upgraded = await startTestBroker(database, { clock, awsCredentials: aws.credentials, config: brokerConfig(aws.url), instanceId: 'upgraded' });
    await upgraded.broker.sweeper.runOnce();
    expect(aws.rolePolicies(STALE_ARN).get('tasklease-revoked')).toContain(`tl-${lease.id}`);
  });
});
