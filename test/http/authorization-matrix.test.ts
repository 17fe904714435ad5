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
 * - every 4xx is application/problem+json with a `code`;
 * - a refused mutation leaves its resource as it was.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_STATIC_TOKEN, freshId, useTestBroker, type TestBroker } from '../support/broker.js';

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
 * `console.oidc`, so the login page and the OIDC callback say the console needs one (501). What a session may
 * do, and the OIDC login itself, are tested in test/console/.
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
    if (res.status >= 400 && res.status < 500) {
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
