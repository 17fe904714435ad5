import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromHttp, fromProcess } from '@aws-sdk/credential-providers';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { listenLocal } from '../support/listen.js';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/tasklease-clients';
const run = promisify(execFile);

describe('unmodified AWS clients against the broker', () => {
  let database: TestDatabase;
  let aws: AwsFake;
  let t: TestBroker;
  let url: string;
  let close: () => void;
  const dir = mkdtempSync(join(tmpdir(), 'tl-aws-clients-'));

  beforeAll(async () => {
    // Real time: the SDK compares Expiration with the wall clock.
    const clock = createManualClock(new Date());
    aws = await startAwsFake({ roles: [{ arn: ROLE_ARN }], clock });
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, {
      clock,
      awsCredentials: aws.credentials,
      config: {
        backends: { aws: { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url, revocation: {} } },
        roles: [...HARNESS_ROLES, { name: 'reports', backend: 'aws', ttl: '15m', allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }], aws: { role_arn: ROLE_ARN } }],
      },
    });
    await new Promise<void>((ready) => {
      const server = serve({ fetch: t.broker.app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => {
        url = `http://127.0.0.1:${info.port}`;
        ready();
      });
      close = () => server.close();
    });
  });
  afterAll(async () => {
    close?.();
    await database?.drop();
    await aws?.close();
  });

  async function openTask(agent: string) {
    return (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['reports'], ttl_seconds: 3600 })).json.task.id as string;
  }
  const callerIdentity = (credentials: Parameters<typeof fromHttp>[0] extends never ? never : any) =>
    new STSClient({ region: 'us-east-1', endpoint: aws.url, credentials, maxAttempts: 1 }).send(new GetCallerIdentityCommand({}));

  it('the SDK container-credentials provider (fromHttp) gets per-task credentials that STS accepts', async () => {
    const task = await openTask('agent-http');
    const token = await t.tokenFor('agent-http');
    const provider = fromHttp({
      awsContainerCredentialsFullUri: `${url}/v1/aws/container-credentials?task=${task}&role=reports`,
      awsContainerAuthorizationToken: token,
    });
    const creds = await provider();
    expect(creds.accessKeyId).toMatch(/^ASIA/);
    expect(creds.expiration).toBeInstanceOf(Date);
    const who = await callerIdentity(provider);
    expect(who.Arn).toContain('tasklease-clients');
    const session = aws.sessions.get(creds.accessKeyId)!;
    expect(session.tags['tasklease:task']).toBe(task);
  });

  it('refuses the container endpoint without the agent token, as problem+json', async () => {
    const task = await openTask('agent-http2');
    const res = await fetch(`${url}/v1/aws/container-credentials?task=${task}&role=reports`, { headers: { authorization: 'not-a-token' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('credential_process output is parsed by the SDK (fromProcess), and stderr holds no secret', async () => {
    const task = await openTask('agent-proc');
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, await t.tokenFor('agent-proc'), { mode: 0o600 });
    const bin = resolve('bin/tasklease.js');
    const args = ['aws', 'credential-process', '--task', task, '--role', 'reports', '--url', url, '--token-file', tokenFile];
    const configFile = join(dir, 'config');
    writeFileSync(configFile, `[profile agent]\ncredential_process = ${process.execPath} ${bin} ${args.join(' ')}\n`);
    const provider = fromProcess({ profile: 'agent', configFilepath: configFile, filepath: join(dir, 'no-credentials') });
    const creds = await provider();
    expect(creds.accessKeyId).toMatch(/^ASIA/);
    expect(creds.sessionToken).toBeTruthy();
    await expect(callerIdentity(creds)).resolves.toMatchObject({ Arn: expect.stringContaining('tasklease-clients') });

    const direct = await run(process.execPath, [bin, ...args]);
    const parsed = JSON.parse(direct.stdout);
    expect(parsed).toMatchObject({ Version: 1, AccessKeyId: expect.stringMatching(/^ASIA/) });
    expect(direct.stderr).not.toContain(parsed.SecretAccessKey);
    expect(direct.stderr).not.toContain(parsed.SessionToken);

    type Outcome = { code?: number; stdout: string; stderr: string };
    const refused: Outcome = await run(process.execPath, [bin, 'aws', 'credential-process', '--task', 'no-such-task', '--role', 'reports', '--url', url, '--token-file', tokenFile]).catch((e: Outcome) => e);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain('task_not_found');
  }, 60_000);

  it('credential_process reaches a broker served under a path prefix', async () => {
    // A reverse proxy that serves the broker under /tasklease and nothing at the root.
    const proxy = new Hono().mount('/tasklease', t.broker.app.fetch);
    const server = serve({ fetch: proxy.fetch, port: 0, hostname: '127.0.0.1' });
    try {
      const port = await new Promise<number>((ready) => server.once('listening', () => ready((server.address() as AddressInfo).port)));
      const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-prefix' }, roles: ['reports'], ttl_seconds: 3600 });
      expect(opened.status).toBe(201);
      const tokenFile = join(dir, 'token-prefix');
      writeFileSync(tokenFile, await t.tokenFor('agent-prefix'), { mode: 0o600 });
      const args = ['aws', 'credential-process', '--task', opened.json.task.id, '--role', 'reports', '--url', `http://127.0.0.1:${port}/tasklease`, '--token-file', tokenFile];
      const out = await run(process.execPath, [resolve('bin/tasklease.js'), ...args]);
      expect(JSON.parse(out.stdout)).toMatchObject({ Version: 1, AccessKeyId: expect.stringMatching(/^ASIA/) });
    } finally {
      server.close();
    }
  }, 60_000);

  it('50 concurrent revocations on one role end in one policy holding all 50 entries', async () => {
    const task = await openTask('agent-many');
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-many' }, { task, role: 'reports' });
      expect(res.status).toBe(201);
      ids.push(res.json.lease.id);
    }
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    const policy = aws.rolePolicies(ROLE_ARN).get('tasklease-revoked')!;
    for (const id of ids) expect(policy).toContain(`tl-${id}`);
    const puts = aws.calls.filter((c) => c.action === 'PutRolePolicy').length;
    expect(puts).toBeLessThan(50); // merged, not one write per revocation
  });

  it('two replicas revoking on one role at once lose no entry (their policy writes are ordered by the lock)', async () => {
    // IAM answers slowly here, so without the lock a replica's write rendered from older rows could land last.
    const slowIam = await delayingProxy(aws.url, 30);
    const replicaConfig = (instanceId: string) => ({
      clock: t.clock,
      awsCredentials: aws.credentials,
      instanceId,
      config: {
        backends: { aws: { type: 'aws-sts' as const, region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: slowIam.url, revocation: {} } },
        roles: [...HARNESS_ROLES, { name: 'reports', backend: 'aws', ttl: '15m', allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }], aws: { role_arn: ROLE_ARN } }],
        sweeper: { batch_size: 4, concurrency: 4 },
      },
    });
    const [r1, r2] = await Promise.all([startTestBroker(database, replicaConfig('replica-1')), startTestBroker(database, replicaConfig('replica-2'))]);
    const task = await openTask('agent-two');
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await t.call('POST', '/v1/credentials', { subject: 'agent-two' }, { task, role: 'reports' })).json.lease.id);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    const [a, b] = await Promise.all([r1.broker.sweeper.runOnce(), r2.broker.sweeper.runOnce()]);
    slowIam.close();
    expect(a.revoked + b.revoked).toBe(40);
    expect(Math.min(a.revoked, b.revoked)).toBeGreaterThan(0);
    const policy = aws.rolePolicies(ROLE_ARN).get('tasklease-revoked')!;
    for (const id of ids) expect(policy, id).toContain(`tl-${id}`);
  });
});

/** Forwards requests unchanged (Host included, so SigV4 still verifies) and holds each answer `ms` before returning it. */
async function delayingProxy(target: string, ms: number): Promise<{ url: string; close: () => void }> {
  const { createServer, request } = await import('node:http');
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () =>
        setTimeout(() => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(chunks));
        }, ms),
      );
    });
    req.pipe(forward);
  });
  return { url: `http://127.0.0.1:${await listenLocal(server)}`, close: () => server.close() };
}
