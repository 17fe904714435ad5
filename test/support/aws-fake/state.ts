/**
 * The fake's in-memory world: the caller (the broker's own IAM user), the
 * roles it may assume, the sessions STS has issued, each role's inline
 * policies, the call log and the queued failures.
 */
import { randomBytes } from 'node:crypto';

export interface FakeRole {
  arn: string;
  /** Last segment of the ARN's resource path: `role/path/Name` → `Name`. */
  name: string;
  account: string;
  /** `AROA…`, as IAM gives every role; the first half of AssumedRoleId. */
  roleId: string;
  /** 3600..43200, as IAM allows; AssumeRole's DurationSeconds may not exceed it. */
  maxSessionDuration: number;
  /** When set, the role's trust policy demands this sts:ExternalId. */
  externalId?: string;
  /** Inline policies: name → the JSON document exactly as it was put. */
  policies: Map<string, string>;
  /** Each policy as it was before its latest write (undefined: it did not exist), for stale reads. */
  previous: Map<string, string | undefined>;
}

export interface FakeSession {
  roleArn: string;
  sessionName: string;
  sourceIdentity?: string;
  /** Session tags as passed (case preserved); returned nowhere, kept for assertions. */
  tags: Record<string, string>;
  transitiveTagKeys: string[];
  expiration: Date;
  /** aws:TokenIssueTime. Whole seconds, as STS reports times. */
  issuedAt: Date;
  policy?: string;
  policyArns: string[];
  externalId?: string;
  durationSeconds: number;
  packedPolicySize: number;
  /** The session credentials; tests may sign requests with them. */
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** AccessKeyId of whoever called AssumeRole (the broker, or a session when chaining). */
  issuedTo: string;
}

export interface CallRecord {
  service: string;
  action: string;
  params: Record<string, string>;
  /** The access key that signed the request ('' when none could be read). */
  accessKeyId: string;
  /** HTTP status the fake answered with. */
  status: number;
  /** The error code when the answer was an error. */
  errorCode?: string;
}

export interface InjectedFailure {
  status: number;
  code: string;
  message: string;
}

/** An error to answer with, in the service's own XML. */
export class AwsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** AWS key ids are 20 characters: a 4-letter kind prefix and 16 of [A-Z2-7]. */
export function keyId(prefix: string, length = 20): string {
  const bytes = randomBytes(length);
  let out = prefix;
  for (let i = 0; out.length < length; i++) out += UPPER_ALNUM[bytes[i]! % 32];
  return out;
}

/** 40 characters of base64 alphabet, like real secret access keys. */
export function secretKey(): string {
  return randomBytes(30).toString('base64');
}

/** Opaque and long, like real session tokens (real ones are ~400-1000 chars). */
export function sessionTokenValue(): string {
  return 'FQoGZXIvYXdzEFAKE' + randomBytes(240).toString('base64');
}

/** Splits `arn:aws:iam::123456789012:role/some/path/Name`; undefined if not a role ARN. */
export function parseRoleArn(arn: string): { account: string; name: string } | undefined {
  const m = /^arn:aws[\w-]*:iam::(\d{12}):role\/(?:[\u0021-\u007E]*\/)?([\w+=,.@-]{1,64})$/.exec(arn);
  return m ? { account: m[1]!, name: m[2]! } : undefined;
}

export function makeRole(arn: string, maxSessionDuration = 3600, externalId?: string): FakeRole {
  const parsed = parseRoleArn(arn);
  if (!parsed) throw new Error(`aws-fake: not a role ARN: ${arn}`);
  if (!Number.isInteger(maxSessionDuration) || maxSessionDuration < 3600 || maxSessionDuration > 43200) {
    throw new Error(`aws-fake: MaxSessionDuration must be 3600..43200 (IAM's range), got ${maxSessionDuration}`);
  }
  const role: FakeRole = {
    arn,
    name: parsed.name,
    account: parsed.account,
    roleId: keyId('AROA', 21),
    maxSessionDuration,
    policies: new Map(),
    previous: new Map(),
  };
  if (externalId !== undefined) role.externalId = externalId;
  return role;
}

/** Strict RFC 3986 percent-encoding (what IAM applies to policy documents it returns). */
export function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** ISO-8601 UTC without milliseconds, as STS writes `Expiration`. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
