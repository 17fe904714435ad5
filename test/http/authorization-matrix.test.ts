/**
 * The authorization matrix: every route of the app × every kind of caller,
 * with the status each must get. The route list is read from the live app
 * (/openapi.json) plus the plain public routes, and the suite fails when a
 * route has no rows or a row names a route that is gone, so a new route
 * cannot ship without saying who may call it.
 *
 * Principles the matrix encodes:
 * - no token, an expired token or a garbage token: 401 on every /v1 route;
 *   the public routes answer anyone;
 * - a lease, task or approval that is not yours is 404, never 403, and the
 *   denial is the same as for an id that does not exist (checked per row
 *   against a ghost id);
 * - agents cannot open or complete tasks (not_orchestrator), use admin routes
 *   (not_admin) or decide approvals;
 * - orchestrators cannot use admin routes, nor see another orchestrator's task;
 * - an agent's review, suspension and resumption are for admins and its
 *   owners: anyone else is told not_agent_owner whatever the name, so the
 *   answer does not say whether the agent exists; the rest of the registry is
 *   for admins only;
 * - admins may do what admin and orchestrator routes allow; a static admin
 *   token cannot ask for credentials (not_agent);
 * - every 4xx is application/problem+json with a `code` (RFC 6749's `{error}` on the OAuth endpoints);
 * - a refused mutation leaves its resource as it was.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { execRows } from '../../src/db/client.js';
import { outbox } from '../../src/db/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { consoleClient, consoleTables, devConsoleConfig, devToken } from '../console/support.js';
import { ADMIN_STATIC_TOKEN, freshId, useTestBroker, type TestBroker } from '../support/broker.js';
import type { TestDatabase } from '../support/db.js';

const CALLERS = ['no token', 'expired token', 'garbage token', 'agent-1', 'agent-2', 'orchestrator', 'orchestrator-2', 'admin', 'static admin'] as const;
type Caller = (typeof CALLERS)[number];

/** The shared fixtures (and, for mutating routes, per-row throwaway ones). */
interface Ids {
  /** Opened by `orchestrator` for agent-1, roles demo and gated. */
  task: string;
  /** Issued to agent-1 on `task`. */
  lease: string;
  /** agent-1's pending request for the gated role on `task`. */
  approval: string;
  /** The jwt credential of `lease`. */
  credential: string;
  /** A registered agent: agent-1 (from the config, ceiling demo and gated), or a throwaway one. */
  agent: string;
  /** A suspension by rule in force, of `subject`. */
  suspension: string;
  /** A subject no fixture's identity has, for suspension rules that must disturb nothing. */
  subject: string;
}

interface Expected {
  status: number;
  /** The problem `code`, when the matrix pins it. */
  code?: string;
  /**
   * The caller owns the resource, so a refusal may say why; for everyone else
   * a refusal must not depend on whether the resource exists.
   */
  own?: boolean;
}

interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** As in /openapi.json (`{id}` for path parameters). */
  path: string;
  /** Not under /v1 and not in the OpenAPI document: anyone may call it. */
  public?: boolean;
  /** The request names a task, lease or approval (so a ghost id must be refused alike). */
  resource?: boolean;
  /** Throwaway fixtures for a mutating route, so no row destroys what later rows need. */
  fresh?: (t: TestBroker) => Promise<Partial<Ids>>;
  request: (ids: Ids) => { path: string; body?: unknown; contentType?: string };
  /** After a refusal: the resource is unchanged. */
  intact?: (t: TestBroker, ids: Ids) => Promise<void>;
  /** Extra checks on a successful answer. */
  check?: (caller: Caller, body: any, ids: Ids) => void;
  expect: Record<Caller, Expected>;
}

const agentRoles = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
// `roles` replaces the harness's roles, so they are repeated here, plus a gated one.
const ROLES = [
  { name: 'demo', backend: 'local', ttl: '15m', max_ttl: '1h', allow: agentRoles, jwt: { audience: 'demo-api', scope: 'demo:read' } },
  { name: 'flaky', backend: 'fake', ttl: '10m', max_ttl: '30m', allow: agentRoles },
  { name: 'special', backend: 'local', allow: [{ issuer: 'test', subject: 'agent-special' }] },
  { name: 'gated', backend: 'local', allow: agentRoles, requires_approval: true },
];

/** Who an agent's owner is (owner.principals): `owner-1` owns `owned`, nobody but the admins owns the others. */
const owner = (name: string, principal?: string) => ({ name, contact: `${name}@example.com`, principals: principal ? [{ issuer: 'test', subject: principal }] : [] });
/**
 * agent-1 is registered with a ceiling that holds the fixtures' roles (demo, gated) and not flaky; registration is not
 * required, so agent-2 and agent-special need no entry. `owned` exists for the owner's rows.
 */
const AGENTS = {
  require_registration: false,
  register: [
    { name: 'agent-1', match: { issuer: 'test', subject: 'agent-1' }, owner: owner('team-1'), purpose: 'the matrix fixtures', roles: ['demo', 'gated'] },
    { name: 'owned', match: { issuer: 'test', subject: 'agent-owned' }, owner: owner('team-o', 'owner-1'), purpose: "the owner's rows", roles: ['demo'] },
  ],
};

const s = (status: number, code?: string): Expected => ({ status, ...(code ? { code } : {}) });
const UNAUTHENTICATED = { 'no token': s(401, 'token_missing'), 'expired token': s(401, 'token_expired'), 'garbage token': s(401) } as const;
const PUBLIC: Record<Caller, Expected> = Object.fromEntries(CALLERS.map((c) => [c, s(200)])) as Record<Caller, Expected>;
const ANY_CALLER_OK: Record<Caller, Expected> = { ...PUBLIC, ...UNAUTHENTICATED };
const ADMIN_ONLY = (ok: number): Record<Caller, Expected> => ({
  ...UNAUTHENTICATED,
  'agent-1': s(403, 'not_admin'),
  'agent-2': s(403, 'not_admin'),
  orchestrator: s(403, 'not_admin'),
  'orchestrator-2': s(403, 'not_admin'),
  admin: s(ok),
  'static admin': s(ok),
});

/** The shared task's external id (its opener's own reference). */
const SHARED_EXTERNAL_ID = freshId('matrix');

// ---- fixture helpers (each acts as the principal that would really do it) ----

async function openTask(t: TestBroker, roles = ['demo', 'gated'], externalId?: string): Promise<string> {
  const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles, ttl_seconds: 3600, external_id: externalId });
  expect(res.status, res.text).toBe(201);
  return res.json.task.id;
}

async function issueLease(t: TestBroker, task: string): Promise<{ lease: string; credential: string }> {
  const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' });
  expect(res.status, res.text).toBe(201);
  return { lease: res.json.lease.id, credential: res.json.credentials.token };
}

async function requestApproval(t: TestBroker, task: string): Promise<string> {
  const res = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'gated' });
  expect(res.status, res.text).toBe(202);
  return res.json.approval.id;
}

/** Reads state as the static admin, which sees everything. */
async function adminGet(t: TestBroker, path: string) {
  const res = await t.call('GET', path, { bearer: ADMIN_STATIC_TOKEN });
  expect(res.status, res.text).toBe(200);
  return res.json;
}
const leaseStatus = async (t: TestBroker, id: string) => (await adminGet(t, `/v1/leases/${id}`)).lease.status;

/** A throwaway agent registered through the API, for a throwaway subject, owned by `by` if given. */
async function createAgent(t: TestBroker, by?: string): Promise<string> {
  const name = freshId('matrix-agent');
  const res = await t.call('POST', '/v1/agents', { bearer: ADMIN_STATIC_TOKEN }, agentBody(name, by));
  expect(res.status, res.text).toBe(201);
  return name;
}
const agentBody = (name: string, by?: string) => ({ name, match: { issuer: 'test', subject: `agent-${name}` }, owner: owner('team-m', by), purpose: 'authorization matrix', roles: ['demo'] });

async function suspendAgent(t: TestBroker, name: string): Promise<void> {
  const res = await t.call('POST', `/v1/agents/${name}/suspend`, { bearer: ADMIN_STATIC_TOKEN }, { reason: 'authorization matrix' });
  expect(res.status, res.text).toBe(200);
}

/** A suspension by rule of a subject nobody uses, so it stops no fixture. */
async function suspendRule(t: TestBroker): Promise<{ suspension: string; subject: string }> {
  const subject = freshId('agent-ruled');
  const res = await t.call('POST', '/v1/suspensions', { bearer: ADMIN_STATIC_TOKEN }, { match: { issuer: 'test', subject }, reason: 'authorization matrix' });
  expect(res.status, res.text).toBe(201);
  return { suspension: res.json.suspension.id, subject };
}
const agentSuspension = async (t: TestBroker, name: string) => (await adminGet(t, `/v1/agents/${name}`)).agent.suspension;
const rulesInForce = async (t: TestBroker) => (await adminGet(t, '/v1/suspensions')).items as { id: string; rule: { subject?: string } }[];

