/**
 * The AWS fake, exercised only through the real SDK clients (and, where the
 * wire format itself is the point, a raw SigV4-signed request parsed with
 * fast-xml-parser), so it can stand in for STS and IAM in the broker's tests.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient, type AssumeRoleCommandInput } from '@aws-sdk/client-sts';
import {
  DeleteRolePolicyCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import { SignatureV4 } from '@smithy/signature-v4';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { startAwsFake, type AwsFake } from './aws-fake.js';
import { expectedSignature, parseAuthorization } from './aws-fake/sigv4.js';

const ROLE = 'arn:aws:iam::123456789012:role/tasklease-agent';
const LONG_ROLE = 'arn:aws:iam::123456789012:role/ops/tasklease-long';
const OTHER_ACCOUNT_ROLE = 'arn:aws:iam::210987654321:role/elsewhere';

type Creds = { accessKeyId: string; secretAccessKey: string; sessionToken?: string };

/** The hash SignatureV4 wants: a plain SHA-256, or an HMAC when constructed with a key. */
class Sha256 {
  private hash!: Hash | Hmac;
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.reset();
  }
  update(data: string | Uint8Array) {
    this.hash.update(data);
  }
  async digest() {
    return new Uint8Array(this.hash.digest());
  }
  reset() {
    const s = this.secret;
    if (s === undefined) this.hash = createHash('sha256');
    else if (typeof s === 'string') this.hash = createHmac('sha256', s);
    else if (s instanceof ArrayBuffer) this.hash = createHmac('sha256', Buffer.from(s));
    else this.hash = createHmac('sha256', Buffer.from(s.buffer, s.byteOffset, s.byteLength));
  }
}

/** The SDK surfaces the wire's <Code> as `Code`, and a modelled error's class name as `name`. */
async function failure(p: Promise<unknown>): Promise<{ name: string; Code: string; message: string; status: number | undefined }> {
  try {
    await p;
  } catch (e) {
    const err = e as { name: string; Code: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: err.name, Code: err.Code, message: err.message, status: err.$metadata?.httpStatusCode };
  }
  throw new Error('expected the call to fail');
}

