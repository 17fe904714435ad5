import { DeleteRolePolicyCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import type { Clock } from '../clock.js';
import type { AwsRoleConfig, AwsStsBackendConfig } from '../config/aws.js';
import type { RoleConfig } from '../config/schema.js';
import { actorOf } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { clampDuration, sessionNameFor, sessionTags } from './aws-names.js';
import { boundedSessionPolicy, renderSessionPolicy } from './aws-session-policy.js';
import { AGENT_TAG, planRevocationPolicy, ROLE_WIDE } from './aws-revocation.js';
import type { AwsRevocationStore } from './aws-revocation-store.js';
import { BackendError, type Backend } from './types.js';

export interface AwsStsBackendDeps {
  name: string;
  config: AwsStsBackendConfig;
  role: (name: string) => RoleConfig | undefined;
  /** The roles that use this backend (housekeeping prunes their roles' deny policies). */
  roleNames: () => string[];
  clock: Clock;
  log: Logger;
  /** Orders the writes of one role's deny policy across replicas (an advisory lock), so the last write renders the newest rows. */
  lock: <T>(key: string, fn: () => Promise<T>) => Promise<T>;
  /** The revoked sessions and cut-offs each role's deny policy is rendered from. */
  store: AwsRevocationStore;
  /** Counts cut-offs (tasklease_aws_revocation_cutoffs_total). */
  metrics?: Pick<Metrics, 'awsRevocationCutoffs'>;
  /** The broker's own AWS credentials; the SDK's default chain (env, web identity, container, instance) when absent. */
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** How often housekeeping prunes expired entries and rewrites each role's deny policy. */
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

/** How long an unchanged deny policy goes unwritten (IAM write rate limits are per account; CloudTrail records each write). */
const REWRITE_UNCHANGED_MS = 3600_000;

const roleNameOf = (arn: string) => arn.slice(arn.lastIndexOf('/') + 1);

/**
 * Credentials from STS AssumeRole, bound to one lease: the session name and
 * SourceIdentity are derived from the lease id (SourceIdentity persists
 * through role chaining and shows in CloudTrail), session tags name task,
 * lease and agent. STS sessions last at least 900 s, so every session
 * policy ends with a Deny once `aws:CurrentTime` is past the lease's end:
 * the session is dead at AWS when its lease ends, whatever the broker does,
 * and `backend_expires_at` is that end. Early revocation records the
 * session's SourceIdentity in PostgreSQL and writes the role's whole Deny
 * policy from there (aws-revocation.ts); a lease that simply ran out needs
 * no entry.
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
  /** Callers waiting for a write of each role's policy that starts after they asked. */
  const pending = new Map<string, { resolve: () => void; reject: (e: unknown) => void }[]>();
  const draining = new Set<string>();
  let lastPrune = 0;
  /** The document this process last wrote per role ('' for deleted) and when: an unchanged one is not written again within the hour. */
  const lastWritten = new Map<string, { text: string; at: number }>();
  /** Roles whose aws_tagged_since this process has made sure of. */
  const tagged = new Set<string>();

  /** Before every write: entries an earlier version (or an older replica) kept only in IAM, which is never read, come from the leases. */
  function adopt(roleArn: string, now: Date): Promise<void> {
    const roles = deps.roleNames().flatMap((role) => {
      const aws = deps.role(role)?.aws;
      return aws?.role_arn === roleArn ? [{ role, roleArn }] : [];
    });
    return roles.length ? deps.store.adoptLeases(deps.name, roles, now) : Promise.resolve();
  }

  /** A cut-off on a role must outlast every session any of its tasklease roles can have: the longest among them. */
  const longestSession = (arn: string) =>
    Math.max(3600, ...deps.roleNames().map((n) => deps.role(n)?.aws).filter((a) => a?.role_arn === arn).map((a) => a!.max_session_duration));

  const awsRole = (name: string): AwsRoleConfig => {
    const aws = deps.role(name)?.aws;
    if (!aws) throw new BackendError('aws_role_missing', `role '${name}' has no aws settings`, false);
    return aws;
  };

  /**
   * Renders the role's whole deny policy from the database and writes it; IAM
   * is never read, so a stale read cannot drop an entry. Cut-offs the budget
   * forces are recorded (with their audit events) before the write; a
   * LimitExceeded from IAM (other inline policies share the role's quota)
   * retries with a smaller budget.
   */
  async function writeDeny(roleArn: string): Promise<void> {
    const RoleName = roleNameOf(roleArn);
    const PolicyName = revocation!.policy_name;
    const maxSession = longestSession(roleArn);
    const now = deps.clock.now();
    await adopt(roleArn, now);
    for (const budget of [revocation!.max_policy_chars, Math.floor(revocation!.max_policy_chars / 2), 0]) {
      const { entries, cutoffs } = await deps.store.live(roleArn, now);
      const { document, added } = planRevocationPolicy(entries, cutoffs, now, budget, maxSession);
      if (added.length > 0) {
        await deps.store.addCutoffs(roleArn, deps.name, added, now);
        for (const c of added) {
          const scope = c.agent === ROLE_WIDE ? 'role' : 'agent';
          deps.metrics?.awsRevocationCutoffs.inc({ role_arn: roleArn, scope, agent: c.agents[0] ?? '' });
          deps.log.warn(
            { roleArn, scope, agents: c.agents.slice(0, 20), entries: c.entries, cutoffAt: c.cutoffAt.toISOString() },
            scope === 'role'
              ? 'revocation policy full: denying every session of the role issued before the cut-off'
              : "revocation policy full: denying this agent's sessions issued before the cut-off",
          );
        }
      }
      const text = document ? JSON.stringify(document) : '';
      // Unchanged since this process wrote it: any later write by another replica rendered at least as much. Rewritten
      // hourly anyway, in case IAM applied two replicas' writes out of order and the one that would notice is gone.
      const last = lastWritten.get(roleArn);
      if (last?.text === text && now.getTime() - last.at < REWRITE_UNCHANGED_MS) return;
      lastWritten.delete(roleArn);
      try {
        if (document) await iam.send(new PutRolePolicyCommand({ RoleName, PolicyName, PolicyDocument: text }));
        else await iam.send(new DeleteRolePolicyCommand({ RoleName, PolicyName })).catch((err: unknown) => {
          if (!/^NoSuchEntity/.test((err as { name?: string }).name ?? '')) throw err;
        });
        lastWritten.set(roleArn, { text, at: now.getTime() });
        return;
      } catch (err) {
        if (budget === 0 || !/^LimitExceeded/.test((err as { name?: string }).name ?? '')) throw err;
      }
    }
  }

  /** Writes of one role run one at a time in this replica (callers who asked meanwhile share the next); the lock orders replicas. */
  async function drain(roleArn: string): Promise<void> {
    draining.add(roleArn);
    try {
      for (let waiters = pending.get(roleArn); waiters; waiters = pending.get(roleArn)) {
        pending.delete(roleArn);
        try {
          await deps.lock(`tl:aws-deny:${roleArn}`, () => writeDeny(roleArn));
          for (const w of waiters) w.resolve();
        } catch (err) {
          for (const w of waiters) w.reject(toBackendError(err));
        }
      }
    } finally {
      draining.delete(roleArn);
    }
  }

  /** Resolves after a write of the role's policy that read the database after this call. */
  function rewrite(roleArn: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiters = pending.get(roleArn) ?? [];
      waiters.push({ resolve, reject });
      pending.set(roleArn, waiters);
      if (!draining.has(roleArn)) void drain(roleArn);
    });
  }

  return {
    name: deps.name,
    type: 'aws-sts',
    async mint({ leaseId, taskId, role, identity, ttlSeconds, now }) {
      const aws = awsRole(role.name);
      const sessionName = sessionNameFor(leaseId);
      const values = { task: taskId, lease: leaseId, agent: actorOf(identity) };
      const leaseEnd = new Date(now.getTime() + ttlSeconds * 1000);
      const rendered = aws.session_policy ? renderSessionPolicy(aws.session_policy, values) : undefined;
      if (!tagged.has(aws.role_arn)) {
        // Before the first session of this version: leases issued from now on have the transitive tag.
        // A database error here is the database's (503), not AWS's: it stays outside the AWS error mapping.
        await deps.store.markTagged(aws.role_arn, now);
        tagged.add(aws.role_arn);
      }
      let out;
      try {
        out = await sts.send(
          new AssumeRoleCommand({
            RoleArn: aws.role_arn,
            RoleSessionName: sessionName,
            SourceIdentity: sessionName,
            DurationSeconds: clampDuration(ttlSeconds, aws),
            ExternalId: aws.external_id,
            // Dead at AWS once the lease has ended, even if the broker is gone: DurationSeconds is at least 900.
            Policy: JSON.stringify(boundedSessionPolicy(rendered, leaseEnd, aws.policy_arns.length > 0)),
            PolicyArns: aws.policy_arns.length ? aws.policy_arns.map((arn) => ({ arn })) : undefined,
            Tags: sessionTags(aws, values),
            // Chained sessions keep the agent tag, so a per-agent cut-off (StringEquals) matches them too.
            TransitiveTagKeys: [AGENT_TAG],
          }),
        );
      } catch (err) {
        throw toBackendError(err);
      }
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) throw new BackendError('aws_bad_response', 'STS answered without credentials', true);
      const expiration = new Date(c.Expiration);
      // The session policy ends the session at the lease's end (or AWS does, earlier).
      const expiresAt = expiration.getTime() > now.getTime() && expiration < leaseEnd ? expiration : leaseEnd;
      return {
        credentials: {
          type: 'aws',
          AccessKeyId: c.AccessKeyId,
          SecretAccessKey: c.SecretAccessKey,
          SessionToken: c.SessionToken,
          Expiration: expiresAt.toISOString(), // when it stops working: the session policy's bound, or AWS's expiry
          AssumedRoleArn: out.AssumedRoleUser?.Arn,
          Region: config.region,
        },
        ref: c.AccessKeyId,
        expiresAt,
        // Without the deny policy nothing ends it before the lease's end: said plainly on the lease.
        revocable: revocation !== undefined,
      };
    },

    /** Without revocation configured there is nothing to call: the lease already says the credential lives until its AWS expiry. */
    async revoke({ leaseId, role, agent, backendExpiresAt }) {
      if (!revocation) return;
      const now = deps.clock.now();
      if (backendExpiresAt.getTime() <= now.getTime()) return; // AWS has ended it already
      const aws = awsRole(role);
      // Committed before the write that carries it: whichever replica writes next renders it.
      await deps.store.add(aws.role_arn, leaseId, { sourceIdentity: sessionNameFor(leaseId), agent, expiresAt: backendExpiresAt, createdAt: now });
      await rewrite(aws.role_arn);
    },

    async housekeeping(now) {
      if (!revocation || now.getTime() - lastPrune < (deps.pruneIntervalSeconds ?? 300) * 1000) return;
      lastPrune = now.getTime();
      await deps.store.prune(now);
      const arns = new Set(deps.roleNames().flatMap((name) => deps.role(name)?.aws?.role_arn ?? []));
      for (const arn of arns) {
        await rewrite(arn).catch((err: unknown) => deps.log.warn({ roleArn: arn, code: toBackendError(err).code }, 'could not rewrite the revocation policy'));
      }
    },
  };
}