/** Refused on show, suspend and resume alike, whether the agent exists or not. */
const ADMIN_OR_OWNER = (ok: number): Record<Caller, Expected> => ({
  ...UNAUTHENTICATED,
  'agent-1': s(403, 'not_agent_owner'),
  'agent-2': s(403, 'not_agent_owner'),
  orchestrator: s(403, 'not_agent_owner'),
  'orchestrator-2': s(403, 'not_agent_owner'),
  admin: s(ok),
  'static admin': s(ok),
});

const taskWithLease = async (t: TestBroker) => {
  const task = await openTask(t, ['demo']);
  return { task, ...(await issueLease(t, task)) };
};

// ---- the matrix ----

const ROUTES: Route[] = [
  // public, plain app.get routes (not in the OpenAPI document)
  { method: 'GET', path: '/healthz', public: true, request: () => ({ path: '/healthz' }), expect: PUBLIC },
  { method: 'GET', path: '/readyz', public: true, request: () => ({ path: '/readyz' }), expect: PUBLIC },
  { method: 'GET', path: '/.well-known/jwks.json', public: true, request: () => ({ path: '/.well-known/jwks.json' }), expect: PUBLIC },
  { method: 'GET', path: '/openapi.json', public: true, request: () => ({ path: '/openapi.json' }), expect: PUBLIC },
  // The OAuth endpoints (docs/oauth.md): outside /v1, each authenticating as OAuth says, answering RFC 6749 errors.
  { method: 'GET', path: '/.well-known/oauth-authorization-server', public: true, request: () => ({ path: '/.well-known/oauth-authorization-server' }), expect: PUBLIC },
  // The Bearer is ignored here: the subject token in the body is the authentication.
  {
    method: 'POST',
    path: '/oauth2/token',
    public: true,
    request: () => ({ path: '/oauth2/token', body: 'grant_type=client_credentials', contentType: 'application/x-www-form-urlencoded' }),
    expect: Object.fromEntries(CALLERS.map((c) => [c, s(400)])) as Record<Caller, Expected>,
  },
  // Resource servers authenticate as OAuth clients (Basic, a posted secret, a client assertion): a Bearer is none of them.
  {
    method: 'POST',
    path: '/oauth2/introspect',
    public: true,
    request: () => ({ path: '/oauth2/introspect', body: 'token=not-a-token', contentType: 'application/x-www-form-urlencoded' }),
    expect: Object.fromEntries(CALLERS.map((c) => [c, s(401)])) as Record<Caller, Expected>,
  },
  // Any workload identity may ask; it ends only its own lease (none here), so the answer is 200 for each.
  {
    method: 'POST',
    path: '/oauth2/revoke',
    public: true,
    request: () => ({ path: '/oauth2/revoke', body: 'token=not-a-token', contentType: 'application/x-www-form-urlencoded' }),
    expect: { ...(Object.fromEntries(CALLERS.map((c) => [c, s(200)])) as Record<Caller, Expected>), 'no token': s(401), 'expired token': s(401), 'garbage token': s(401), 'static admin': s(401) },
  },
  // The SSF transmitter (docs/oauth.md): its metadata is public; a poll receiver authenticates with HTTP Basic, which no caller here has.
  { method: 'GET', path: '/.well-known/ssf-configuration', public: true, request: () => ({ path: '/.well-known/ssf-configuration' }), expect: PUBLIC },
  {
    method: 'POST',
    path: '/ssf/poll',
    public: true,
    request: () => ({ path: '/ssf/poll', body: { returnImmediately: true } }),
    expect: Object.fromEntries(CALLERS.map((c) => [c, s(401)])) as Record<Caller, Expected>,
  },
  // Served here only behind its scrape token (configured below), which no caller of the matrix holds.
  {
    method: 'GET',
    path: '/metrics',
    public: true,
    request: () => ({ path: '/metrics' }),
    expect: { ...(Object.fromEntries(CALLERS.map((c) => [c, s(401, 'token_invalid')])) as Record<Caller, Expected>), 'no token': s(401, 'token_missing') },
  },

  // agent
  {
    method: 'POST',
    path: '/v1/credentials',
    resource: true,
    request: (ids) => ({ path: '/v1/credentials', body: { task: ids.task, role: 'demo' } }),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(201),
      'agent-2': s(404, 'task_not_found'),
      // OIDC callers the task is not bound to: the task is not theirs to draw on.
      orchestrator: s(404, 'task_not_found'),
      'orchestrator-2': s(404, 'task_not_found'),
      admin: s(404, 'task_not_found'),
      'static admin': s(403, 'not_agent'),
    },
  },
  {
    method: 'GET',
    path: '/v1/leases/{id}',
    resource: true,
    request: (ids) => ({ path: `/v1/leases/${ids.lease}` }),
    check: (_caller, body, ids) => expect(body.lease.id).toBe(ids.lease),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(200),
      'agent-2': s(404, 'lease_not_found'),
      orchestrator: s(404, 'lease_not_found'),
      'orchestrator-2': s(404, 'lease_not_found'),
      admin: s(200),
      'static admin': s(200),
    },
  },
  {
    method: 'DELETE',
    path: '/v1/leases/{id}',
    resource: true,
    fresh: async (t) => issueLease(t, await openTask(t, ['demo'])),
    request: (ids) => ({ path: `/v1/leases/${ids.lease}` }),
    intact: async (t, ids) => expect(await leaseStatus(t, ids.lease)).toBe('active'),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(202),
      'agent-2': s(404, 'lease_not_found'),
      orchestrator: s(404, 'lease_not_found'),
      'orchestrator-2': s(404, 'lease_not_found'),
      // Releasing is the holder's act; an admin force-revokes through /v1/leases/{id}/revoke.
      admin: s(404, 'lease_not_found'),
      'static admin': s(403, 'not_agent'),
    },
  },

  // orchestrator
  {
    method: 'POST',
    path: '/v1/tasks',
    request: () => ({ path: '/v1/tasks', body: { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 } }),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(403, 'not_orchestrator'),
      'agent-2': s(403, 'not_orchestrator'),
      orchestrator: s(201),
      'orchestrator-2': s(201),
      admin: s(201),
      'static admin': s(201),
    },
  },
  {
    method: 'GET',
    path: '/v1/tasks',
    request: () => ({ path: `/v1/tasks?external_id=${SHARED_EXTERNAL_ID}` }),
    // An external id names a task among its opener's own only: everyone else finds none.
    check: (caller, body, ids) => expect(body.items.map((x: { id: string }) => x.id)).toEqual(caller === 'orchestrator' ? [ids.task] : []),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(403, 'not_orchestrator'),
      'agent-2': s(403, 'not_orchestrator'),
      orchestrator: s(200),
      'orchestrator-2': s(200),
      admin: s(200),
      'static admin': s(200),
    },
  },
  {
    method: 'GET',
    path: '/v1/tasks/{id}',
    resource: true,
    request: (ids) => ({ path: `/v1/tasks/${ids.task}` }),
    check: (_caller, body, ids) => expect(body.task.id).toBe(ids.task),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(403, 'not_orchestrator'),
      'agent-2': s(403, 'not_orchestrator'),
      orchestrator: s(200),
      'orchestrator-2': s(404, 'task_not_found'),
      admin: s(200),
      'static admin': s(200),
    },
  },
  {
    method: 'POST',
    path: '/v1/tasks/{id}/complete',
    resource: true,
    fresh: taskWithLease,
    request: (ids) => ({ path: `/v1/tasks/${ids.task}/complete`, body: { outcome: 'success' } }),
    intact: async (t, ids) => {
      expect((await adminGet(t, `/v1/tasks/${ids.task}`)).task.status).toBe('open');
      expect(await leaseStatus(t, ids.lease)).toBe('active');
    },
    check: (_caller, body) => expect(body.revoking).toBe(1),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(403, 'not_orchestrator'),
      'agent-2': s(403, 'not_orchestrator'),
      orchestrator: s(202),
      'orchestrator-2': s(404, 'task_not_found'),
      admin: s(202),
      'static admin': s(202),
    },
  },

  // admin
  {
    method: 'GET',
    path: '/v1/leases',
    request: () => ({ path: '/v1/leases' }),
    check: (_caller, body, ids) => expect(body.items.map((l: { id: string }) => l.id)).toContain(ids.lease),
    expect: ADMIN_ONLY(200),
  },
  {
    method: 'POST',
    path: '/v1/leases/{id}/revoke',
    resource: true,
    fresh: async (t) => issueLease(t, await openTask(t, ['demo'])),
    request: (ids) => ({ path: `/v1/leases/${ids.lease}/revoke`, body: { reason: 'authorization matrix' } }),
    intact: async (t, ids) => expect(await leaseStatus(t, ids.lease)).toBe('active'),
    expect: ADMIN_ONLY(202),
  },
  {
    method: 'POST',
    path: '/v1/revocations',
    resource: true,
    fresh: taskWithLease,
    request: (ids) => ({ path: '/v1/revocations', body: { task: ids.task, reason: 'authorization matrix' } }),
    intact: async (t, ids) => expect(await leaseStatus(t, ids.lease)).toBe('active'),
    check: (_caller, body) => expect(body.revoking).toBe(1),
    expect: ADMIN_ONLY(202),
  },
  { method: 'GET', path: '/v1/audit', request: () => ({ path: '/v1/audit' }), expect: ADMIN_ONLY(200) },
  { method: 'GET', path: '/v1/readiness', request: () => ({ path: '/v1/readiness' }), expect: ADMIN_ONLY(200) },
  {
    method: 'GET',
    path: '/v1/audit/checkpoint',
    request: () => ({ path: '/v1/audit/checkpoint' }),
    check: (_caller, body) => expect(body.checkpoint).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/),
    expect: ADMIN_ONLY(200),
  },
  {
    method: 'POST',
    path: '/v1/policy/evaluate',
    resource: true,
    request: (ids) => ({ path: '/v1/policy/evaluate', body: { identity: { issuer: 'test', subject: 'agent-1' }, task: ids.task, role: 'demo' } }),
    check: (_caller, body) => expect(body.decision).toBe('allow'),
    expect: ADMIN_ONLY(200),
  },

  {
    method: 'POST',
    path: '/v1/leases/{id}/renew',
    resource: true,
    request: (ids) => ({ path: `/v1/leases/${ids.lease}/renew`, body: {} }),
    expect: {
      ...UNAUTHENTICATED,
      // The fixture lease is a jwt credential: its holder is told it cannot be renewed; nobody else learns it exists.
      'agent-1': { status: 409, code: 'not_renewable', own: true },
      'agent-2': s(404, 'lease_not_found'),
      orchestrator: s(404, 'lease_not_found'),
      'orchestrator-2': s(404, 'lease_not_found'),
      admin: s(404, 'lease_not_found'),
      'static admin': s(403, 'not_agent'),
    },
  },

  // agent, for its gateway (docs/gateway.md): its own task's closure, and the calls it made for the audit trail
  {
    method: 'GET',
    path: '/v1/tasks/{id}/closure',
    resource: true,
    request: (ids) => ({ path: `/v1/tasks/${ids.task}/closure?wait=0` }),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': { status: 200, own: true },
      'agent-2': s(404, 'task_not_found'),
      orchestrator: s(404, 'task_not_found'),
      'orchestrator-2': s(404, 'task_not_found'),
      admin: s(404, 'task_not_found'),
      'static admin': s(403, 'not_agent'),
    },
  },
  {
    method: 'POST',
    path: '/v1/gateway/calls',
    resource: true,
    request: (ids) => ({ path: '/v1/gateway/calls', body: { calls: [{ task: ids.task, route: 'reports', method: 'GET', path: '/x', status: 200, decision: 'allow', bytes_in: 0, bytes_out: 2, ms: 1.5, at: '2026-12-07T00:00:00Z' }] } }),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': { status: 202, own: true },
      'agent-2': s(404, 'task_not_found'),
      orchestrator: s(404, 'task_not_found'),
      'orchestrator-2': s(404, 'task_not_found'),
      admin: s(404, 'task_not_found'),
      'static admin': s(403, 'not_agent'),
    },
  },

  // agent, through an unmodified AWS SDK (the fixture role issues JWTs, so every identity is refused the same way)
  {
    method: 'GET',
    path: '/v1/aws/container-credentials',
    resource: true,
    request: (ids) => ({ path: `/v1/aws/container-credentials?task=${ids.task}&role=demo` }),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(403, 'role_denied'),
      'agent-2': s(403, 'role_denied'),
      orchestrator: s(403, 'role_denied'),
      'orchestrator-2': s(403, 'role_denied'),
      admin: s(403, 'role_denied'),
      'static admin': s(403, 'not_agent'),
    },
  },

  // system
  {
    method: 'POST',
    path: '/v1/introspect',
    request: (ids) => ({ path: '/v1/introspect', body: `token=${ids.credential}`, contentType: 'application/x-www-form-urlencoded' }),
    check: (_caller, body) => expect(body.active).toBe(true),
    expect: ANY_CALLER_OK,
  },

  // approvals
  {
    method: 'GET',
    path: '/v1/approvals',
    request: () => ({ path: '/v1/approvals' }),
    // Only those who may decide the request see it listed.
    check: (caller, body, ids) => {
      const listed = body.items.map((a: { id: string }) => a.id);
      if (caller === 'admin' || caller === 'static admin') expect(listed).toContain(ids.approval);
      else expect(listed).not.toContain(ids.approval);
    },
    expect: ANY_CALLER_OK,
  },
  {
    method: 'GET',
    path: '/v1/approvals/{id}',
    resource: true,
    request: (ids) => ({ path: `/v1/approvals/${ids.approval}` }),
    check: (_caller, body, ids) => expect(body.approval.id).toBe(ids.approval),
    expect: {
      ...UNAUTHENTICATED,
      'agent-1': s(200),
      'agent-2': s(404, 'approval_not_found'),
      orchestrator: s(404, 'approval_not_found'),
      'orchestrator-2': s(404, 'approval_not_found'),
      admin: s(200),
      'static admin': s(200),
    },
  },
  ...(['approve', 'deny'] as const).map(
    (verdict): Route => ({
      method: 'POST',
      path: `/v1/approvals/{id}/${verdict}`,
      resource: true,
      fresh: async (t) => ({ approval: await requestApproval(t, await openTask(t)) }),
      request: (ids) => ({ path: `/v1/approvals/${ids.approval}/${verdict}`, body: { reason: 'authorization matrix' } }),
      intact: async (t, ids) => expect((await adminGet(t, `/v1/approvals/${ids.approval}`)).approval.status).toBe('pending'),
      check: (_caller, body) => expect(body.approval.status).toBe(verdict === 'approve' ? 'approved' : 'denied'),
      expect: {
        ...UNAUTHENTICATED,
        // The requester knows its request exists (it polls it), so it is told why it may not decide it.
        'agent-1': { status: 403, code: 'self_approval', own: true },
        'agent-2': s(404, 'approval_not_found'),
        orchestrator: s(404, 'approval_not_found'),
        'orchestrator-2': s(404, 'approval_not_found'),
        admin: s(200),
        'static admin': s(200),
      },
    }),
  ),

  // the agent registry
  {
    method: 'GET',
    path: '/v1/agents',
    request: () => ({ path: '/v1/agents' }),
    check: (_caller, body) => expect(body.items.map((a: { name: string }) => a.name)).toEqual(expect.arrayContaining(['agent-1', 'owned'])),
    expect: ADMIN_ONLY(200),
  },
  {
    method: 'POST',
    path: '/v1/agents',
    fresh: async () => ({ agent: freshId('matrix-new') }),
    request: (ids) => ({ path: '/v1/agents', body: agentBody(ids.agent) }),
    intact: async (t, ids) => expect((await t.call('GET', `/v1/agents/${ids.agent}`, { bearer: ADMIN_STATIC_TOKEN })).json.code).toBe('agent_not_found'),
    check: (_caller, body, ids) => expect(body.agent).toMatchObject({ name: ids.agent, source: 'api', roles: ['demo'] }),
    expect: ADMIN_ONLY(201),
  },
  {
    method: 'GET',
    path: '/v1/agents/{name}',
    resource: true,
    request: (ids) => ({ path: `/v1/agents/${ids.agent}` }),
    check: (_caller, body, ids) => expect(body.agent).toMatchObject({ name: ids.agent, roles: ['demo', 'gated'], suspension: null }),
    expect: ADMIN_OR_OWNER(200),
  },
  {
    method: 'DELETE',
    path: '/v1/agents/{name}',
    resource: true,
    fresh: async (t) => ({ agent: await createAgent(t) }),
    request: (ids) => ({ path: `/v1/agents/${ids.agent}` }),
    intact: async (t, ids) => expect((await adminGet(t, `/v1/agents/${ids.agent}`)).agent.name).toBe(ids.agent),
    check: (_caller, body, ids) => expect(body.deleted).toBe(ids.agent),
    expect: ADMIN_ONLY(200),
  },
  {
    method: 'POST',
    path: '/v1/agents/{name}/suspend',
    resource: true,
    fresh: async (t) => ({ agent: await createAgent(t) }),
    request: (ids) => ({ path: `/v1/agents/${ids.agent}/suspend`, body: { reason: 'authorization matrix' } }),
    intact: async (t, ids) => expect(await agentSuspension(t, ids.agent)).toBeNull(),
    check: (_caller, body, ids) => expect(body.suspension).toMatchObject({ agent: ids.agent, resumed_at: null }),
    expect: ADMIN_OR_OWNER(200),
  },
  {
    method: 'POST',
    path: '/v1/agents/{name}/resume',
    resource: true,
    fresh: async (t) => {
      const agent = await createAgent(t);
      await suspendAgent(t, agent);
      return { agent };
    },
    request: (ids) => ({ path: `/v1/agents/${ids.agent}/resume`, body: { reason: 'authorization matrix' } }),
    intact: async (t, ids) => expect(await agentSuspension(t, ids.agent)).toMatchObject({ agent: ids.agent, resumed_at: null }),
    check: (_caller, body, ids) => expect(body.suspension).toMatchObject({ agent: ids.agent, resume_reason: 'authorization matrix' }),
    expect: ADMIN_OR_OWNER(200),
  },
  {
    method: 'GET',
    path: '/v1/suspensions',
    request: () => ({ path: '/v1/suspensions' }),
    check: (_caller, body, ids) => expect(body.items.map((x: { id: string }) => x.id)).toContain(ids.suspension),
    expect: ADMIN_ONLY(200),
  },
  {
    method: 'POST',
    path: '/v1/suspensions',
    fresh: async () => ({ subject: freshId('agent-ruled') }),
    request: (ids) => ({ path: '/v1/suspensions', body: { match: { issuer: 'test', subject: ids.subject }, reason: 'authorization matrix' } }),
    intact: async (t, ids) => expect((await rulesInForce(t)).filter((x) => x.rule.subject === ids.subject)).toEqual([]),
    check: (_caller, body, ids) => expect(body.suspension).toMatchObject({ agent: null, rule: { issuer: 'test', subject: ids.subject } }),
    expect: ADMIN_ONLY(201),
  },
  {
    method: 'POST',
    path: '/v1/suspensions/{id}/lift',
    resource: true,
    fresh: suspendRule,
    request: (ids) => ({ path: `/v1/suspensions/${ids.suspension}/lift`, body: { reason: 'authorization matrix' } }),
    intact: async (t, ids) => expect((await rulesInForce(t)).map((x) => x.id)).toContain(ids.suspension),
    check: (_caller, body, ids) => expect(body.suspension).toMatchObject({ id: ids.suspension, resume_reason: 'authorization matrix' }),
    expect: ADMIN_ONLY(200),
  },
];

