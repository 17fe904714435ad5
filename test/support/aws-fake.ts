/**
 * A protocol-faithful stand-in for AWS STS and IAM, for tests: one HTTP
 * server on 127.0.0.1 speaking the AWS Query protocol (form-encoded POST,
 * XML answers) that routes on the service named in the SigV4 credential
 * scope, verifies every signature (broker keys, or session keys plus their
 * X-Amz-Security-Token), and keeps roles, their inline policies and the
 * sessions it issues in memory. Point the real SDK clients at `url`.
 *
 * Known departures from AWS:
 * - Authorization is "allow unless an inline Deny on the role applies": the
 *   broker may call anything, Allow statements and trust policies are not
 *   evaluated (except `externalId` / `accounts`), Resource elements are
 *   ignored, and only aws:SourceIdentity, aws:TokenIssueTime,
 *   aws:CurrentTime, aws:PrincipalTag/* and aws:userid are in the request
 *   context (String*, Date*, Null operators; others never match). Under
 *   Version 2012-10-17 the escapes `${*}`, `${?}`, `${$}` are literal
 *   characters; any other policy variable is left unresolved (matches
 *   nothing). A session's own session policy is enforced on its requests
 *   as IAM documents it (an explicit Deny refuses, otherwise an Allow must
 *   match; its conditions, aws:CurrentTime included, evaluated at the
 *   fake's clock); tests may also ask `sessionPolicyAllows`. Managed
 *   session policies (PolicyArns) are not known to the fake: it takes them
 *   to allow everything, so only the inline policy's Deny limits such a
 *   session.
 * - GetCallerIdentity is never denied (as in AWS, where it needs no
 *   permission); probe revocation with an IAM call such as ListRolePolicies.
 * - PackedPolicySize is deflate(policy + ARNs + tags) over a 1,024-byte
 *   budget: a stand-in for AWS's unpublished packing, same order of
 *   magnitude (a one-statement policy packs to ~9%).
 * - Role chaining passes the caller's transitive tags on (still transitive);
 *   passing one of their keys again is refused (InvalidParameterValue).
 * - Error wording for duplicate/`aws:`-prefixed tag keys, a re-passed
 *   transitive tag, >10 PolicyArns and
 *   some policy-grammar errors is modelled on AWS's style, not captured from
 *   it; codes and HTTP statuses follow the service models.
 * - IAM is strongly consistent unless a test asks for `staleReads`.
 * - IAM accepts a signing region of us-east-1 (its real one) or `region`.
 * - Session issue times are whole seconds; AccessKeyIds are unique per
 *   session, secrets and tokens are random and carry no meaning.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { deleteRolePolicy, getRolePolicy, listRolePolicies, putRolePolicy, roleResourceArn } from './aws-fake/iam.js';
import { deniedBy, sessionPolicyAllows } from './aws-fake/policy.js';
import { parseAuthorization, verifySignature, type ParsedAuthorization } from './aws-fake/sigv4.js';
import { AwsError, keyId, makeRole, secretKey, type CallRecord, type FakeRole, type FakeSession, type InjectedFailure } from './aws-fake/state.js';
import { assumedRoleArn, assumeRole, getCallerIdentity, type Caller } from './aws-fake/sts.js';
import { errorXml, successXml, VERSIONS, type Service, type XmlNode } from './aws-fake/xml.js';
import { listenLocal } from './listen.js';

export type { CallRecord, FakeSession, InjectedFailure } from './aws-fake/state.js';
export { PACKED_BUDGET_BYTES } from './aws-fake/sts.js';
export { ROLE_POLICY_AGGREGATE_LIMIT } from './aws-fake/iam.js';

export interface AwsFakeRoleOptions {
  arn: string;
  /** IAM's MaxSessionDuration, 3600..43200; default 3600. */
  maxSessionDuration?: number;
  /** When set, AssumeRole must pass this ExternalId or is AccessDenied (as a trust policy would). */
  externalId?: string;
}

