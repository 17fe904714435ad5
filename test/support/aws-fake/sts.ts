/**
 * STS: AssumeRole (with every documented request constraint) and
 * GetCallerIdentity. Constraints are from the service model
 * (codegen/sdk-codegen/aws-models/sts.json) and the AssumeRole reference:
 * RoleSessionName 2-64 `[\w+=,.@-]*`, SourceIdentity 2-64 same and no
 * `aws:` prefix, DurationSeconds 900-43200 and <= the role's
 * MaxSessionDuration, Policy 1-2048 `[\u0009\u000A\u000D\u0020-\u00FF]+`,
 * at most 10 PolicyArns, at most 50 Tags (key 1-128, value 0-256,
 * `[\p{L}\p{Z}\p{N}_.:/=+\-@]`), ExternalId 2-1224 `[\w+=,.@:/-]*`.
 */
import { deflateRawSync } from 'node:zlib';
import { policyGrammarError } from './policy.js';
import { AwsError, isoSeconds, keyId, secretKey, sessionTokenValue, type FakeRole, type FakeSession } from './state.js';
import { Violations, queryList } from './validate.js';
import type { XmlNode } from './xml.js';

export interface Caller {
  accessKeyId: string;
  arn: string;
  userId: string;
  account: string;
  /** Set when the request was signed with credentials STS issued. */
  session?: FakeSession;
}

export interface StsWorld {
  roles: Map<string, FakeRole>;
  sessions: Map<string, FakeSession>;
  /** Accounts whose roles trust the caller; undefined = every configured role's account. */
  trustedAccounts: Set<string> | undefined;
  now(): Date;
}

/** Bytes of compressed policy+tags that count as 100% PackedPolicySize (the real budget is unpublished). */
export const PACKED_BUDGET_BYTES = 1024;

const NAME_PATTERN = /^[\w+=,.@-]*$/;
const EXTERNAL_ID_PATTERN = /^[\w+=,.@:/-]*$/;
const ARN_PATTERN = /^[\u0009\u000A\u000D\u0020-\u007E\u0085\u00A0-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]+$/u;
const POLICY_PATTERN = /^[\u0009\u000A\u000D\u0020-\u00FF]+$/;
const TAG_KEY_PATTERN = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$/u;
const TAG_VALUE_PATTERN = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

function packedPercent(policy: string | undefined, policyArns: string[], tags: [string, string][]) {
  let minified = policy ?? '';
  try {
    if (policy !== undefined) minified = JSON.stringify(JSON.parse(policy));
  } catch {
    /* grammar is checked separately */
  }
  const policyBytes = policy === undefined && policyArns.length === 0 ? 0 : deflateRawSync(minified + policyArns.join('\n')).length;
  const tagBytes = tags.length === 0 ? 0 : deflateRawSync(tags.map(([k, v]) => `${k}=${v}`).join('\n')).length;
  return {
    percent: Math.ceil(((policyBytes + tagBytes) / PACKED_BUDGET_BYTES) * 100),
    tagsDominate: tagBytes > policyBytes,
  };
}