/**
 * The console's routes (src/console/app.tsx): HTML for people, authenticated by a session cookie and never by
 * a Bearer token, so they are neither in /openapi.json nor in ROUTES. They are listed here and checked apart,
 * for every caller above: without a console session every page, action and live stream redirects to the login
 * page, whatever bearer is sent; the assets and the Signed out page answer anyone; this broker is not in dev mode and has no
 * `console.oidc`, so the login page and the OIDC callback say the console needs one (501). What each kind of
 * signed-in person gets on each of them is SIGNED_IN, further down (a route listed here without rows there fails);
 * the OIDC login itself is tested in test/console/.
 */
const CONSOLE_ROUTES: { method: 'GET' | 'POST'; path: string; request: string; status: number; location?: string }[] = [
  { method: 'GET', path: '/console', request: '/console', status: 302, location: '/console/login' },
  { method: 'GET', path: '/console/login', request: '/console/login', status: 501 },
  { method: 'POST', path: '/console/login', request: '/console/login', status: 501 },
  { method: 'GET', path: '/console/callback', request: '/console/callback?code=x&state=y', status: 501 },
  { method: 'POST', path: '/console/logout', request: '/console/logout', status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/approvals', request: '/console/approvals', status: 302, location: '/console/login' },
  { method: 'GET', path: '/console/approvals/events', request: '/console/approvals/events', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/approvals/{id}/decide', request: `/console/approvals/${randomUUID()}/decide`, status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/approvals/{id}', request: `/console/approvals/${randomUUID()}`, status: 302, location: '/console/login' },
  { method: 'GET', path: '/console/agents', request: '/console/agents', status: 302, location: '/console/login' },
  { method: 'GET', path: '/console/agents/{name}', request: '/console/agents/agent-1', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/agents/{name}/suspend', request: '/console/agents/agent-1/suspend', status: 303, location: '/console/login' },
  { method: 'POST', path: '/console/agents/{name}/resume', request: '/console/agents/agent-1/resume', status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/leases', request: '/console/leases?status=active', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/leases/{id}/revoke', request: `/console/leases/${randomUUID()}/revoke`, status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/leases/bulk-revoke', request: '/console/leases/bulk-revoke?subject=agent-1', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/leases/bulk-revoke', request: '/console/leases/bulk-revoke', status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/tasks', request: '/console/tasks', status: 302, location: '/console/login' },
  { method: 'GET', path: '/console/tasks/{id}', request: `/console/tasks/${randomUUID()}`, status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/tasks/{id}/complete', request: `/console/tasks/${randomUUID()}/complete`, status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/audit', request: '/console/audit?actor=dev/admin&since=2026-01-01T00:00:00Z', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/audit/verify', request: '/console/audit/verify', status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/sessions', request: '/console/sessions', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/sessions/{id}/revoke', request: `/console/sessions/${'ab'.repeat(32)}/revoke`, status: 303, location: '/console/login' },
  { method: 'POST', path: '/console/sessions/revoke-actor', request: '/console/sessions/revoke-actor', status: 303, location: '/console/login' },
  { method: 'GET', path: '/console/assets/{file}', request: '/console/assets/console.css', status: 200 },
  { method: 'GET', path: '/console/notifications', request: '/console/notifications', status: 302, location: '/console/login' },
  { method: 'POST', path: '/console/notifications/{id}/retry', request: `/console/notifications/${randomUUID()}/retry`, status: 303, location: '/console/login' },
  // Where the provider's logout returns the browser: a fixed Signed out page for anyone.
  { method: 'GET', path: '/console/signed-out', request: '/console/signed-out', status: 200 },
];
const isConsole = (path: string) => path === '/console' || path.startsWith('/console/');

const routeKey = (r: { method: string; path: string }) => `${r.method.toUpperCase()} ${r.path}`;
const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace']);

describe('authorization matrix (postgres)', () => {
  let t: TestBroker;
  let shared: Ids;
  let documented: string[];
  const bearers = {} as Record<Caller, { subject?: string; bearer?: string }>;

  useTestBroker('postgres', (_db, broker) => (t = broker), {
    config: { roles: ROLES, agents: AGENTS, metrics: { listen: 'off', token_sha256: 'f'.repeat(64) } },
  });

  beforeAll(async () => {
    const expired = await t.issuer.sign('admin', {}, new Date(t.clock.now().getTime() - 2 * 3600_000));
    Object.assign(bearers, {
      'no token': {},
      'expired token': { bearer: expired },
      // JWT-shaped, so it reaches the verifier rather than the static-token lookup.
      'garbage token': { bearer: 'garbage.not-a.jwt' },
      'agent-1': { subject: 'agent-1' },
      'agent-2': { subject: 'agent-2' },
      orchestrator: { subject: 'orchestrator' },
      'orchestrator-2': { subject: 'orchestrator-2' },
      admin: { subject: 'admin' },
      'static admin': { bearer: ADMIN_STATIC_TOKEN },
    });
    const task = await openTask(t, undefined, SHARED_EXTERNAL_ID);
    const { lease, credential } = await issueLease(t, task);
    shared = { task, lease, credential, approval: await requestApproval(t, task), agent: 'agent-1', ...(await suspendRule(t)) };

    const doc = await t.call('GET', '/openapi.json', {});
    expect(doc.status).toBe(200);
    documented = Object.entries(doc.json.paths as Record<string, Record<string, unknown>>).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((m) => HTTP_METHODS.has(m))
        .map((m) => routeKey({ method: m, path })),
    );
  });

  it('has rows for every route in /openapi.json', () => {
    const covered = new Set(ROUTES.filter((r) => !r.public).map(routeKey));
    expect(documented.filter((k) => !covered.has(k))).toEqual([]);
    expect(documented.length).toBeGreaterThan(0);
  });

  it('has rows for every route the app registers, documented or not', () => {
    const covered = new Set(ROUTES.map(routeKey));
    const all = t.broker.app.routes
      .filter((r) => r.method !== 'ALL')
      .map((r) => ({ method: r.method, path: r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/(.)\/$/, '$1') }));
    const registered = new Set(all.filter((r) => !isConsole(r.path)).map(routeKey));
    expect([...registered].filter((k) => !covered.has(k))).toEqual([]);
    // The console's routes are listed in CONSOLE_ROUTES, and checked apart below.
    expect(new Set(all.filter((r) => isConsole(r.path)).map(routeKey))).toEqual(new Set(CONSOLE_ROUTES.map(routeKey)));
    expect([...covered].filter((k) => !registered.has(k))).toEqual([]);
  });

  it('has no rows for routes that no longer exist', async () => {
    const live = new Set(documented);
    expect(ROUTES.filter((r) => !r.public && !live.has(routeKey(r))).map(routeKey)).toEqual([]);
    for (const r of ROUTES.filter((route) => route.public)) {
      // The plain routes are not documented; they must still answer.
      expect(live.has(routeKey(r)), routeKey(r)).toBe(false);
      const res = await t.call(r.method, r.request(shared).path, {});
      expect(res.json?.code, routeKey(r)).not.toBe('not_found');
    }
    expect(new Set(ROUTES.map(routeKey)).size).toBe(ROUTES.length);
  });

  it('names every caller on every row, and guards every /v1 route', () => {
    for (const r of ROUTES) {
      expect(Object.keys(r.expect).sort(), routeKey(r)).toEqual([...CALLERS].sort());
      expect(r.public === true, routeKey(r)).toBe(!r.path.startsWith('/v1/'));
      if (!r.public) for (const c of ['no token', 'expired token', 'garbage token'] as const) expect(r.expect[c].status, `${routeKey(r)} × ${c}`).toBe(401);
    }
  });

  it.each(CONSOLE_ROUTES.flatMap((route) => CALLERS.map((caller) => ({ name: `${routeKey(route)} × ${caller}`, route, caller }))))(
    'console: $name answers without a console session as it does for anyone',
    async ({ route, caller }) => {
      const as = bearers[caller];
      const bearer = as.bearer ?? (as.subject ? await t.tokenFor(as.subject) : undefined);
      const res = await t.broker.app.request(route.request, {
        method: route.method,
        headers: { ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...(route.method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
        body: route.method === 'POST' ? 'csrf=x&verdict=approve&reason=matrix&subject=admin' : undefined,
        redirect: 'manual',
      });
      expect({ status: res.status, location: res.headers.get('location') ?? undefined }).toEqual({ status: route.status, location: route.location });
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      if (route.status === 501) expect(await res.text()).toContain('console.oidc');
    },
  );

  const rows = ROUTES.flatMap((route) => CALLERS.map((caller) => ({ name: `${routeKey(route)} × ${caller}`, route, caller })));

  it.each(rows)('$name', async ({ route, caller }) => {
    const want = route.expect[caller];
    const ids: Ids = { ...shared, ...(route.fresh ? await route.fresh(t) : {}) };
    const req = route.request(ids);
    const res = await t.call(route.method, req.path, bearers[caller], req.body, req.contentType);

    expect({ status: res.status, code: res.json?.code }).toEqual({ status: want.status, code: want.code ?? res.json?.code });
    if (res.status >= 400 && res.status < 500 && route.path.startsWith('/oauth2/')) {
      // RFC 6749's error format on the OAuth endpoints, not problem+json.
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(typeof res.json?.error).toBe('string');
      if (res.status === 401) expect(res.headers.get('www-authenticate')).toMatch(route.path === '/oauth2/introspect' ? /^Basic / : /^Bearer/);
    } else if (res.status >= 400 && res.status < 500 && route.path.startsWith('/ssf/')) {
      // RFC 8935's error format (`err`, `description`) on the SSF poll.
      expect(typeof res.json?.err).toBe('string');
      if (res.status === 401) expect(res.headers.get('www-authenticate')).toMatch(/^Basic /);
    } else if (res.status >= 400 && res.status < 500) {
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(typeof res.json?.code).toBe('string');
      expect(res.json.status).toBe(res.status);
      if (res.status === 401) expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
      if (res.status === 404) expect(res.json.code).toMatch(/not_found$/);
    }
    if (want.status < 300 && route.check) route.check(caller, res.json, ids);

    if (want.status >= 400) {
      // A refusal for someone else's resource must read exactly like one for a resource that does not exist.
      if (route.resource && !want.own) {
        const ghost = route.request({
          task: freshId('ghost'),
          lease: randomUUID(),
          approval: randomUUID(),
          credential: 'ghost',
          agent: freshId('ghost'),
          suspension: randomUUID(),
          subject: freshId('ghost'),
        });
        const other = await t.call(route.method, ghost.path, bearers[caller], ghost.body, ghost.contentType);
        expect({ status: other.status, code: other.json?.code }, 'same answer for a missing resource').toEqual({ status: res.status, code: res.json?.code });
      }
      if (route.intact) await route.intact(t, ids);
    }
  });

  describe("an agent's owner (owner.principals)", () => {
    const OWNER = { subject: 'owner-1' };

    it('may review, suspend and resume its own agent, and its suspension stops the agent', async () => {
      const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-owned' }, roles: ['demo'], ttl_seconds: 600 })).json.task.id;
      const lease = (await t.call('POST', '/v1/credentials', { subject: 'agent-owned' }, { task, role: 'demo' })).json.lease.id;

      const review = await t.call('GET', '/v1/agents/owned', OWNER);
      expect(review.status, review.text).toBe(200);
      expect(review.json.agent).toMatchObject({ name: 'owned', owner: { name: 'team-o' }, suspension: null });

      const suspended = await t.call('POST', '/v1/agents/owned/suspend', OWNER, { reason: 'paused by its owner' });
      expect(suspended.status, suspended.text).toBe(200);
      expect(suspended.json).toMatchObject({ revoking: 1, suspension: { agent: 'owned', suspended_by: 'test/owner-1' } });
      expect(['revoking', 'revoked']).toContain(await leaseStatus(t, lease));
      expect((await t.call('POST', '/v1/credentials', { subject: 'agent-owned' }, { task, role: 'demo' })).json.code).toBe('agent_suspended');

      const resumed = await t.call('POST', '/v1/agents/owned/resume', OWNER, { reason: 'back to work' });
      expect(resumed.status, resumed.text).toBe(200);
      expect(resumed.json.suspension).toMatchObject({ resumed_by: 'test/owner-1', resume_reason: 'back to work' });
      expect((await t.call('POST', '/v1/credentials', { subject: 'agent-owned' }, { task, role: 'demo' })).status).toBe(201);
    });

    it("is told not_agent_owner for any other agent, existing or not, and not_admin on the rest of the registry", async () => {
      const unowned = await createAgent(t);
      const ownedByAnother = await createAgent(t, 'owner-2');
      for (const name of ['agent-1', unowned, ownedByAnother, freshId('ghost')]) {
        for (const [method, path, body] of [
          ['GET', `/v1/agents/${name}`, undefined],
          ['POST', `/v1/agents/${name}/suspend`, { reason: 'not mine' }],
          ['POST', `/v1/agents/${name}/resume`, { reason: 'not mine' }],
        ] as const) {
          const res = await t.call(method, path, OWNER, body);
          expect({ status: res.status, code: res.json?.code }, `${method} ${path}`).toEqual({ status: 403, code: 'not_agent_owner' });
        }
      }
      for (const name of ['agent-1', unowned, ownedByAnother]) expect(await agentSuspension(t, name), name).toBeNull();

      const rule = await suspendRule(t);
      for (const [method, path, body] of [
        ['GET', '/v1/agents', undefined],
        ['POST', '/v1/agents', agentBody(freshId('by-owner'))],
        ['DELETE', `/v1/agents/${unowned}`, undefined],
        ['DELETE', '/v1/agents/owned', undefined],
        ['GET', '/v1/suspensions', undefined],
        ['POST', '/v1/suspensions', { match: { issuer: 'test', subject: 'agent-owned' }, reason: 'by its owner' }],
        ['POST', `/v1/suspensions/${rule.suspension}/lift`, { reason: 'by an owner' }],
      ] as const) {
        const res = await t.call(method, path, OWNER, body);
        expect({ status: res.status, code: res.json?.code }, `${method} ${path}`).toEqual({ status: 403, code: 'not_admin' });
      }
      expect((await adminGet(t, `/v1/agents/${unowned}`)).agent.name).toBe(unowned);
      expect((await rulesInForce(t)).map((x) => x.id)).toContain(rule.suspension);
      expect((await rulesInForce(t)).filter((x) => x.rule.subject === 'agent-owned')).toEqual([]);
    });
  });

  describe("the agent's ceiling", () => {
    it('refuses a task that names a role outside the ceiling (403 role_denied), and opens one inside it', async () => {
      for (const roles of [['demo', 'flaky'], ['flaky'], ['special']]) {
        const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles, ttl_seconds: 600 });
        expect({ status: res.status, code: res.json?.code }, roles.join(',')).toEqual({ status: 403, code: 'role_denied' });
        expect(res.json.roles).toEqual(roles.filter((r) => r !== 'demo'));
      }
      const inside = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo', 'gated'], ttl_seconds: 600 });
      expect(inside.status, inside.text).toBe(201);
    });

    it('refuses a credential for a role outside the ceiling though the task lists it (403 role_denied), and issues one inside it (201)', async () => {
      // Opened before the agent was registered (registration is not required here), so the task lists a role its ceiling lacks.
      const name = freshId('ceiling');
      const subject = `agent-${name}`;
      const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles: ['demo', 'flaky'], ttl_seconds: 600 });
      expect(opened.status, opened.text).toBe(201);
      const task = opened.json.task.id;
      const registered = await t.call('POST', '/v1/agents', { subject: 'admin' }, { ...agentBody(name), match: { issuer: 'test', subject } });
      expect(registered.status, registered.text).toBe(201);

      const outside = await t.call('POST', '/v1/credentials', { subject }, { task, role: 'flaky' });
      expect({ status: outside.status, code: outside.json?.code }).toEqual({ status: 403, code: 'role_denied' });
      expect(outside.headers.get('content-type')).toContain('application/problem+json');
      const denied = (await adminGet(t, `/v1/audit?target=task:${task}&action=credential.denied`)).items;
      expect(denied.map((e: { reason: string }) => e.reason)).toEqual([`role flaky is outside agent ${name}'s ceiling`]);

      const inside = await t.call('POST', '/v1/credentials', { subject }, { task, role: 'demo' });
      expect(inside.status, inside.text).toBe(201);
      expect(inside.json.lease).toMatchObject({ role: 'demo', agent: name, agent_owner: 'team-m' });
    });
  });
});