export interface AwsFakeOptions {
  /** The STS region callers sign for; default 'us-east-1'. IAM also accepts 'us-east-1' (its real signing region). */
  region?: string;
  /** Accounts whose roles trust the caller; roles elsewhere are AccessDenied. Default: every configured role's account. */
  accounts?: string[];
  roles?: AwsFakeRoleOptions[];
  /** The broker's own long-term keys; generated (AKIA…) when omitted. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Who those keys belong to; default `arn:aws:iam::123456789012:user/tasklease-broker`. IAM acts on this account. */
  callerArn?: string;
  /** Session issue and expiry time (not signature freshness, which follows the wall clock the SDK signs with). */
  clock?: { now(): Date };
}

export interface AwsFake {
  /** http://127.0.0.1:<port>, serving both STS and IAM. */
  url: string;
  region: string;
  /** The caller credentials the fake accepts. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Every request, in order, with its parameters (Action and Version removed) and outcome. */
  calls: CallRecord[];
  /** Issued sessions by AccessKeyId (live; includes the secret and token so tests can sign with them). */
  sessions: Map<string, FakeSession>;
  /** The role's inline policies, name → JSON as put (live map; writing to it skips IAM's validation). */
  rolePolicies(roleArn: string): Map<string, string>;
  /**
   * Would IAM deny this session now, given explicit Deny statements in its
   * role's inline policies (conditions on aws:SourceIdentity,
   * aws:TokenIssueTime, aws:CurrentTime, aws:PrincipalTag/…, aws:userid)?
   * With `action` ('iam:ListRolePolicies'), only statements whose Action
   * covers it count. Expiry is not considered: see `sessions`.
   */
  isDenied(accessKeyId: string, now?: Date, action?: string): boolean;
  /**
   * Would the session's own session policy (the one AssumeRole was given)
   * allow `action` on `resource`? Resource patterns use IAM's wildcards and,
   * under Version 2012-10-17, its escapes `${*}`, `${?}`, `${$}`. True when the
   * session has no session policy. The fake checks every request a session
   * makes against it too.
   */
  sessionPolicyAllows(accessKeyId: string, action: string, resource: string, now?: Date): boolean;
  /**
   * IAM's eventual consistency: the next `times` GetRolePolicy answers return
   * the policy as it was before its latest write (NoSuchEntity if it did not
   * exist then).
   */
  staleReads(times: number): void;
  /** Answer the next `times` (default 1) matching requests with this error instead; action '*' matches any. */
  failNext(service: 'sts' | 'iam', action: string, error: InjectedFailure, times?: number): void;
  /** Forgets the failures failNext queued and not yet answered. */
  clearFailures(): void;
  addRole(role: AwsFakeRoleOptions): void;
  close(): Promise<void>;
}

const ACTIONS: Record<Service, readonly string[]> = {
  sts: ['AssumeRole', 'GetCallerIdentity'],
  iam: ['GetRolePolicy', 'PutRolePolicy', 'DeleteRolePolicy', 'ListRolePolicies'],
};

