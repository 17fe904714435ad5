import { DeleteRolePolicyCommand, GetRolePolicyCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { Clock } from '../clock.js';
import type { AwsRoleConfig, AwsStsBackendConfig } from '../config/aws.js';
import type { RoleConfig } from '../config/schema.js';
import { actorOf } from '../identity/types.js';
import type { Logger } from '../log.js';
import { clampDuration, sessionNameFor, sessionTags } from './aws-names.js';
import { renderSessionPolicy } from './aws-session-policy.js';
import { mergeRevocations, parsePolicy, type RevocationEntry } from './aws-revocation.js';
import { BackendError, type Backend } from './types.js';

export interface AwsStsBackendDeps {
  name: string;
  config: AwsStsBackendConfig;
  role: (name: string) => RoleConfig | undefined;
  /** The roles that use this backend (housekeeping prunes their roles' deny policies). */
  roleNames: () => string[];
  clock: Clock;
  log: Logger;
  /** Serializes read-modify-write of one role's deny policy across replicas (an advisory lock). */
  lock: <T>(key: string, fn: () => Promise<T>) => Promise<T>;
  /** The broker's own AWS credentials; the SDK's default chain (env, web identity, container, instance) when absent. */
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** How often housekeeping re-reads each role's deny policy to prune expired entries. */
  pruneIntervalSeconds?: number;
}

/** AWS errors as stable codes. Messages are ours: nothing from the request or AWS's text is echoed. */
export function toBackendError(err: unknown): BackendError {
  const name = (err as { name?: string })?.name ?? '';
  if (/^AccessDenied/.test(name)) return new BackendError('aws_access_denied', "AWS denied the request: check the broker's IAM permissions and the role's trust policy", false);
  if (/^MalformedPolicyDocument/.test(name)) return new BackendError('aws_malformed_policy', 'AWS refused a policy document as malformed', false);
  if (/^PackedPolicyTooLarge/.test(name)) return new BackendError('aws_policy_too_large', 'the session policy and tags exceed what STS can pack', false);
  if (/^(ValidationError|InvalidParameter)/.test(name)) return new BackendError('aws_validation', 'AWS refused a request parameter', false);
  if (/^(LimitExceeded)/.test(name)) return new BackendError('aws_limit_exceeded', 'an IAM limit was reached', false);
  if (/^(NoSuchEntity)/.test(name)) return new BackendError('aws_no_such_entity', 'the IAM role does not exist', false);
  if (/^(Throttling|RequestLimitExceeded|TooManyRequests)/.test(name)) return new BackendError('aws_throttled', 'AWS is throttling requests', true);
  if (/^RegionDisabled/.test(name)) return new BackendError('aws_region_disabled', 'STS is not activated in this region', true);
  if (/^(ExpiredToken|InvalidClientTokenId|SignatureDoesNotMatch|UnrecognizedClient)/.test(name)) {
    return new BackendError('aws_broker_credentials', "the broker's own AWS credentials were refused", true);
  }
  return new BackendError('aws_unavailable', 'AWS could not be reached', true);
}

const roleNameOf = (arn: string) => arn.slice(arn.lastIndexOf('/') + 1);

/**
 * Credentials from STS AssumeRole, bound to one lease: the session name and
 * SourceIdentity are derived from the lease id (SourceIdentity persists
 * through role chaining and shows in CloudTrail), session tags name task,
 * lease and agent. STS sessions last at least 900 s; a shorter lease is
 * honest about the gap (backend_expires_at) and relies on early revocation,
 * which writes the session's SourceIdentity into a Deny on the role.
 */
export function createAwsStsBackend(deps: AwsStsBackendDeps): Backend {
  const { config } = deps;
  const common = {
    region: config.region,
    maxAttempts: 3,
    // No AWS call may hang a request or a sweep (nor hold a revocation lock) indefinitely.
    requestHandler: { requestTimeout: 10_000, connectionTimeout: 5_000 },
    ...(deps.credentials ? { credentials: deps.credentials } : {}),
  };
  const sts = new STSClient({ ...common, ...(config.sts_endpoint ? { endpoint: config.sts_endpoint } : {}) });
  const iam = new IAMClient({ ...common, ...(config.iam_endpoint ? { endpoint: config.iam_endpoint } : {}) });
  const revocation = config.revocation;
  const pending = new Map<string, { entries: RevocationEntry[]; waiters: { resolve: () => void; reject: (e: unknown) => void }[] }>();
  const draining = new Set<string>();
  let lastPrune = 0;

  /** A cut-off on a role must outlast every session any of its tasklease roles can have: the longest among them. */
  const longestSession = (arn: string) =>
    Math.max(3600, ...deps.roleNames().map((n) => deps.role(n)?.aws).filter((a) => a?.role_arn === arn).map((a) => a!.max_session_duration));

  const awsRole = (name: string): AwsRoleConfig => {
    const aws = deps.role(name)?.aws;
    if (!aws) throw new BackendError('aws_role_missing', `role '${name}' has no aws settings`, false);
    return aws;
  };

  /** Reads the role's deny policy, merges, writes it back; a LimitExceeded from IAM forces the cut-off. */
  async function writeDeny(roleArn: string, entries: RevocationEntry[], maxSession: number): Promise<void> {
    const RoleName = roleNameOf(roleArn);
    const PolicyName = revocation!.policy_name;
    let current;
    try {
      const got = await iam.send(new GetRolePolicyCommand({ RoleName, PolicyName }));
      current = parsePolicy(got.PolicyDocument ? decodeURIComponent(got.PolicyDocument) : undefined);
    } catch (err) {
      if ((err as { name?: string }).name !== 'NoSuchEntityException' && (err as { name?: string }).name !== 'NoSuchEntity') throw err;
      current = parsePolicy(undefined);
    }
    const now = deps.clock.now();
    for (const budget of [revocation!.max_policy_chars, 0]) {
      const { document, cutoffApplied } = mergeRevocations(current, entries, now, budget, maxSession);
      if (cutoffApplied) deps.log.warn({ roleArn }, 'revocation policy full: denying every session of the role issued before now');
      try {
        if (document) await iam.send(new PutRolePolicyCommand({ RoleName, PolicyName, PolicyDocument: JSON.stringify(document) }));
        else if (current.Statement.length > 0) await iam.send(new DeleteRolePolicyCommand({ RoleName, PolicyName }));
        return;
      } catch (err) {
        const name = (err as { name?: string }).name ?? '';
        if (budget === 0 || !/^LimitExceeded/.test(name)) throw err;
      }
    }
  }

  /** Revocations of one role are merged into one write while another is in flight; the lock orders replicas. */
  async function drain(roleArn: string, maxSession: number): Promise<void> {
    draining.add(roleArn);
    try {
      for (let batch = pending.get(roleArn); batch; batch = pending.get(roleArn)) {
        pending.delete(roleArn);
        try {
          await deps.lock(`tl:aws-deny:${roleArn}`, () => writeDeny(roleArn, batch!.entries, maxSession));
          for (const w of batch.waiters) w.resolve();
        } catch (err) {
          for (const w of batch.waiters) w.reject(toBackendError(err));
        }
      }
    } finally {
      draining.delete(roleArn);
    }
  }

  function denySession(roleArn: string, entry: RevocationEntry, maxSession: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const batch = pending.get(roleArn) ?? { entries: [], waiters: [] };
      batch.entries.push(entry);
      batch.waiters.push({ resolve, reject });
      pending.set(roleArn, batch);
      if (!draining.has(roleArn)) void drain(roleArn, maxSession);
    });
  }

  return {
    name: deps.name,
    type: 'aws-sts',
    async mint({ leaseId, taskId, role, identity, ttlSeconds, now }) {
      const aws = awsRole(role.name);
      const sessionName = sessionNameFor(leaseId);
      const values = { task: taskId, lease: leaseId, agent: actorOf(identity) };
      let out;
      try {
        out = await sts.send(
          new AssumeRoleCommand({
            RoleArn: aws.role_arn,
            RoleSessionName: sessionName,
            SourceIdentity: sessionName,
            DurationSeconds: clampDuration(ttlSeconds, aws),
            ExternalId: aws.external_id,
            Policy: aws.session_policy ? JSON.stringify(renderSessionPolicy(aws.session_policy, values)) : undefined,
            PolicyArns: aws.policy_arns.length ? aws.policy_arns.map((arn) => ({ arn })) : undefined,
            Tags: sessionTags(aws, values),
          }),
        );
      } catch (err) {
        throw toBackendError(err);
      }
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) throw new BackendError('aws_bad_response', 'STS answered without credentials', true);
      const expiresAt = new Date(c.Expiration);
      return {
        credentials: {
          type: 'aws',
          AccessKeyId: c.AccessKeyId,
          SecretAccessKey: c.SecretAccessKey,
          SessionToken: c.SessionToken,
          Expiration: expiresAt.toISOString(),
          AssumedRoleArn: out.AssumedRoleUser?.Arn,
          Region: config.region,
        },
        ref: c.AccessKeyId,
        expiresAt: expiresAt.getTime() > now.getTime() ? expiresAt : new Date(now.getTime() + ttlSeconds * 1000),
        revocable: revocation !== undefined,
      };
    },

    /** Without revocation configured there is nothing to call: the lease already says the credential lives until its AWS expiry. */
    async revoke({ leaseId, role, backendExpiresAt }) {
      if (!revocation) return;
      if (backendExpiresAt.getTime() <= deps.clock.now().getTime()) return; // AWS has ended it already
      const aws = awsRole(role);
      await denySession(aws.role_arn, { sourceIdentity: sessionNameFor(leaseId), expiresAt: backendExpiresAt }, longestSession(aws.role_arn));
    },

    async housekeeping(now) {
      if (!revocation || now.getTime() - lastPrune < (deps.pruneIntervalSeconds ?? 300) * 1000) return;
      lastPrune = now.getTime();
      const arns = new Map<string, number>();
      for (const name of deps.roleNames()) {
        const aws = deps.role(name)?.aws;
        if (aws) arns.set(aws.role_arn, Math.max(arns.get(aws.role_arn) ?? 0, aws.max_session_duration));
      }
      for (const [arn, maxSession] of arns) {
        await deps.lock(`tl:aws-deny:${arn}`, () => writeDeny(arn, [], maxSession)).catch((err: unknown) =>
          deps.log.warn({ roleArn: arn, code: toBackendError(err).code }, 'could not prune the revocation policy'),
        );
      }
    },
  };
}