// ---- the console, signed in ----

/**
 * The kinds of people the console has, each signed in through the dev login (all of the dev issuer): an admin; an
 * approver of `gated` who owns nothing; an orchestrator scoped to the label team=b; an owner of the agent `owned`
 * who is nothing else; and an approver of `gated` who also owns the agent `ao-bot`.
 */
const PERSONS = { admin: 'admin', approver: 'approver-a', orchestrator: 'orch-b', owner: 'owner-o', 'approver+owner': 'approver-o' } as const;
type Person = keyof typeof PERSONS;
const PERSON_LIST = Object.keys(PERSONS) as Person[];

const devOwner = (name: string, ...subjects: string[]) => ({ name, contact: `${name}@example.com`, principals: subjects.map((subject) => ({ issuer: 'dev', subject })) });
const consoleConfig = await (async () => {
  const base = await devConsoleConfig({
    principals: {
      orchestrators: [
        { issuer: 'test', subject: 'orchestrator' },
        { issuer: 'dev', subject: 'orch-b', scope: { labels: { team: 'b' } } },
      ],
      admins: [{ issuer: 'dev', subject: 'admin' }],
    },
    agents: {
      require_registration: false,
      register: [
        { name: 'owned', match: { issuer: 'test', subject: 'agent-owned' }, owner: devOwner('team-o', 'owner-o'), purpose: "the owner's agent", roles: ['demo'] },
        { name: 'ao-bot', match: { issuer: 'test', subject: 'agent-ao' }, owner: devOwner('team-ao', 'approver-o'), purpose: "the approver-owner's agent", roles: ['demo'] },
        { name: 'other', match: { issuer: 'test', subject: 'agent-other' }, owner: devOwner('team-x'), purpose: 'owned by nobody of the matrix', roles: ['demo'] },
      ],
    },
    // A webhook nobody listens at: each approval's notification fails at once, so "Retry now" has a real failing row.
    notifications: { timeout: 1, webhooks: [{ name: 'nobody', url: 'http://127.0.0.1:1/matrix', format: 'json' }] },
  });
  // approver-o approves `gated` beside approver-a (devConsoleConfig's); nobody but admins approves `gated-b`.
  const roles = base.roles!.map((r) => (r.name === 'gated' ? { ...r, approvers: [...(r.approvers ?? []), { issuer: 'dev', subject: 'approver-o' }] } : r));
  return { ...base, roles };
})();

