import type { AuditInput } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { RoleConfig } from '../config/schema.js';
import type { Identity } from '../identity/types.js';
import type { Authenticator } from '../identity/principals.js';
import type { Issuer } from '../leases/issue.js';
import type { Policy } from '../policy/decide.js';
import type { TaskService } from '../tasks/service.js';
import { DpopError, type DpopVerifier } from './dpop.js';
import { OAuthError } from './errors.js';
import { compileRules, type IdentityMatcher } from '../identity/match.js';
import { AuthError } from '../identity/types.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** Parameters that may be sent once at most (RFC 6749 section 3.2); RFC 8693 lets `audience` and `resource` repeat. */
const SINGLE = ['grant_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'scope', 'requested_token_type', 'task', 'approval'];

export interface ExchangeDeps {
  authenticator: Pick<Authenticator, 'authenticate'>;
  policy: Pick<Policy, 'role' | 'roleNames'>;
  /** A backend's type by its name: only roles on a jwt backend are exchanged. */
  backendType: (name: string) => string | undefined;
  issue: Issuer;
  tasks: Pick<TaskService, 'openFor'>;
  dpop: Pick<DpopVerifier, 'verify'>;
  /** The token endpoint's URL as clients reach it: a DPoP proof's `htu`. */
  tokenEndpoint: string;
  /** How many actors a delegated token's `act` chain may hold. */
  maxDelegationDepth: number;
  clock: Clock;
  /**
   * Audits a refusal made before the issuer (audit/refusals.ts): the first of
   * its key in a window is appended, repeats are counted into one event, so
   * one identity repeating a bad exchange cannot append to the chain each time.
   */
  refuse: (key: string, event: AuditInput) => Promise<void>;
}

/** How many actors an `act` claim names: itself and those nested in it. */
function actDepth(act: unknown): number {
  let depth = 0;
  for (let a = act; a && typeof a === 'object' && depth <= 10; a = (a as { act?: unknown }).act) depth++;
  return depth;
}

export interface ExchangeResponse {
  access_token: string;
  issued_token_type: string;
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope?: string;
}

/**
 * RFC 8693 token exchange at `POST /oauth2/token`: the agent's workload token
 * (`subject_token`) for a credential of a jwt role, named by `audience` (the
 * role) or `resource` (its audience URI, RFC 8707). It is one more way into
 * the same issuance (leases/issue.ts): the same policy, approvals, quotas,
 * lease row and audit, recorded before released
 * (test/oauth/token-exchange.test.ts).
 */
export function createTokenExchange(deps: ExchangeDeps) {
  const jwtRoles = () => deps.policy.roleNames().flatMap((n) => {
    const role = deps.policy.role(n)!;
    return deps.backendType(role.backend) === 'jwt' ? [role] : [];
  });

  /** The one role the request targets. */
  function target(form: URLSearchParams): RoleConfig {
    const audiences = form.getAll('audience');
    const resources = form.getAll('resource');
    if (audiences.length + resources.length === 0) throw new OAuthError('invalid_request', 'name the role: audience (its name) or resource (its audience URI)');
    const roles = jwtRoles();
    const found = new Set<RoleConfig>();
    for (const a of audiences) {
      const role = roles.find((r) => r.name === a);
      if (!role) throw new OAuthError('invalid_target', 'no role of the jwt backend has this name');
      found.add(role);
    }
    for (const uri of resources) {
      const matching = roles.filter((r) => (r.jwt?.audience ?? r.name) === uri);
      if (matching.length === 0) throw new OAuthError('invalid_target', 'no role of the jwt backend has this audience');
      // Several roles for one audience (read and write roles of one API): the resource alone does not say which.
      if (matching.length > 1 && audiences.length === 0) throw new OAuthError('invalid_target', 'several roles have this audience: name one with audience');
      const named = audiences.length === 0 ? matching : matching.filter((r) => audiences.includes(r.name));
      if (named.length === 0) throw new OAuthError('invalid_target', 'audience and resource name different roles');
      for (const r of named) found.add(r);
    }
    if (found.size > 1) throw new OAuthError('invalid_target', 'one token is issued for one role: audience and resource name different ones');
    return [...found][0]!;
  }

  /** The requested scope, a subset of the role's; undefined keeps the role's. */
  function narrowed(form: URLSearchParams, role: RoleConfig): string | undefined {
    const asked = form.get('scope');
    if (asked === null) return undefined;
    const allowed = new Set((role.jwt?.scope ?? '').split(' ').filter(Boolean));
    const wanted = [...new Set(asked.split(' ').filter(Boolean))];
    if (wanted.length === 0 || wanted.some((s) => !allowed.has(s))) throw new OAuthError('invalid_scope', "the scope must be a subset of the role's");
    return wanted.join(' ');
  }

  const delegators = new Map<string, IdentityMatcher>();
  /**
   * Who acts. Without `actor_token`, the subject (an agent). With one (RFC 8693 delegation), the actor is
   * the agent and the subject a person who may delegate the role (`delegable_by`): the decision, the task
   * and the lease are the agent's, the token the person's with `act` naming the agent, nested under any
   * actors the subject token already carries, to at most `maxDelegationDepth`.
   */
  async function actor(form: URLSearchParams, subject: Identity, role: RoleConfig): Promise<{ identity: Identity; onBehalfOf?: { actor: string; subject: string; act: Record<string, unknown> } }> {
    const actorToken = form.get('actor_token');
    if (actorToken === null) {
      if (form.has('actor_token_type')) throw new OAuthError('invalid_request', 'actor_token_type without actor_token');
      return { identity: subject };
    }
    if (form.get('actor_token_type') !== JWT_TOKEN_TYPE) throw new OAuthError('invalid_request', `actor_token_type must be ${JWT_TOKEN_TYPE}`);
    let agent;
    try {
      agent = (await deps.authenticator.authenticate(actorToken)).identity;
    } catch (err) {
      if (err instanceof AuthError) throw new OAuthError('invalid_request', `actor_token: ${err.message}`);
      throw err;
    }
    if (!agent) throw new OAuthError('invalid_request', 'actor_token must be a workload identity token');
    let delegable = delegators.get(role.name);
    if (!delegable) delegators.set(role.name, (delegable = compileRules(role.delegable_by)));
    if (!delegable(subject)) throw new OAuthError('invalid_target', `the subject may not delegate role ${role.name}`);
    const prior = subject.claims.act;
    if (actDepth(prior) + 1 > deps.maxDelegationDepth) throw new OAuthError('invalid_request', `the delegation chain is deeper than ${deps.maxDelegationDepth}`);
    const issuerOf = (i: Identity) => (typeof i.claims.iss === 'string' ? i.claims.iss : i.issuer);
    return {
      identity: agent,
      onBehalfOf: {
        actor: `${subject.issuer}/${subject.subject}`,
        subject: subject.subject,
        act: { sub: agent.subject, iss: issuerOf(agent), ...(prior && typeof prior === 'object' ? { act: prior } : {}) },
      },
    };
  }

  async function taskFor(form: URLSearchParams, identity: Identity): Promise<string> {
    const named = form.get('task');
    if (named !== null) return named;
    const open = await deps.tasks.openFor(identity);
    if (open.length === 1) return open[0]!;
    throw new OAuthError('invalid_request', open.length === 0 ? 'no open task is bound to this agent' : 'several open tasks are bound to this agent: name one with task');
  }

  return async function exchange(form: URLSearchParams, request: { requestId?: string | null; clientRequestId?: string | null }, proof?: string): Promise<ExchangeResponse> {
    for (const name of SINGLE) if (form.getAll(name).length > 1) throw new OAuthError('invalid_request', `${name} may be sent once`);
    const grant = form.get('grant_type');
    if (grant === null) throw new OAuthError('invalid_request', 'grant_type is required');
    if (grant !== TOKEN_EXCHANGE) throw new OAuthError('unsupported_grant_type', `only ${TOKEN_EXCHANGE} is supported`);
    const subjectToken = form.get('subject_token');
    if (!subjectToken) throw new OAuthError('invalid_request', 'subject_token is required');
    if (form.get('subject_token_type') !== JWT_TOKEN_TYPE) throw new OAuthError('invalid_request', `subject_token_type must be ${JWT_TOKEN_TYPE}`);
    const requested = form.get('requested_token_type');
    if (requested !== null && requested !== ACCESS_TOKEN_TYPE && requested !== JWT_TOKEN_TYPE) throw new OAuthError('invalid_request', `requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
    const subject = (await deps.authenticator.authenticate(subjectToken)).identity;
    if (!subject) throw new OAuthError('invalid_request', 'subject_token must be an identity token');
    // Every refusal made here, before the issuer (which audits its own), is audited too: who asked, and why.
    let role, scope, identity, onBehalfOf, taskId, dpopJkt: string | undefined;
    try {
      role = target(form);
      scope = narrowed(form, role);
      ({ identity, onBehalfOf } = await actor(form, subject, role));
      taskId = await taskFor(form, identity);
      if (proof !== undefined) dpopJkt = await deps.dpop.verify(proof, { method: 'POST', url: deps.tokenEndpoint }).catch((err: unknown) => {
        throw err instanceof DpopError ? new OAuthError('invalid_dpop_proof', err.message) : err;
      });
    } catch (err) {
      if (err instanceof OAuthError) {
        const actor = `${subject.issuer}/${subject.subject}`;
        await deps.refuse(JSON.stringify([actor, 'oauth:token', err.error, role?.name ?? null]), {
          at: deps.clock.now(),
          actor,
          action: 'credential.denied',
          target: 'oauth:token',
          decision: 'deny',
          reason: err.description,
          details: { code: err.error, via: 'token_exchange', token_sha256: subject.tokenSha256, ...(role ? { role: role.name } : {}) },
          requestId: request.requestId ?? null,
          clientRequestId: request.clientRequestId ?? null,
        });
      }
      throw err;
    }
    const approval = form.get('approval');
    const result = await deps.issue({
      identity,
      taskId,
      roleName: role.name,
      noApprovalRequests: true,
      ...(approval !== null ? { approvalId: approval } : {}),
      ...(scope !== undefined ? { scope } : {}),
      ...(dpopJkt !== undefined ? { dpopJkt } : {}),
      ...(onBehalfOf ? { onBehalfOf } : {}),
      requestId: request.requestId ?? null,
      clientRequestId: request.clientRequestId ?? null,
    });
    // noApprovalRequests: a gated role without a redeemed approval is refused, never queued.
    if (result.kind !== 'issued') throw new OAuthError('invalid_target', 'this role needs approval');
    const effective = scope ?? role.jwt?.scope;
    return {
      access_token: String(result.credentials.token),
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: dpopJkt !== undefined ? 'DPoP' : 'Bearer',
      expires_in: Math.max(0, Math.floor((result.lease.expiresAt.getTime() - result.lease.issuedAt.getTime()) / 1000)),
      ...(effective ? { scope: effective } : {}),
    };
  };
}
export type TokenExchange = ReturnType<typeof createTokenExchange>;