export function assumeRole(world: StsWorld, caller: Caller, params: Record<string, string>): Record<string, XmlNode> {
  const v = new Violations();
  const roleArn = params.RoleArn;
  const sessionName = params.RoleSessionName;
  const policy = params.Policy;
  const policyArns = queryList(params, 'PolicyArns').map((m) => m.arn ?? '');
  const tags = queryList(params, 'Tags').map((m) => [m.Key ?? '', m.Value ?? ''] as [string, string]);
  const transitive = queryList(params, 'TransitiveTagKeys').map((m) => m[''] ?? '');
  const sourceIdentity = params.SourceIdentity ?? caller.session?.sourceIdentity;

  if (v.required(roleArn, 'roleArn')) v.string(roleArn, 'roleArn', 20, 2048, ARN_PATTERN, '[\\u0009\\u000A\\u000D\\u0020-\\u007E\\u0085\\u00A0-\\uD7FF\\uE000-\\uFFFD\\u10000-\\u10FFFF]+');
  if (v.required(sessionName, 'roleSessionName')) v.string(sessionName, 'roleSessionName', 2, 64, NAME_PATTERN, '[\\w+=,.@-]*');
  v.list_(`[${policyArns.join(', ')}]`, policyArns.length, 'policyArns', 10);
  policyArns.forEach((arn, i) => v.string(arn, `policyArns.${i + 1}.member.arn`, 20, 2048, ARN_PATTERN, '[\\u0009\\u000A\\u000D\\u0020-\\u007E\\u0085\\u00A0-\\uD7FF\\uE000-\\uFFFD\\u10000-\\u10FFFF]+'));
  v.string(policy, 'policy', 1, 2048, POLICY_PATTERN, '[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+');
  v.range(params.DurationSeconds, 'durationSeconds', 900, 43200);
  v.list_(`[${tags.map(([k, val]) => `Tag(Key=${k}, Value=${val})`).join(', ')}]`, tags.length, 'tags', 50);
  tags.forEach(([k, val], i) => {
    v.string(k, `tags.${i + 1}.member.key`, 1, 128, TAG_KEY_PATTERN, '[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+');
    v.string(val, `tags.${i + 1}.member.value`, 0, 256, TAG_VALUE_PATTERN, '[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*');
  });
  v.list_(`[${transitive.join(', ')}]`, transitive.length, 'transitiveTagKeys', 50);
  transitive.forEach((k, i) => v.string(k, `transitiveTagKeys.${i + 1}.member`, 1, 128, TAG_KEY_PATTERN, '[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+'));
  v.string(params.ExternalId, 'externalId', 2, 1224, EXTERNAL_ID_PATTERN, '[\\w+=,.@:/-]*');
  v.string(params.SerialNumber, 'serialNumber', 9, 256, /^[\w+=/:,.@-]*$/, '[\\w+=/:,.@-]*');
  v.string(params.TokenCode, 'tokenCode', 6, 6, /^\d*$/, '[\\d]*');
  v.string(params.SourceIdentity, 'sourceIdentity', 2, 64, NAME_PATTERN, '[\\w+=,.@-]*');
  v.throwIfAny();

  if (params.SourceIdentity !== undefined && /^aws:/i.test(params.SourceIdentity)) {
    throw new AwsError(400, 'ValidationError', "SourceIdentity cannot begin with the prefix 'aws:', which is reserved for AWS internal use.");
  }
  const seen = new Set<string>();
  for (const [k] of tags) {
    if (/^aws:/i.test(k)) throw new AwsError(400, 'ValidationError', `Tag key '${k}' is invalid: tag keys cannot begin with the reserved prefix 'aws:'.`);
    if (seen.has(k.toLowerCase())) throw new AwsError(400, 'ValidationError', 'Duplicate tag keys found. Please note that Tag keys are case insensitive.');
    seen.add(k.toLowerCase());
  }
  for (const k of transitive) {
    if (!seen.has(k.toLowerCase())) throw new AwsError(400, 'ValidationError', `Transitive tag key '${k}' is not one of the session tags passed in the request.`);
  }
  // Role chaining: the caller's transitive tags pass to the new session (and stay transitive); they cannot be passed again.
  const inherited = caller.session ? caller.session.transitiveTagKeys.map((k) => [k, caller.session!.tags[k] ?? ''] as [string, string]) : [];
  for (const [k] of inherited) {
    if (seen.has(k.toLowerCase())) throw new AwsError(400, 'InvalidParameterValue', `Session tag key '${k}' is a transitive tag of the calling session and cannot be passed again.`);
  }

  const role = world.roles.get(roleArn!);
  const trusted = role !== undefined && (world.trustedAccounts === undefined || world.trustedAccounts.has(role.account));
  if (!role || !trusted || (role.externalId !== undefined && params.ExternalId !== role.externalId)) {
    throw new AwsError(403, 'AccessDenied', `User: ${caller.arn} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`);
  }

  const duration = params.DurationSeconds === undefined ? 3600 : Number(params.DurationSeconds);
  if (caller.session && duration > 3600) {
    throw new AwsError(400, 'ValidationError', 'The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.');
  }
  if (duration > role.maxSessionDuration) {
    throw new AwsError(400, 'ValidationError', 'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
  }
  if (policy !== undefined) {
    const grammar = policyGrammarError(policy);
    if (grammar !== undefined) throw new AwsError(400, 'MalformedPolicyDocument', grammar);
  }
  const packed = packedPercent(policy, policyArns, tags);
  if (packed.percent > 100) {
    throw new AwsError(
      400,
      'PackedPolicyTooLarge',
      packed.tagsDominate
        ? `Packed size of session tags consumes ${packed.percent}% of allotted space.`
        : `Packed policy consumes ${packed.percent}% of allotted space, please use smaller policy.`,
    );
  }

  const now = world.now();
  const issuedAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const session: FakeSession = {
    roleArn: role.arn,
    sessionName: sessionName!,
    tags: Object.fromEntries([...inherited, ...tags]),
    transitiveTagKeys: [...inherited.map(([k]) => k), ...transitive],
    expiration: new Date(issuedAt.getTime() + duration * 1000),
    issuedAt,
    policyArns,
    durationSeconds: duration,
    packedPolicySize: packed.percent,
    accessKeyId: keyId('ASIA'),
    secretAccessKey: secretKey(),
    sessionToken: sessionTokenValue(),
    issuedTo: caller.accessKeyId,
  };
  if (sourceIdentity !== undefined) session.sourceIdentity = sourceIdentity;
  if (policy !== undefined) session.policy = policy;
  if (params.ExternalId !== undefined) session.externalId = params.ExternalId;
  world.sessions.set(session.accessKeyId, session);

  const passedSessionData = policy !== undefined || policyArns.length > 0 || tags.length > 0;
  return {
    Credentials: {
      AccessKeyId: session.accessKeyId,
      SecretAccessKey: session.secretAccessKey,
      SessionToken: session.sessionToken,
      Expiration: isoSeconds(session.expiration),
    },
    AssumedRoleUser: {
      AssumedRoleId: `${role.roleId}:${session.sessionName}`,
      Arn: assumedRoleArn(role, session.sessionName),
    },
    PackedPolicySize: passedSessionData ? packed.percent : undefined,
    SourceIdentity: session.sourceIdentity,
  };
}

export function assumedRoleArn(role: FakeRole, sessionName: string): string {
  return `arn:aws:sts::${role.account}:assumed-role/${role.name}/${sessionName}`;
}

export function getCallerIdentity(caller: Caller): Record<string, XmlNode> {
  return { Arn: caller.arn, UserId: caller.userId, Account: caller.account };
}