/** The ids a signed-in row names: the shared fixtures, or a row's own throwaway ones in their place. */
interface ConsoleIds {
  /** Pending, of `gated` (approver and approver+owner approve it). */
  approvalMine: string;
  /** Pending, of `gated-b` (admins only). */
  approvalOther: string;
  /** Opened by test/orchestrator with team=b: in orch-b's scope. */
  taskIn: string;
  /** Opened by test/orchestrator with team=c: out of orch-b's scope. */
  taskOut: string;
  /** Active, of agent-matrix (on a task of its own, out of orch-b's scope). */
  lease: string;
  /** A failing outbox row (the webhook nobody listens at). */
  notification: string;
  /** A throwaway agent (its owners as the row says). */
  agent?: string;
  /** A throwaway person signed in, for the session actions. */
  spare?: SignedIn & { subject: string };
  /** The active lease's agent subject, for bulk revocation. */
  subject?: string;
}

interface Answer {
  status: number;
  /** The redirect's target. */
  location?: string | ((ids: ConsoleIds) => string);
  /** The page's <title> (before " · tasklease console"). */
  title?: string | ((ids: ConsoleIds) => string);
  /** The request acts (a successful action): no snapshot comparison, `acted` checks it happened. Anything else changes no row. */
  acts?: boolean;
  /** A refusal audited by design: the one change is this audit event (an admin's revocation is audited even when it matches nothing). */
  audits?: string;
}

