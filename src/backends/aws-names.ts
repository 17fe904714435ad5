import { STS_LIMITS, type AwsRoleConfig } from '../config/aws.js';
import { AGENT_TAG, agentTagValue } from './aws-revocation.js';

/** RoleSessionName and SourceIdentity: 2-64 characters of [\w+=,.@-]; a UUID with a prefix always fits. */
export const sessionNameFor = (leaseId: string) => `tl-${leaseId}`;

/** STS session tag values: letters, spaces, numbers and `_.:/=+-@`, at most 256 characters. */
export function sanitizeTagValue(value: string): string {
  return value.replace(/[^\p{L}\p{Z}\p{N}_.:/=+\-@]/gu, '_').slice(0, STS_LIMITS.tagValue);
}

/** DurationSeconds within what STS allows for this role: [900, max_session_duration]. */
export function clampDuration(ttlSeconds: number, role: AwsRoleConfig): number {
  return Math.min(Math.max(ttlSeconds, STS_LIMITS.minDuration), role.max_session_duration);
}

/**
 * The session tags: the role's static tags, then task, lease and agent,
 * sanitized to STS's rules, and the agent's digest (AGENT_TAG), which a
 * per-agent revocation cut-off matches: sanitizing can make two agents' names
 * alike, the digest cannot.
 */
export function sessionTags(role: AwsRoleConfig, values: { task: string; lease: string; agent: string }): { Key: string; Value: string }[] {
  const tags = { ...role.tags, 'tasklease:task': values.task, 'tasklease:lease': values.lease, 'tasklease:agent': values.agent };
  return [
    ...Object.entries(tags).map(([Key, Value]) => ({ Key: Key.slice(0, STS_LIMITS.tagKey), Value: sanitizeTagValue(Value) })),
    { Key: AGENT_TAG, Value: agentTagValue(values.agent) },
  ];
}