describe('SigV4 verification matches AWS’s published test-suite vectors', () => {
  // AWS Signature Version 4 test suite: AKIDEXAMPLE, us-east-1, service "service", 20150830T123600Z.
  const secret = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
  const auth = parseAuthorization(
    'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=x',
  );
  const headers: [string, string][] = [
    ['Host', 'example.amazonaws.com'],
    ['X-Amz-Date', '20150830T123600Z'],
  ];
  it.each([
    ['get-vanilla', 'GET', '/', '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'],
    ['get-vanilla-query-order-key-case', 'GET', '/?Param2=value2&Param1=value1', 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500'],
    ['post-vanilla', 'POST', '/', '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b'],
  ])('%s', (_name, method, url, signature) => {
    expect(expectedSignature({ method, url, headers, body: '' }, auth, '20150830T123600Z', secret)).toBe(signature);
  });
});

describe('aws-fake', () => {
  const clock = createManualClock(new Date('2030-01-01T00:00:00Z'));
  let fake: AwsFake;
  const sts = (credentials: Creds, maxAttempts = 1) =>
    new STSClient({ endpoint: fake.url, region: 'us-east-1', credentials, maxAttempts });
  const iam = (credentials: Creds, maxAttempts = 1) =>
    new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials, maxAttempts });
  const assume = (input: Partial<AssumeRoleCommandInput>, credentials: Creds = fake.credentials) =>
    sts(credentials).send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'lease-1', ...input }));
  const sessionCreds = (c: { AccessKeyId?: string; SecretAccessKey?: string; SessionToken?: string } | undefined): Creds => ({
    accessKeyId: c!.AccessKeyId!,
    secretAccessKey: c!.SecretAccessKey!,
    sessionToken: c!.SessionToken!,
  });

  /** A hand-signed Query request, for checking the XML on the wire. */
  async function raw(service: 'sts' | 'iam', params: Record<string, string>, credentials: Creds = fake.credentials, signingDate = new Date()) {
    const url = new URL(fake.url);
    const body = new URLSearchParams(params).toString();
    const signer = new SignatureV4({ credentials, region: 'us-east-1', service, sha256: Sha256 });
    const signed = await signer.sign(
      {
        method: 'POST',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: '/',
        query: {},
        headers: { host: url.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
        body,
      },
      { signingDate },
    );
    const res = await fetch(fake.url, { method: 'POST', headers: signed.headers, body });
    return { status: res.status, xml: new XMLParser().parse(await res.text()) as Record<string, any> };
  }

  beforeAll(async () => {
    fake = await startAwsFake({
      clock,
      roles: [{ arn: ROLE }, { arn: LONG_ROLE, maxSessionDuration: 43200 }, { arn: OTHER_ACCOUNT_ROLE }],
      accounts: ['123456789012'],
    });
  });
  afterAll(() => fake.close());

  describe('STS AssumeRole', () => {
    it('issues credentials the real STSClient parses, and stores the session with its tags', async () => {
      const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] });
      const out = await assume({
        DurationSeconds: 1800,
        SourceIdentity: 'lease-1',
        Tags: [{ Key: 'Task', Value: 'task-42' }],
        Policy: policy,
        PolicyArns: [{ arn: 'arn:aws:iam::123456789012:policy/read-only' }],
      });
      expect(out.Credentials!.AccessKeyId).toMatch(/^ASIA[A-Z2-7]{16}$/);
      expect(out.Credentials!.SecretAccessKey).toHaveLength(40);
      expect(out.Credentials!.Expiration).toEqual(new Date('2030-01-01T00:30:00Z'));
      expect(out.AssumedRoleUser!.Arn).toBe('arn:aws:sts::123456789012:assumed-role/tasklease-agent/lease-1');
      expect(out.AssumedRoleUser!.AssumedRoleId).toMatch(/^AROA[A-Z2-7]{17}:lease-1$/);
      expect(out.SourceIdentity).toBe('lease-1');
      expect(out.PackedPolicySize).toBeGreaterThan(0);
      expect(out.PackedPolicySize).toBeLessThanOrEqual(100);

      const session = fake.sessions.get(out.Credentials!.AccessKeyId!)!;
      expect(session).toMatchObject({
        roleArn: ROLE,
        sessionName: 'lease-1',
        sourceIdentity: 'lease-1',
        tags: { Task: 'task-42' },
        policy,
        policyArns: ['arn:aws:iam::123456789012:policy/read-only'],
        issuedAt: new Date('2030-01-01T00:00:00Z'),
        expiration: new Date('2030-01-01T00:30:00Z'),
      });
      expect(fake.calls.at(-1)).toMatchObject({ service: 'sts', action: 'AssumeRole', status: 200, params: { RoleArn: ROLE, SourceIdentity: 'lease-1' } });
    });

    it('answers in the documented XML: AssumeRoleResponse/AssumeRoleResult, ISO-8601 UTC Expiration, RequestId', async () => {
      const { status, xml } = await raw('sts', { Action: 'AssumeRole', Version: '2011-06-15', RoleArn: ROLE, RoleSessionName: 'wire', DurationSeconds: '900' });
      expect(status).toBe(200);
      const result = xml.AssumeRoleResponse.AssumeRoleResult;
      expect(result.Credentials.Expiration).toBe('2030-01-01T00:15:00Z');
      expect(result.Credentials.AccessKeyId).toMatch(/^ASIA/);
      expect(typeof result.Credentials.SessionToken).toBe('string');
      expect(result.AssumedRoleUser.Arn).toBe('arn:aws:sts::123456789012:assumed-role/tasklease-agent/wire');
      expect(result.PackedPolicySize).toBeUndefined(); // nothing packed was passed
      expect(xml.AssumeRoleResponse.ResponseMetadata.RequestId).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('answers errors in the documented XML: ErrorResponse/Error{Type, Code, Message}/RequestId', async () => {
      const { status, xml } = await raw('sts', { Action: 'AssumeRole', Version: '2011-06-15', RoleArn: ROLE, RoleSessionName: 'x' });
      expect(status).toBe(400);
      expect(xml.ErrorResponse.Error).toMatchObject({ Type: 'Sender', Code: 'ValidationError' });
      expect(xml.ErrorResponse.Error.Message).toContain("at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2");
      expect(xml.ErrorResponse.RequestId).toMatch(/^[0-9a-f-]{36}$/);
    });

    // Hard-to-compress resource names: ~2,000 plaintext characters (under the 2,048 limit) that pack past 100%.
    const noise = (i: number) => createHash('sha256').update(String(i)).digest('base64url') + createHash('sha256').update(`x${i}`).digest('base64url').slice(0, 20);
    const randomResources = Array.from({ length: 24 }, (_, i) => `arn:aws:s3:::b/${noise(i)}`);
    const tooPacked = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: randomResources }] });

    it.each<{ what: string; input: Partial<AssumeRoleCommandInput>; code: string; message: string }>([
      { what: 'DurationSeconds 899', input: { DurationSeconds: 899 }, code: 'ValidationError', message: 'Member must have value greater than or equal to 900' },
      { what: 'DurationSeconds 43201', input: { DurationSeconds: 43201 }, code: 'ValidationError', message: 'Member must have value less than or equal to 43200' },
      { what: 'DurationSeconds over the role’s MaxSessionDuration', input: { DurationSeconds: 3601 }, code: 'ValidationError', message: 'exceeds the MaxSessionDuration set for this role' },
      { what: 'RoleSessionName of 1 character', input: { RoleSessionName: 'a' }, code: 'ValidationError', message: 'Member must have length greater than or equal to 2' },
      { what: 'RoleSessionName of 65 characters', input: { RoleSessionName: 'a'.repeat(65) }, code: 'ValidationError', message: 'Member must have length less than or equal to 64' },
      { what: 'RoleSessionName with a space', input: { RoleSessionName: 'lease 1' }, code: 'ValidationError', message: 'Member must satisfy regular expression pattern: [\\w+=,.@-]*' },
      { what: 'SourceIdentity starting with aws:', input: { SourceIdentity: 'aws:lease' }, code: 'ValidationError', message: "at 'sourceIdentity'" },
      { what: 'SourceIdentity of 65 characters', input: { SourceIdentity: 's'.repeat(65) }, code: 'ValidationError', message: "at 'sourceIdentity'" },
      { what: '51 tags', input: { Tags: Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' })) }, code: 'ValidationError', message: "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50" },
      { what: 'tag keys differing only in case', input: { Tags: [{ Key: 'Team', Value: 'a' }, { Key: 'team', Value: 'b' }] }, code: 'ValidationError', message: 'Tag keys are case insensitive' },
      { what: 'a tag key starting with aws:', input: { Tags: [{ Key: 'aws:team', Value: 'a' }] }, code: 'ValidationError', message: "'aws:'" },
      { what: 'a tag key of 129 characters', input: { Tags: [{ Key: 'k'.repeat(129), Value: 'a' }] }, code: 'ValidationError', message: "at 'tags.1.member.key'" },
      { what: 'a tag value with a forbidden character', input: { Tags: [{ Key: 'k', Value: 'a;b' }] }, code: 'ValidationError', message: "at 'tags.1.member.value'" },
      { what: '11 PolicyArns', input: { PolicyArns: Array.from({ length: 11 }, (_, i) => ({ arn: `arn:aws:iam::123456789012:policy/p${i}` })) }, code: 'ValidationError', message: "at 'policyArns'" },
      { what: 'ExternalId of 1 character', input: { ExternalId: 'x' }, code: 'ValidationError', message: "at 'externalId'" },
      { what: 'a Policy of 2049 characters', input: { Policy: ' '.repeat(2049) }, code: 'ValidationError', message: "at 'policy'" },
      { what: 'a Policy that is not JSON', input: { Policy: 'allow everything' }, code: 'MalformedPolicyDocument', message: 'Syntax errors in policy.' },
      { what: 'a Policy without Effect', input: { Policy: '{"Version":"2012-10-17","Statement":[{"Action":"s3:*","Resource":"*"}]}' }, code: 'MalformedPolicyDocument', message: 'Missing required field Effect' },
      { what: 'a session policy over the packed limit', input: { Policy: tooPacked }, code: 'PackedPolicyTooLarge', message: 'Packed policy consumes' },
      { what: 'a role nobody configured', input: { RoleArn: 'arn:aws:iam::123456789012:role/missing' }, code: 'AccessDenied', message: 'is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/missing' },
      { what: 'a role in an untrusted account', input: { RoleArn: OTHER_ACCOUNT_ROLE }, code: 'AccessDenied', message: 'sts:AssumeRole' },
    ])('rejects $what with $code', async ({ input, code, message }) => {
      if (code === 'PackedPolicyTooLarge') expect(tooPacked.length).toBeLessThanOrEqual(2048);
      const before = fake.sessions.size;
      const err = await failure(assume(input));
      expect(err.Code).toBe(code);
      expect(err.message).toContain(message);
      expect(err.status).toBe(code === 'AccessDenied' ? 403 : 400);
      // Modelled errors surface under their class name, the rest under the code itself.
      const modelled: Record<string, string> = { PackedPolicyTooLarge: 'PackedPolicyTooLargeException', MalformedPolicyDocument: 'MalformedPolicyDocumentException' };
      expect(err.name).toBe(modelled[code] ?? code);
      expect(fake.sessions.size).toBe(before);
    });

    it('allows the role’s full MaxSessionDuration and the documented boundaries', async () => {
      const long = await assume({ RoleArn: LONG_ROLE, DurationSeconds: 43200, RoleSessionName: 'a'.repeat(64), SourceIdentity: 'ab' });
      expect(long.Credentials!.Expiration).toEqual(new Date('2030-01-01T12:00:00Z'));
      const tags = Array.from({ length: 50 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
      const ten = Array.from({ length: 10 }, (_, i) => ({ arn: `arn:aws:iam::123456789012:policy/p${i}` }));
      const out = await assume({ DurationSeconds: 900, Tags: tags, PolicyArns: ten, ExternalId: 'ab' });
      expect(Object.keys(fake.sessions.get(out.Credentials!.AccessKeyId!)!.tags)).toHaveLength(50);
    });
  });

  describe('authentication', () => {
    it('rejects a bad secret with SignatureDoesNotMatch', async () => {
      const err = await failure(
        sts({ accessKeyId: fake.credentials.accessKeyId, secretAccessKey: 'not-the-secret' }).send(new GetCallerIdentityCommand({})),
      );
      expect(err).toMatchObject({ name: 'SignatureDoesNotMatch', Code: 'SignatureDoesNotMatch', status: 403 });
    });

    it('rejects an unknown access key with InvalidClientTokenId', async () => {
      const err = await failure(sts({ accessKeyId: 'AKIAUNKNOWNUNKNOWN00', secretAccessKey: 'x' }).send(new GetCallerIdentityCommand({})));
      expect(err).toMatchObject({ name: 'InvalidClientTokenId', status: 403 });
    });

    it('rejects a signature dated more than 15 minutes ago', async () => {
      const { status, xml } = await raw('sts', { Action: 'GetCallerIdentity', Version: '2011-06-15' }, fake.credentials, new Date(Date.now() - 16 * 60_000));
      expect(status).toBe(403);
      expect(xml.ErrorResponse.Error.Code).toBe('SignatureDoesNotMatch');
      expect(xml.ErrorResponse.Error.Message).toMatch(/^Signature expired: \d{8}T\d{6}Z is now earlier than/);
    });

    it('knows the broker by its own keys', async () => {
      const me = await sts(fake.credentials).send(new GetCallerIdentityCommand({}));
      expect(me).toMatchObject({ Arn: 'arn:aws:iam::123456789012:user/tasklease-broker', Account: '123456789012' });
      expect(me.UserId).toMatch(/^AIDA/);
    });

    it('accepts session credentials only with their own token, and only until they expire', async () => {
      const out = await assume({ RoleSessionName: 'short', DurationSeconds: 900 });
      const creds = sessionCreds(out.Credentials);
      const me = await sts(creds).send(new GetCallerIdentityCommand({}));
      expect(me.Arn).toBe('arn:aws:sts::123456789012:assumed-role/tasklease-agent/short');
      expect(me.UserId).toBe(out.AssumedRoleUser!.AssumedRoleId);

      const wrongToken = await failure(sts({ ...creds, sessionToken: 'forged' }).send(new GetCallerIdentityCommand({})));
      expect(wrongToken).toMatchObject({ name: 'InvalidClientTokenId', status: 403 });
      const noToken = await failure(sts({ accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey }).send(new GetCallerIdentityCommand({})));
      expect(noToken.name).toBe('InvalidClientTokenId');

      clock.advance(900);
      const expired = await failure(sts(creds).send(new GetCallerIdentityCommand({})));
      expect(expired).toMatchObject({ Code: 'ExpiredToken', status: 403 });
      clock.set(new Date('2030-01-01T00:00:00Z'));
    });

    it('passes transitive tags down a role chain, and refuses passing one again', async () => {
      const first = await assume({ RoleSessionName: 'tagged', Tags: [{ Key: 'agent', Value: 'a1' }, { Key: 'task', Value: 't1' }], TransitiveTagKeys: ['agent'] });
      const chained = await assume({ RoleSessionName: 'chained', Tags: [{ Key: 'task', Value: 't2' }] }, sessionCreds(first.Credentials));
      const session = fake.sessions.get(chained.Credentials!.AccessKeyId!)!;
      expect(session.tags).toEqual({ agent: 'a1', task: 't2' });
      expect(session.transitiveTagKeys).toEqual(['agent']);
      const again = await failure(assume({ RoleSessionName: 'again', Tags: [{ Key: 'agent', Value: 'a2' }] }, sessionCreds(first.Credentials)));
      expect(again).toMatchObject({ Code: 'InvalidParameterValue', status: 400 });
    });

    it('limits role chaining to one hour', async () => {
      const out = await assume({ RoleSessionName: 'chain-1' });
      const err = await failure(assume({ RoleSessionName: 'chain-2', RoleArn: LONG_ROLE, DurationSeconds: 3601 }, sessionCreds(out.Credentials)));
      expect(err.message).toContain('1 hour session limit for roles assumed by role chaining');
      const chained = await assume({ RoleSessionName: 'chain-2', RoleArn: LONG_ROLE }, sessionCreds(out.Credentials));
      expect(fake.sessions.get(chained.Credentials!.AccessKeyId!)!.issuedTo).toBe(out.Credentials!.AccessKeyId);
    });
  });

  describe('IAM inline role policies', () => {
    const doc = (sid: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: sid, Effect: 'Deny', Action: '*', Resource: '*', ...extra }] });

    it('puts, gets (URL-encoded, as IAM returns it), lists and deletes', async () => {
      const client = iam(fake.credentials);
      const document = doc('One', { Condition: { StringEquals: { 'aws:SourceIdentity': ['a b&c'] } } });
      await client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-1', PolicyDocument: document }));
      await client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-0', PolicyDocument: doc('Zero') }));
      expect(fake.rolePolicies(ROLE).get('revoke-1')).toBe(document);

      const got = await client.send(new GetRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-1' }));
      expect(got.RoleName).toBe('tasklease-agent');
      expect(got.PolicyDocument).toMatch(/^%7B%22Version%22%3A%222012-10-17%22/);
      expect(got.PolicyDocument).toContain('a%20b%26c');
      expect(decodeURIComponent(got.PolicyDocument!)).toBe(document);

      const listed = await client.send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }));
      expect(listed).toMatchObject({ PolicyNames: ['revoke-0', 'revoke-1'], IsTruncated: false });
      const page1 = await client.send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent', MaxItems: 1 }));
      expect(page1).toMatchObject({ PolicyNames: ['revoke-0'], IsTruncated: true });
      const page2 = await client.send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent', MaxItems: 1, Marker: page1.Marker }));
      expect(page2).toMatchObject({ PolicyNames: ['revoke-1'], IsTruncated: false });

      await client.send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-1' }));
      await client.send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-0' }));
      const gone = await failure(client.send(new GetRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-1' })));
      expect(gone).toMatchObject({ Code: 'NoSuchEntity', name: 'NoSuchEntityException', status: 404 });
      const again = await failure(client.send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'revoke-1' })));
      expect(again).toMatchObject({ Code: 'NoSuchEntity', status: 404 });
      expect((await client.send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }))).PolicyNames).toEqual([]);
    });

    it('answers NoSuchEntity for an unknown role and MalformedPolicyDocument for a non-JSON document', async () => {
      const client = iam(fake.credentials);
      const noRole = await failure(client.send(new ListRolePoliciesCommand({ RoleName: 'nobody' })));
      expect(noRole).toMatchObject({ Code: 'NoSuchEntity', status: 404, message: 'The role with name nobody cannot be found.' });
      const bad = await failure(client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'p', PolicyDocument: 'deny all' })));
      expect(bad).toMatchObject({ Code: 'MalformedPolicyDocument', name: 'MalformedPolicyDocumentException', status: 400 });
      const principal = await failure(
        client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'p', PolicyDocument: doc('P', { Principal: '*' }) })),
      );
      expect(principal.message).toBe('Policy document should not specify a principal.');
    });

    it('enforces the 10,240-character aggregate (whitespace not counted) with LimitExceeded', async () => {
      const client = iam(fake.credentials);
      const withValues = (n: number, pad = '') =>
        JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Deny', Action: '*', Resource: '*', Condition: { StringEquals: { 'aws:SourceIdentity': Array.from({ length: n }, (_, i) => `lease-${String(i).padStart(6, '0')}`) } } }] }, null, pad);
      const huge = await failure(client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-long', PolicyName: 'huge', PolicyDocument: withValues(700) })));
      expect(huge).toMatchObject({ Code: 'LimitExceeded', name: 'LimitExceededException', status: 409 });
      expect(huge.message).toBe('Maximum policy size of 10240 bytes exceeded for role tasklease-long');

      // ~6,000 characters, pretty-printed with lots of whitespace: fits, because whitespace is free.
      const spacious = withValues(400, '          ');
      expect(spacious.length).toBeGreaterThan(10_240);
      await client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-long', PolicyName: 'a', PolicyDocument: spacious }));
      // A second ~6,000-character policy pushes the role's total over.
      const second = await failure(client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-long', PolicyName: 'b', PolicyDocument: withValues(400) })));
      expect(second.Code).toBe('LimitExceeded');
      // Replacing the same policy counts only the new version.
      await client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-long', PolicyName: 'a', PolicyDocument: withValues(500) }));
      await client.send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-long', PolicyName: 'a' }));
    });
  });

  describe('revocation by inline Deny statements', () => {
    it('a session works until a Deny on its aws:SourceIdentity is put on its role, then is AccessDenied', async () => {
      const victim = await assume({ RoleSessionName: 'victim', SourceIdentity: 'lease-victim' });
      const bystander = await assume({ RoleSessionName: 'bystander', SourceIdentity: 'lease-bystander' });
      const asVictim = sessionCreds(victim.Credentials);
      const asBystander = sessionCreds(bystander.Credentials);

      await iam(asVictim).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }));
      expect(fake.isDenied(asVictim.accessKeyId)).toBe(false);

      const revoke = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Action: '*', Resource: '*', Condition: { StringEquals: { 'aws:SourceIdentity': ['lease-victim'] } } }],
      });
      await iam(fake.credentials).send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'tasklease-revoked', PolicyDocument: revoke }));

      expect(fake.isDenied(asVictim.accessKeyId)).toBe(true);
      expect(fake.isDenied(asBystander.accessKeyId)).toBe(false);
      const denied = await failure(iam(asVictim).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' })));
      expect(denied).toMatchObject({ name: 'AccessDenied', Code: 'AccessDenied', status: 403 });
      expect(denied.message).toContain('iam:ListRolePolicies');
      expect(denied.message).toContain('with an explicit deny in an identity-based policy');
      const chain = await failure(assume({ RoleSessionName: 'escape' }, asVictim));
      expect(chain.Code).toBe('AccessDenied');
      await iam(asBystander).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }));
      // As in AWS, GetCallerIdentity needs no permission and cannot be denied.
      expect((await sts(asVictim).send(new GetCallerIdentityCommand({}))).Arn).toContain('/victim');

      await iam(fake.credentials).send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'tasklease-revoked' }));
      expect(fake.isDenied(asVictim.accessKeyId)).toBe(false);
    });

    it('DateLessThan on aws:TokenIssueTime denies sessions issued before the cut-off only', async () => {
      const before = await assume({ RoleSessionName: 'before' });
      clock.advance(60);
      const cutoff = clock.now().toISOString();
      clock.advance(1);
      const after = await assume({ RoleSessionName: 'after' });
      const revoke = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateLessThan: { 'aws:TokenIssueTime': cutoff } } }],
      });
      await iam(fake.credentials).send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'cutoff', PolicyDocument: revoke }));
      expect(fake.isDenied(before.Credentials!.AccessKeyId!)).toBe(true);
      expect(fake.isDenied(after.Credentials!.AccessKeyId!)).toBe(false);
      expect((await failure(iam(sessionCreds(before.Credentials)).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' })))).Code).toBe('AccessDenied');
      await iam(sessionCreds(after.Credentials)).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }));
      await iam(fake.credentials).send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'cutoff' }));
      clock.set(new Date('2030-01-01T00:00:00Z'));
    });

    it('a session policy limits every request its session makes: an Allow must match, and a Deny on aws:CurrentTime ends it', async () => {
      const until = new Date(clock.now().getTime() + 120_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const policy = (allow: object[]) =>
        JSON.stringify({ Version: '2012-10-17', Statement: [...allow, { Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateGreaterThan: { 'aws:CurrentTime': until } } }] });
      const open = await assume({ RoleSessionName: 'bounded', Policy: policy([{ Effect: 'Allow', Action: '*', Resource: '*' }]) });
      const narrow = await assume({ RoleSessionName: 'narrow', Policy: policy([{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }]) });
      const list = (c: Creds) => iam(c).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }));
      await list(sessionCreds(open.Credentials));
      const refused = await failure(list(sessionCreds(narrow.Credentials)));
      expect(refused).toMatchObject({ Code: 'AccessDenied', status: 403 });
      expect(refused.message).toMatch(/because no session policy allows the action$/);
      clock.advance(120);
      await list(sessionCreds(open.Credentials)); // DateGreaterThan: at the instant itself, still allowed
      clock.advance(1);
      expect((await failure(list(sessionCreds(open.Credentials)))).Code).toBe('AccessDenied');
      // Nor can it chain into a fresh session (sts:AssumeRole is a request it makes); GetCallerIdentity can't be denied.
      expect((await failure(assume({ RoleSessionName: 'chained' }, sessionCreds(open.Credentials)))).Code).toBe('AccessDenied');
      await sts(sessionCreds(open.Credentials)).send(new GetCallerIdentityCommand({}));
      clock.set(new Date('2030-01-01T00:00:00Z'));
    });

    it('ForAnyValue:StringEquals and an action filter are understood', async () => {
      const s = await assume({ RoleSessionName: 'any', SourceIdentity: 'lease-any' });
      fake.rolePolicies(ROLE).set(
        'only-iam-writes',
        JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Deny', Action: 'iam:Put*', Resource: '*', Condition: { 'ForAnyValue:StringEquals': { 'aws:SourceIdentity': ['x', 'lease-any'] } } }] }),
      );
      expect(fake.isDenied(s.Credentials!.AccessKeyId!)).toBe(true);
      expect(fake.isDenied(s.Credentials!.AccessKeyId!, undefined, 'iam:PutRolePolicy')).toBe(true);
      expect(fake.isDenied(s.Credentials!.AccessKeyId!, undefined, 'iam:ListRolePolicies')).toBe(false);
      fake.rolePolicies(ROLE).delete('only-iam-writes');
    });
  });

  describe('eventual consistency', () => {
    it('staleReads: GetRolePolicy answers the version before the latest write, then the latest again', async () => {
      const doc = (sid: string) => JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: sid, Effect: 'Deny', Action: 'iam:Nothing', Resource: '*' }] });
      const client = iam(fake.credentials);
      const get = async () => decodeURIComponent((await client.send(new GetRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'ec' }))).PolicyDocument!);
      await client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'ec', PolicyDocument: doc('One') }));
      fake.staleReads(1);
      expect((await failure(get())).Code).toBe('NoSuchEntity');
      expect(await get()).toBe(doc('One'));
      await client.send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'ec', PolicyDocument: doc('Two') }));
      fake.staleReads(1);
      expect(await get()).toBe(doc('One'));
      expect(await get()).toBe(doc('Two'));
      await client.send(new DeleteRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'ec' }));
    });
  });

  describe('policy variables', () => {
    it('under Version 2012-10-17, ${*} ${?} ${$} are literal characters, not wildcards; under 2008-10-17 they are plain text', async () => {
      const s = await assume({
        RoleSessionName: 'escapes',
        SourceIdentity: 'lease-esc',
        Tags: [{ Key: 'team', Value: 'ab' }],
        Policy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::r/a${*}b${?}${$}/*' }] }),
      });
      const key = s.Credentials!.AccessKeyId!;
      expect(fake.sessionPolicyAllows(key, 's3:GetObject', 'arn:aws:s3:::r/a*b?$/x')).toBe(true);
      expect(fake.sessionPolicyAllows(key, 's3:GetObject', 'arn:aws:s3:::r/aXXbY$/x')).toBe(false);
      expect(fake.sessionPolicyAllows(key, 's3:PutObject', 'arn:aws:s3:::r/a*b?$/x')).toBe(false);
      const deny = (version: string, value: string) =>
        JSON.stringify({ Version: version, Statement: [{ Effect: 'Deny', Action: '*', Resource: '*', Condition: { StringLike: { 'aws:PrincipalTag/team': value } } }] });
      const policies = fake.rolePolicies(ROLE);
      // STS refuses `*` in tag values, so an escaped `*` can never match one; a bare `*` is a wildcard.
      policies.set('esc', deny('2012-10-17', 'a${*}'));
      expect(fake.isDenied(key)).toBe(false);
      policies.set('esc', deny('2012-10-17', 'a*'));
      expect(fake.isDenied(key)).toBe(true);
      policies.set('esc', deny('2008-10-17', 'a${?}'));
      expect(fake.isDenied(key)).toBe(false);
      policies.set('esc', deny('2008-10-17', 'a?'));
      expect(fake.isDenied(key)).toBe(true);
      policies.delete('esc');
    });
  });

  describe('failNext', () => {
    it('injects Throttling, surfaced by the SDK as name Throttling', async () => {
      fake.failNext('sts', 'AssumeRole', { status: 400, code: 'Throttling', message: 'Rate exceeded' });
      const err = await failure(assume({ RoleSessionName: 'throttled' }));
      expect(err).toMatchObject({ name: 'Throttling', Code: 'Throttling', status: 400, message: 'Rate exceeded' });
      await assume({ RoleSessionName: 'not-throttled' });
    });

    it('injects AccessDenied and 500s; the SDK’s default retries ride out two 500s', async () => {
      fake.failNext('iam', 'PutRolePolicy', { status: 403, code: 'AccessDenied', message: 'nope' });
      const denied = await failure(
        iam(fake.credentials).send(new PutRolePolicyCommand({ RoleName: 'tasklease-agent', PolicyName: 'p', PolicyDocument: '{}' })),
      );
      expect(denied).toMatchObject({ name: 'AccessDenied', status: 403 });

      fake.failNext('iam', '*', { status: 500, code: 'ServiceFailure', message: 'try again' }, 2);
      const mark = fake.calls.length;
      await iam(fake.credentials, 3).send(new ListRolePoliciesCommand({ RoleName: 'tasklease-agent' }));
      expect(fake.calls.slice(mark).map((c) => [c.action, c.status, c.errorCode])).toEqual([
        ['ListRolePolicies', 500, 'ServiceFailure'],
        ['ListRolePolicies', 500, 'ServiceFailure'],
        ['ListRolePolicies', 200, undefined],
      ]);
    });
  });
});