interface ConsoleCase {
  /** Which fixture the row names, when a route has several. */
  name?: string;
  /** Throwaway fixtures, built before the request (and before the snapshot). */
  fresh?: (f: ConsoleFixtures) => Promise<Partial<ConsoleIds>>;
  /** Sign the person in afresh for this row (logout and login end the session they are sent with). */
  freshClient?: boolean;
  request: (ids: ConsoleIds) => { path: string; form?: Record<string, string> };
  expect: Record<Person, Answer>;
  /** On a 200 page: the text appears exactly for the persons listed. */
  shows?: { text: (ids: ConsoleIds) => string; to: Person[] }[];
  /** After an answer that acts: it did. */
  acted?: (f: ConsoleFixtures, ids: ConsoleIds, who: SignedIn) => Promise<void>;
}

type SignedIn = ReturnType<typeof consoleClient> & { token: string };
interface ConsoleFixtures {
  /** Calls the API as a dev subject (the admin unless told). */
  api: (method: string, path: string, body?: unknown, as?: string) => Promise<{ status: number; json: any; text: string }>;
  signIn: (subject: string) => Promise<SignedIn>;
  openTask: (labels: Record<string, string>, roles?: string[], agent?: string) => Promise<string>;
  approval: (role: 'gated' | 'gated-b') => Promise<string>;
  lease: (agent?: string) => Promise<string>;
  /** A registered agent, owned by the dev subjects given. */
  agent: (...owners: string[]) => Promise<string>;
  /**
   * A throwaway person, signed in: the owner of a throwaway agent (so the dev login takes it), one per row, so
   * revoking every session of it revokes exactly one.
   */
  spare: () => Promise<SignedIn & { subject: string }>;
}

const every = (answer: Answer): Record<Person, Answer> => Object.fromEntries(PERSON_LIST.map((p) => [p, answer])) as Record<Person, Answer>;
const only = (yes: Person[], ok: Answer, no: Answer): Record<Person, Answer> => Object.fromEntries(PERSON_LIST.map((p) => [p, yes.includes(p) ? ok : no])) as Record<Person, Answer>;
const page = (title: Answer['title']): Answer => ({ status: 200, title });
const to = (location: Answer['location'], status = 302): Answer => ({ status, location });
const acts = (location: Answer['location']): Answer => ({ status: 303, location, acts: true });
const NOT_FOUND: Answer = { status: 404, title: 'Not found' };
const ADMINS_ONLY: Answer = { status: 403, title: 'Admins only' };
const ORCHESTRATORS_ONLY: Answer = { status: 403, title: 'Orchestrators and admins only' };
const adminOnlyPage = (title: string) => only(['admin'], page(title), ADMINS_ONLY);
const LANDING: Record<Person, string> = { admin: '/console/approvals', approver: '/console/approvals', orchestrator: '/console/tasks', owner: '/console/agents', 'approver+owner': '/console/approvals' };

const leaseStatusOf = async (f: ConsoleFixtures, id: string) => (await f.api('GET', `/v1/leases/${id}`)).json.lease.status as string;
const signedOutNow = async (who: SignedIn) => expect((await who.request('GET', '/console/approvals')).headers.get('location')).toBe('/console/login');

/**
 * What each signed-in person gets on each console route, keyed like CONSOLE_ROUTES (which every key must match, and
 * the other way round). Principles: the admin pages answer everyone else 403 "Admins only", the tasks pages a
 * non-orchestrator 403; a request, agent or task the person may not see reads as a 404 page exactly like a missing
 * one, and so does suspending or resuming an agent one does not own (agentService.forAdminOrOwner: ownership
 * before existence); deciding a request one may not decide is a redirect with a notice; every refused action leaves
 * every row as it was.
 */