const MAX_BODY = 1 << 20;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) reject(new AwsError(413, 'RequestEntityTooLarge', 'Request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function pairHeaders(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

export async function startAwsFake(options: AwsFakeOptions = {}): Promise<AwsFake> {
  const region = options.region ?? 'us-east-1';
  const clock = options.clock ?? { now: () => new Date() };
  const credentials = options.credentials ?? { accessKeyId: keyId('AKIA'), secretAccessKey: secretKey() };
  const callerArn = options.callerArn ?? 'arn:aws:iam::123456789012:user/tasklease-broker';
  const callerAccount = /^arn:aws[\w-]*:iam::(\d{12}):/.exec(callerArn)?.[1];
  if (!callerAccount) throw new Error(`aws-fake: callerArn must be an IAM ARN with a 12-digit account: ${callerArn}`);
  const broker: Caller = { accessKeyId: credentials.accessKeyId, arn: callerArn, userId: keyId('AIDA', 21), account: callerAccount };

  const roles = new Map<string, FakeRole>();
  const addRole = (r: AwsFakeRoleOptions) => {
    if (roles.has(r.arn)) throw new Error(`aws-fake: role already exists: ${r.arn}`);
    roles.set(r.arn, makeRole(r.arn, r.maxSessionDuration, r.externalId));
  };
  for (const r of options.roles ?? []) addRole(r);
  const sessions = new Map<string, FakeSession>();
  const calls: CallRecord[] = [];
  const failures: { service: Service; action: string; error: InjectedFailure; remaining: number }[] = [];
  let staleReads = 0;
  const world = { roles, sessions, trustedAccounts: options.accounts ? new Set(options.accounts) : undefined, now: () => clock.now() };

  const roleOf = (session: FakeSession) => roles.get(session.roleArn)!;

  /** Who signed the request, or the error STS/IAM answer with. */
  function authenticate(req: IncomingMessage, body: Buffer, auth: ParsedAuthorization): Caller {
    if (auth.service !== 'sts' && auth.service !== 'iam') {
      throw new AwsError(403, 'SignatureDoesNotMatch', `Credential should be scoped to correct service: 'sts' or 'iam', not '${auth.service}'.`);
    }
    const regionOk = auth.region === region || (auth.service === 'iam' && auth.region === 'us-east-1');
    if (!regionOk) throw new AwsError(403, 'SignatureDoesNotMatch', `Credential should be scoped to a valid region, not '${auth.region}'. `);
    const session = sessions.get(auth.accessKeyId);
    const secret = auth.accessKeyId === credentials.accessKeyId ? credentials.secretAccessKey : session?.secretAccessKey;
    if (secret === undefined) throw new AwsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    const signable = { method: req.method ?? 'GET', url: req.url ?? '/', headers: pairHeaders(req.rawHeaders), body };
    verifySignature(signable, auth, secret, new Date());
    if (!session) return broker;
    const token = req.headers['x-amz-security-token'];
    if (token !== session.sessionToken) throw new AwsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (clock.now().getTime() >= session.expiration.getTime()) {
      throw new AwsError(403, 'ExpiredToken', 'The security token included in the request is expired');
    }
    const role = roleOf(session);
    return {
      accessKeyId: session.accessKeyId,
      arn: assumedRoleArn(role, session.sessionName),
      userId: `${role.roleId}:${session.sessionName}`,
      account: role.account,
      session,
    };
  }

  function dispatch(service: Service, action: string, caller: Caller, params: Record<string, string>): Record<string, XmlNode> | undefined {
    if (service === 'sts') return action === 'AssumeRole' ? assumeRole(world, caller, params) : getCallerIdentity(caller);
    const all = roles.values();
    if (action === 'PutRolePolicy') return putRolePolicy(all, caller.account, params);
    if (action === 'GetRolePolicy') {
      const stale = staleReads > 0;
      if (stale) staleReads--;
      return getRolePolicy(all, caller.account, params, stale);
    }
    if (action === 'DeleteRolePolicy') return deleteRolePolicy(all, caller.account, params);
    return listRolePolicies(all, caller.account, params);
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const requestId = randomUUID();
    let service: Service = 'sts';
    let action = '';
    let params: Record<string, string> = {};
    let accessKeyId = '';
    const answer = (status: number, xml: string, errorCode?: string) => {
      const record: CallRecord = { service, action, params, accessKeyId, status };
      if (errorCode !== undefined) record.errorCode = errorCode;
      calls.push(record);
      res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId });
      res.end(xml);
    };
    try {
      const body = await readBody(req);
      const query = (req.url ?? '').split('?')[1] ?? '';
      const all = new URLSearchParams(query);
      for (const [k, v] of new URLSearchParams(body.toString('utf8'))) all.append(k, v);
      params = Object.fromEntries(all);
      action = params.Action ?? '';
      const version = params.Version;
      delete params.Action;
      delete params.Version;
      if (version === VERSIONS.iam) service = 'iam';

      const auth = parseAuthorization(req.headers.authorization);
      accessKeyId = auth.accessKeyId;
      if (auth.service === 'iam' || auth.service === 'sts') service = auth.service;
      const caller = authenticate(req, body, auth);

      if (action === '') throw new AwsError(400, 'MissingAction', 'Missing Action');
      if (version !== VERSIONS[service] || !ACTIONS[service].includes(action)) {
        throw new AwsError(400, 'InvalidAction', `Could not find operation ${action} for version ${version ?? 'NO_VERSION_SPECIFIED'}`);
      }
      const injected = failures.find((f) => f.service === service && (f.action === action || f.action === '*') && f.remaining > 0);
      if (injected) {
        injected.remaining--;
        if (injected.remaining === 0) failures.splice(failures.indexOf(injected), 1);
        throw new AwsError(injected.error.status, injected.error.code, injected.error.message);
      }
      // GetCallerIdentity needs no permission and "can't be denied" (STS API reference), so revocation never applies to it.
      if (caller.session && action !== 'GetCallerIdentity') {
        const role = roleOf(caller.session);
        const iamAction = `${service}:${action}`;
        const resource = service === 'iam' ? roleResourceArn(caller.account, params.RoleName) : (params.RoleArn ?? '*');
        const refuse = (why: string) => new AwsError(403, 'AccessDenied', `User: ${caller.arn} is not authorized to perform: ${iamAction} on resource: ${resource} ${why}`);
        if (deniedBy(role.policies, caller.session, clock.now(), role.roleId, iamAction) !== undefined) throw refuse('with an explicit deny in an identity-based policy');
        // The session's own session policy (its aws:CurrentTime bound included) limits every request it makes.
        if (!sessionPolicyAllows(caller.session, clock.now(), role.roleId, iamAction, resource)) throw refuse('because no session policy allows the action');
      }
      answer(200, successXml(service, action, dispatch(service, action, caller, params), requestId));
    } catch (e) {
      if (e instanceof AwsError) answer(e.status, errorXml(service, e.status, e.code, e.message, requestId), e.code);
      else answer(500, errorXml(service, 500, 'InternalFailure', `aws-fake bug: ${(e as Error).message}`, requestId), 'InternalFailure');
    }
  }

  const server = createServer((req, res) => void handle(req, res));
  const port = await listenLocal(server);

  return {
    url: `http://127.0.0.1:${port}`,
    region,
    credentials,
    calls,
    sessions,
    rolePolicies(roleArn) {
      const role = roles.get(roleArn);
      if (!role) throw new Error(`aws-fake: no role ${roleArn}`);
      return role.policies;
    },
    isDenied(accessKeyId, now = clock.now(), action) {
      const session = sessions.get(accessKeyId);
      if (!session) throw new Error(`aws-fake: no session with AccessKeyId ${accessKeyId}`);
      const role = roleOf(session);
      return deniedBy(role.policies, session, now, role.roleId, action) !== undefined;
    },
    sessionPolicyAllows(accessKeyId, action, resource, now = clock.now()) {
      const session = sessions.get(accessKeyId);
      if (!session) throw new Error(`aws-fake: no session with AccessKeyId ${accessKeyId}`);
      return sessionPolicyAllows(session, now, roleOf(session).roleId, action, resource);
    },
    staleReads(times) {
      staleReads = times;
    },
    failNext(service, action, error, times = 1) {
      if (!Number.isInteger(times) || times < 1) throw new Error(`aws-fake: failNext times must be a positive integer, got ${times}`);
      failures.push({ service, action, error, remaining: times });
    },
    clearFailures() {
      failures.length = 0;
    },
    addRole,
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
