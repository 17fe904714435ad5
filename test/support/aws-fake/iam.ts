/**
 * IAM's inline role-policy actions: PutRolePolicy, GetRolePolicy,
 * DeleteRolePolicy, ListRolePolicies. IAM acts on the caller's own account.
 * Limits: RoleName 1-64 and PolicyName 1-128 `[\w+=,.@-]+`; PolicyDocument
 * 1-131072 `[\u0009\u000A\u000D\u0020-\u00FF]+`; a role's inline policies
 * together at most 10,240 characters not counting whitespace (LimitExceeded,
 * 409); GetRolePolicy returns the document URL-encoded per RFC 3986.
 */
import { policyGrammarError, policySize } from './policy.js';
import { AwsError, rfc3986, type FakeRole } from './state.js';
import { Violations } from './validate.js';
import type { XmlNode } from './xml.js';

export const ROLE_POLICY_AGGREGATE_LIMIT = 10_240;

const NAME = /^[\w+=,.@-]+$/;
const DOCUMENT = /^[\u0009\u000A\u000D\u0020-\u00FF]+$/;

function findRole(roles: Iterable<FakeRole>, account: string, roleName: string): FakeRole {
  for (const role of roles) {
    if (role.account === account && role.name.toLowerCase() === roleName.toLowerCase()) return role;
  }
  throw new AwsError(404, 'NoSuchEntity', `The role with name ${roleName} cannot be found.`);
}

function names(params: Record<string, string>, withPolicy: boolean, requireDocument = false): { roleName: string; policyName: string } {
  const v = new Violations();
  if (v.required(params.RoleName, 'roleName')) v.string(params.RoleName, 'roleName', 1, 64, NAME, '[\\w+=,.@-]+');
  if (withPolicy && v.required(params.PolicyName, 'policyName')) v.string(params.PolicyName, 'policyName', 1, 128, NAME, '[\\w+=,.@-]+');
  if (requireDocument) v.required(params.PolicyDocument, 'policyDocument');
  if (withPolicy && params.PolicyDocument !== undefined) {
    v.string(params.PolicyDocument, 'policyDocument', 1, 131072, DOCUMENT, '[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+');
  }
  if (params.MaxItems !== undefined) v.range(params.MaxItems, 'maxItems', 1, 1000);
  if (params.Marker !== undefined) v.string(params.Marker, 'marker', 1, 320, /^[\u0020-\u00FF]+$/, '[\\u0020-\\u00FF]+');
  v.throwIfAny();
  return { roleName: params.RoleName ?? '', policyName: params.PolicyName ?? '' };
}

const noSuchPolicy = (policyName: string) => new AwsError(404, 'NoSuchEntity', `The role policy with name ${policyName} cannot be found.`);

export function putRolePolicy(roles: Iterable<FakeRole>, account: string, params: Record<string, string>): undefined {
  const { roleName, policyName } = names(params, true, true);
  const document = params.PolicyDocument!;
  const role = findRole(roles, account, roleName);
  const grammar = policyGrammarError(document);
  if (grammar !== undefined) throw new AwsError(400, 'MalformedPolicyDocument', grammar);
  let total = policySize(document);
  for (const [name, other] of role.policies) if (name !== policyName) total += policySize(other);
  if (total > ROLE_POLICY_AGGREGATE_LIMIT) {
    throw new AwsError(409, 'LimitExceeded', `Maximum policy size of ${ROLE_POLICY_AGGREGATE_LIMIT} bytes exceeded for role ${role.name}`);
  }
  role.previous.set(policyName, role.policies.get(policyName));
  role.policies.set(policyName, document);
  return undefined;
}

/** With `stale`, answers the policy as it was before its latest write: IAM is eventually consistent, and a read soon after a write may not see it. */
export function getRolePolicy(roles: Iterable<FakeRole>, account: string, params: Record<string, string>, stale = false): Record<string, XmlNode> {
  const { roleName, policyName } = names(params, true);
  const role = findRole(roles, account, roleName);
  const document = stale && role.previous.has(policyName) ? role.previous.get(policyName) : role.policies.get(policyName);
  if (document === undefined) throw noSuchPolicy(policyName);
  return { RoleName: role.name, PolicyName: policyName, PolicyDocument: rfc3986(document) };
}

export function deleteRolePolicy(roles: Iterable<FakeRole>, account: string, params: Record<string, string>): undefined {
  const { roleName, policyName } = names(params, true);
  const role = findRole(roles, account, roleName);
  const before = role.policies.get(policyName);
  if (!role.policies.delete(policyName)) throw noSuchPolicy(policyName);
  role.previous.set(policyName, before);
  return undefined;
}

/** Names in order; `Marker` is opaque to callers (here: the base64url of the last name returned). */
export function listRolePolicies(roles: Iterable<FakeRole>, account: string, params: Record<string, string>): Record<string, XmlNode> {
  const { roleName } = names(params, false);
  const role = findRole(roles, account, roleName);
  const all = [...role.policies.keys()].sort();
  const after = params.Marker === undefined ? undefined : Buffer.from(params.Marker, 'base64url').toString('utf8');
  const start = after === undefined ? 0 : all.findIndex((n) => n > after);
  const rest = start < 0 ? [] : all.slice(start);
  const max = params.MaxItems === undefined ? 100 : Number(params.MaxItems);
  const page = rest.slice(0, max);
  const truncated = rest.length > page.length;
  return {
    PolicyNames: page,
    IsTruncated: truncated,
    Marker: truncated ? Buffer.from(page[page.length - 1]!, 'utf8').toString('base64url') : undefined,
  };
}

/** The IAM resource an action acts on, for AccessDenied messages. */
export function roleResourceArn(account: string, roleName: string | undefined): string {
  return roleName === undefined ? '*' : `arn:aws:iam::${account}:role/${roleName}`;
}