const SIGNED_IN: Record<string, ConsoleCase[]> = {
  'GET /console': [
    {
      request: () => ({ path: '/console' }),
      expect: { ...(Object.fromEntries(PERSON_LIST.map((p) => [p, to(LANDING[p])])) as Record<Person, Answer>), admin: page('Overview') },
    },
  ],
  // The dev login's page answers a person signed in as anyone else.
  'GET /console/login': [{ request: () => ({ path: '/console/login' }), expect: every(page('Sign in (dev)')) }],
  // Signing in again (as oneself) lands as the first login did (test/console/sessions.test.ts: it ends the session held).
  'POST /console/login': [
    {
      freshClient: true,
      request: () => ({ path: '/console/login' }),
      expect: Object.fromEntries(PERSON_LIST.map((p) => [p, acts(LANDING[p])])) as Record<Person, Answer>,
    },
  ],
  'GET /console/callback': [{ request: () => ({ path: '/console/callback?code=x&state=y' }), expect: every({ status: 501, title: 'The console needs an identity provider' }) }],
  'POST /console/logout': [{ freshClient: true, request: () => ({ path: '/console/logout' }), expect: every(acts('/console/login')), acted: async (_f, _ids, who) => signedOutNow(who) }],
  'GET /console/signed-out': [{ request: () => ({ path: '/console/signed-out' }), expect: every(page('Signed out')) }],
  'GET /console/assets/{file}': [{ request: () => ({ path: '/console/assets/console.css' }), expect: every({ status: 200 }) }],

  // Approvals: everyone signed in has the page; each sees the requests it may decide.
  'GET /console/approvals': [
    {
      request: () => ({ path: '/console/approvals' }),
      expect: every(page('Approvals')),
      shows: [
        { text: (ids) => `/console/approvals/${ids.approvalMine}`, to: ['admin', 'approver', 'approver+owner'] },
        { text: (ids) => `/console/approvals/${ids.approvalOther}`, to: ['admin'] },
      ],
    },
  ],
  // The stream of what the person may decide (nothing, for some): it is opened, then dropped.
  'GET /console/approvals/events': [{ request: () => ({ path: '/console/approvals/events' }), expect: every({ status: 200 }) }],
  'GET /console/approvals/{id}': [
    { name: 'gated', request: (ids) => ({ path: `/console/approvals/${ids.approvalMine}` }), expect: only(['admin', 'approver', 'approver+owner'], page('Approval'), NOT_FOUND) },
    { name: 'gated-b', request: (ids) => ({ path: `/console/approvals/${ids.approvalOther}` }), expect: only(['admin'], page('Approval'), NOT_FOUND) },
    { name: 'missing', request: () => ({ path: `/console/approvals/${randomUUID()}` }), expect: every(NOT_FOUND) },
  ],
  'POST /console/approvals/{id}/decide': [
    {
      name: 'gated',
      fresh: async (f) => ({ approvalMine: await f.approval('gated') }),
      request: (ids) => ({ path: `/console/approvals/${ids.approvalMine}/decide`, form: { verdict: 'approve', reason: 'authorization matrix' } }),
      expect: only(['admin', 'approver', 'approver+owner'], acts('/console/approvals?notice=approved'), to('/console/approvals?notice=approval_not_found', 303)),
      acted: async (f, ids) => expect((await f.api('GET', `/v1/approvals/${ids.approvalMine}`)).json.approval.status).toBe('approved'),
    },
    {
      name: 'gated-b',
      fresh: async (f) => ({ approvalOther: await f.approval('gated-b') }),
      request: (ids) => ({ path: `/console/approvals/${ids.approvalOther}/decide`, form: { verdict: 'approve', reason: 'authorization matrix' } }),
      expect: only(['admin'], acts('/console/approvals?notice=approved'), to('/console/approvals?notice=approval_not_found', 303)),
      acted: async (f, ids) => expect((await f.api('GET', `/v1/approvals/${ids.approvalOther}`)).json.approval.status).toBe('approved'),
    },
    {
      name: 'missing',
      request: () => ({ path: `/console/approvals/${randomUUID()}/decide`, form: { verdict: 'approve', reason: 'authorization matrix' } }),
      expect: every(to('/console/approvals?notice=approval_not_found', 303)),
    },
  ],

  // Agents: the list holds what the person may act on; another's agent's page reads as a missing one's.
  'GET /console/agents': [
    {
      request: () => ({ path: '/console/agents' }),
      expect: every(page('Agents')),
      shows: [
        { text: () => 'id="agent-owned"', to: ['admin', 'owner'] },
        { text: () => 'id="agent-ao-bot"', to: ['admin', 'approver+owner'] },
        { text: () => 'id="agent-other"', to: ['admin'] },
      ],
    },
  ],
  'GET /console/agents/{name}': [
    { name: 'owned', request: () => ({ path: '/console/agents/owned' }), expect: only(['admin', 'owner'], page('Agent owned'), NOT_FOUND) },
    { name: 'ao-bot', request: () => ({ path: '/console/agents/ao-bot' }), expect: only(['admin', 'approver+owner'], page('Agent ao-bot'), NOT_FOUND) },
    { name: 'other', request: () => ({ path: '/console/agents/other' }), expect: only(['admin'], page('Agent other'), NOT_FOUND) },
    { name: 'missing', request: () => ({ path: `/console/agents/${freshId('ghost')}` }), expect: every(NOT_FOUND) },
  ],
  ...Object.fromEntries(
    (['suspend', 'resume'] as const).map((action) => {
      const done = action === 'suspend' ? 'suspended' : 'resumed';
      const back = (notice: string) => (ids: ConsoleIds) => `/console/agents/${ids.agent}?notice=${notice}`;
      // A resume needs a suspension: by an owner where owners may resume, else by an admin.
      const prepare = async (f: ConsoleFixtures, owners: string[]) => {
        const agent = await f.agent(...owners);
        if (action === 'resume') {
          const res = await f.api('POST', `/v1/agents/${agent}/suspend`, { reason: 'authorization matrix' }, owners[0] ?? 'admin');
          expect(res.status, res.text).toBe(200);
        }
        return { agent };
      };
      const suspended = async (f: ConsoleFixtures, ids: ConsoleIds) => (await f.api('GET', `/v1/agents/${ids.agent}`)).json.agent.suspension;
      const acted = async (f: ConsoleFixtures, ids: ConsoleIds) =>
        action === 'suspend' ? expect(await suspended(f, ids)).toMatchObject({ reason: 'authorization matrix' }) : expect(await suspended(f, ids)).toBeNull();
      const cases: ConsoleCase[] = [
        {
          name: "the owners' agent",
          fresh: (f) => prepare(f, ['owner-o', 'approver-o']),
          request: (ids) => ({ path: `/console/agents/${ids.agent}/${action}`, form: { reason: 'authorization matrix' } }),
          expect: only(['admin', 'owner', 'approver+owner'], acts(back(done)), NOT_FOUND),
          acted,
        },
        {
          name: "nobody's agent",
          fresh: (f) => prepare(f, []),
          request: (ids) => ({ path: `/console/agents/${ids.agent}/${action}`, form: { reason: 'authorization matrix' } }),
          expect: only(['admin'], acts(back(done)), NOT_FOUND),
          acted,
        },
        { name: 'missing', request: () => ({ path: `/console/agents/${freshId('ghost')}/${action}`, form: { reason: 'authorization matrix' } }), expect: every(NOT_FOUND) },
      ];
      return [`POST /console/agents/{name}/${action}`, cases];
    }),
  ),

  // Leases: admins only, pages and actions alike.
  'GET /console/leases': [{ request: () => ({ path: '/console/leases?status=active' }), expect: adminOnlyPage('Leases') }],
  'POST /console/leases/{id}/revoke': [
    {
      name: 'active',
      fresh: async (f) => ({ lease: await f.lease() }),
      request: (ids) => ({ path: `/console/leases/${ids.lease}/revoke`, form: { reason: 'authorization matrix' } }),
      expect: only(['admin'], acts('/console/leases?notice=revoking'), ADMINS_ONLY),
      acted: async (f, ids) => expect(['revoking', 'revoked']).toContain(await leaseStatusOf(f, ids.lease)),
    },
    {
      name: 'missing',
      request: () => ({ path: `/console/leases/${randomUUID()}/revoke`, form: { reason: 'authorization matrix' } }),
      expect: only(['admin'], { ...NOT_FOUND, audits: 'admin.revoke' }, ADMINS_ONLY),
    },
  ],
  'GET /console/leases/bulk-revoke': [{ request: () => ({ path: '/console/leases/bulk-revoke?subject=agent-matrix' }), expect: adminOnlyPage('Bulk revoke') }],
  'POST /console/leases/bulk-revoke': [
    {
      fresh: async (f) => {
        const subject = `agent-${freshId('bulk')}`;
        return { subject, lease: await f.lease(subject) };
      },
      request: (ids) => ({ path: '/console/leases/bulk-revoke', form: { subject: ids.subject!, reason: 'authorization matrix' } }),
      expect: only(['admin'], acts((ids) => `/console/leases?subject=${ids.subject}&status=revoking&notice=bulk_revoking&revoked=1`), ADMINS_ONLY),
      acted: async (f, ids) => expect(['revoking', 'revoked']).toContain(await leaseStatusOf(f, ids.lease)),
    },
  ],

  // Tasks: orchestrators (their scope) and admins.
  'GET /console/tasks': [
    {
      request: () => ({ path: '/console/tasks' }),
      expect: only(['admin', 'orchestrator'], page('Tasks'), ORCHESTRATORS_ONLY),
      shows: [
        { text: (ids) => `/console/tasks/${ids.taskIn}"`, to: ['admin', 'orchestrator'] },
        { text: (ids) => `/console/tasks/${ids.taskOut}"`, to: ['admin'] },
      ],
    },
  ],
  'GET /console/tasks/{id}': [
    { name: 'in scope', request: (ids) => ({ path: `/console/tasks/${ids.taskIn}` }), expect: only(['admin', 'orchestrator'], page((ids) => `Task ${ids.taskIn}`), ORCHESTRATORS_ONLY) },
    { name: 'out of scope', request: (ids) => ({ path: `/console/tasks/${ids.taskOut}` }), expect: { ...only(['admin'], page((ids) => `Task ${ids.taskOut}`), ORCHESTRATORS_ONLY), orchestrator: NOT_FOUND } },
    { name: 'missing', request: () => ({ path: `/console/tasks/${freshId('ghost')}` }), expect: only(['admin', 'orchestrator'], NOT_FOUND, ORCHESTRATORS_ONLY) },
  ],
  'POST /console/tasks/{id}/complete': [
    {
      name: 'in scope',
      fresh: async (f) => ({ taskIn: await f.openTask({ team: 'b' }) }),
      request: (ids) => ({ path: `/console/tasks/${ids.taskIn}/complete`, form: { outcome: 'authorization matrix' } }),
      expect: only(['admin', 'orchestrator'], acts((ids) => `/console/tasks/${ids.taskIn}?notice=completed`), ORCHESTRATORS_ONLY),
      acted: async (f, ids) => expect((await f.api('GET', `/v1/tasks/${ids.taskIn}`)).json.task.status).toBe('completed'),
    },
    {
      name: 'out of scope',
      fresh: async (f) => ({ taskOut: await f.openTask({ team: 'c' }) }),
      request: (ids) => ({ path: `/console/tasks/${ids.taskOut}/complete`, form: { outcome: 'authorization matrix' } }),
      expect: { ...only(['admin'], acts((ids) => `/console/tasks/${ids.taskOut}?notice=completed`), ORCHESTRATORS_ONLY), orchestrator: NOT_FOUND },
      acted: async (f, ids) => expect((await f.api('GET', `/v1/tasks/${ids.taskOut}`)).json.task.status).toBe('completed'),
    },
    {
      name: 'missing',
      request: () => ({ path: `/console/tasks/${freshId('ghost')}/complete`, form: { outcome: 'authorization matrix' } }),
      expect: only(['admin', 'orchestrator'], NOT_FOUND, ORCHESTRATORS_ONLY),
    },
  ],

  // Admins only: audit, notifications, sessions.
  'GET /console/audit': [{ request: () => ({ path: '/console/audit?actor=dev/admin&since=2026-01-01T00:00:00Z' }), expect: adminOnlyPage('Audit') }],
  // Verifying writes no row (its result is kept in memory), so even the admin's changes nothing.
  'POST /console/audit/verify': [{ request: () => ({ path: '/console/audit/verify' }), expect: only(['admin'], to('/console/audit#chain', 303), ADMINS_ONLY) }],
  'GET /console/notifications': [{ request: () => ({ path: '/console/notifications' }), expect: adminOnlyPage('Notifications') }],
  'POST /console/notifications/{id}/retry': [
    {
      name: 'failing',
      request: (ids) => ({ path: `/console/notifications/${ids.notification}/retry` }),
      expect: only(['admin'], acts('/console/notifications?notice=retry_scheduled'), ADMINS_ONLY),
      acted: async (f, ids) => expect((await f.api('GET', `/v1/audit?action=notification.retry_requested&target=notification:${ids.notification}`)).json.items).toHaveLength(1),
    },
    { name: 'missing', request: () => ({ path: `/console/notifications/${randomUUID()}/retry` }), expect: only(['admin'], NOT_FOUND, ADMINS_ONLY) },
  ],
  'GET /console/sessions': [{ request: () => ({ path: '/console/sessions' }), expect: adminOnlyPage('Sessions') }],
  'POST /console/sessions/{id}/revoke': [
    {
      name: 'live',
      fresh: async (f) => ({ spare: await f.spare() }),
      request: (ids) => ({ path: `/console/sessions/${sha256Hex(ids.spare!.cookie!.split('=')[1]!)}/revoke`, form: { reason: 'authorization matrix' } }),
      expect: only(['admin'], acts('/console/sessions?notice=revoked'), ADMINS_ONLY),
      acted: async (_f, ids) => signedOutNow(ids.spare!),
    },
    { name: 'missing', request: () => ({ path: `/console/sessions/${'ab'.repeat(32)}/revoke`, form: { reason: 'authorization matrix' } }), expect: only(['admin'], NOT_FOUND, ADMINS_ONLY) },
  ],
  'POST /console/sessions/revoke-actor': [
    {
      fresh: async (f) => ({ spare: await f.spare() }),
      request: (ids) => ({ path: '/console/sessions/revoke-actor', form: { actor: `dev/${ids.spare!.subject}`, reason: 'authorization matrix' } }),
      expect: only(['admin'], acts('/console/sessions?notice=revoked_actor&revoked=1'), ADMINS_ONLY),
      acted: async (_f, ids) => signedOutNow(ids.spare!),
    },
  ],
};

describe('console authorization matrix, signed in (postgres)', () => {
  let t: TestBroker;
  let database: TestDatabase;
  let shared: ConsoleIds;
  const clients = {} as Record<Person, SignedIn>;
  useTestBroker('postgres', (db, broker) => ((database = db), (t = broker)), { config: consoleConfig });

  const fixtures: ConsoleFixtures = {
    async api(method, path, body, as = 'admin') {
      return t.call(method, path, { bearer: await devToken(consoleConfig.data_dir, as) }, body);
    },
    async signIn(subject) {
      const c = consoleClient(t);
      const res = await c.request('POST', '/console/login', { subject });
      expect(res.status, res.text).toBe(303);
      const landing = await c.request('GET', res.headers.get('location')!);
      expect(landing.status).toBe(200);
      return Object.assign(c, { token: /name="csrf" value="([0-9a-f]{64})"/.exec(landing.text)![1]! });
    },
    async openTask(labels, roles = ['demo'], agent = 'agent-matrix') {
      const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: agent }, roles, ttl_seconds: 3600, labels });
      expect(res.status, res.text).toBe(201);
      return res.json.task.id;
    },
    async approval(role) {
      const task = await fixtures.openTask({ team: 'c' }, [role], 'agent-asking');
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-asking' }, { task, role });
      expect(res.status, res.text).toBe(202);
      return res.json.approval.id;
    },
    async lease(agent = 'agent-matrix') {
      const task = await fixtures.openTask({ team: 'c' }, ['demo'], agent);
      const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role: 'demo' });
      expect(res.status, res.text).toBe(201);
      return res.json.lease.id;
    },
    async agent(...owners) {
      const name = freshId('matrix-agent');
      const res = await fixtures.api('POST', '/v1/agents', { name, match: { issuer: 'test', subject: `agent-${name}` }, owner: devOwner('team-m', ...owners), purpose: 'authorization matrix', roles: ['demo'] });
      expect(res.status, res.text).toBe(201);
      return name;
    },
    async spare() {
      const subject = freshId('spare');
      await fixtures.agent(subject);
      return Object.assign(await fixtures.signIn(subject), { subject });
    },
  };

  const snapshot = () => consoleTables(database.db);

  beforeAll(async () => {
    const approvalMine = await fixtures.approval('gated');
    const approvalOther = await fixtures.approval('gated-b');
    // One webhook: its first failure leaves it resting (the other row is handed back untried), so a second pass for the other.
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 1 });
    t.broker.notifier.retryNow();
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 1 });
    const [notification] = await database.db.select().from(outbox).where(sql`payload->'approval'->>'id' = ${approvalMine}`);
    shared = {
      approvalMine,
      approvalOther,
      taskIn: await fixtures.openTask({ team: 'b' }),
      taskOut: await fixtures.openTask({ team: 'c' }),
      lease: await fixtures.lease(),
      notification: notification!.id,
    };
    for (const p of PERSON_LIST) clients[p] = await fixtures.signIn(PERSONS[p]);
  });

  it('has signed-in rows for every console route, and each row names every person', () => {
    expect(Object.keys(SIGNED_IN).sort()).toEqual(CONSOLE_ROUTES.map(routeKey).sort());
    for (const [key, cases] of Object.entries(SIGNED_IN)) {
      expect(cases.length, key).toBeGreaterThan(0);
      for (const c of cases) expect(Object.keys(c.expect).sort(), `${key} ${c.name ?? ''}`).toEqual([...PERSON_LIST].sort());
    }
  });

  // Pages first, then actions: the actions' throwaway fixtures then cannot push the shared ones off a listed page.
  const cells = Object.entries(SIGNED_IN)
    .flatMap(([key, cases]) => cases.flatMap((c) => PERSON_LIST.map((person) => ({ name: `${key}${c.name ? ` (${c.name})` : ''} × ${person}`, key, c, person }))))
    .sort((a, b) => Number(a.key.startsWith('POST')) - Number(b.key.startsWith('POST')));

  it.each(cells)('console signed in: $name', async ({ key, c, person }) => {
    const method = key.split(' ')[0]!;
    const ids: ConsoleIds = { ...shared, ...(c.fresh ? await c.fresh(fixtures) : {}) };
    const who = c.freshClient ? await fixtures.signIn(PERSONS[person]) : clients[person];
    const want = c.expect[person];
    const { path, form } = c.request(ids);
    const before = want.acts ? undefined : await snapshot();

    const res = await who.request(method, path, method === 'POST' ? { ...form, ...(key === 'POST /console/login' ? { subject: PERSONS[person] } : { csrf: who.token }) } : undefined);
    if (res.headers.get('content-type')?.includes('event-stream')) await res.res.body?.cancel();

    const resolve = (v: string | ((ids: ConsoleIds) => string) | undefined) => (typeof v === 'function' ? v(ids) : v);
    expect({ status: res.status, location: res.headers.get('location') ?? undefined }, res.text.slice(0, 400)).toEqual({ status: want.status, location: resolve(want.location) });
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    if (want.title) expect(res.text).toContain(`<title>${resolve(want.title)} · tasklease console</title>`);
    if (res.status === 200) for (const s of c.shows ?? []) expect(res.text.includes(s.text(ids)), s.text(ids)).toBe(s.to.includes(person));
    if (before && want.audits) {
      expect(await snapshot(), `a refused request changes nothing but ${want.audits}`).toEqual({ ...before, audit: String(Number(before.audit) + 1) });
      expect((await execRows<{ action: string }>(database.db, sql`select action from audit_events order by seq desc limit 1`))[0]!.action).toBe(want.audits);
    } else if (before) expect(await snapshot(), 'a refused request changes nothing').toEqual(before);
    else if (c.acted) await c.acted(fixtures, ids, who);
  });
});
