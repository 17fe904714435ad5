import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Agent, AgentRegistry } from '../../agents/registry.js';
import { agentsUse, reviewAgent, REVIEW_DAYS } from '../../agents/review.js';
import type { AgentService } from '../../agents/service.js';
import type { Clock } from '../../clock.js';
import { AgentRuleSchema, AgentSchema } from '../../config/agents.js';
import type { Db } from '../../db/client.js';
import type { AgentSuspension } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { UUID_RE } from '../../ids.js';
import { adminLeaseView } from '../../leases/view.js';
import { requireAdmin } from '../auth.js';
import { callerOf, type AppEnv } from '../env.js';
import { AdminLeaseSchema, bearer, commonErrors, json, jsonBody, safeText } from '../schemas.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

const AgentNameParams = z.object({ name: z.string().max(64).openapi({ param: { name: 'name', in: 'path' } }) });
const Reason = z.strictObject({ reason: safeText(500) });

const SuspensionRuleSchema = AgentRuleSchema.refine((r) => !r.claims && !r.claim_patterns && !r.audience && (r.subject || r.subject_pattern), {
  message: 'a suspension rule names an issuer and a subject or subject_pattern only',
});

const SuspensionSchema = z
  .object({
    id: z.string().uuid(),
    agent: z.string().nullable(),
    rule: z.object({ issuer: z.string(), subject: z.string().optional(), subject_pattern: z.string().optional() }).nullable(),
    reason: z.string(),
    suspended_by: z.string(),
    suspended_at: z.string(),
    revoked: z.number().int().describe('Active leases the suspension moved to revoking'),
    resumed_by: z.string().nullable(),
    resumed_at: z.string().nullable(),
    resume_reason: z.string().nullable(),
  })
  .openapi('Suspension');

// A union, not SuspensionSchema.nullable(): the nullable wrapper keeps the component's name, so the
// document made `Suspension` itself nullable and the SDK typed every suspension as possibly null.
const NullableSuspension = z.union([SuspensionSchema, z.null()]);

const AgentViewSchema = z
  .object({
    name: z.string(),
    source: z.enum(['config', 'api']),
    match: z.record(z.string(), z.unknown()),
    owner: z.object({ name: z.string(), contact: z.string(), principals: z.array(z.record(z.string(), z.unknown())) }),
    purpose: z.string(),
    roles: z.array(z.string()).describe('The ceiling: the roles this agent may ever hold'),
    labels: z.record(z.string(), z.string()),
    created_by: z.string().nullable(),
    created_at: z.string().nullable(),
    suspension: NullableSuspension.describe('The suspension in force, if any'),
    held: z.array(z.object({ role: z.string(), count: z.number().int() })).optional().describe(`Roles held in the last ${REVIEW_DAYS} days`),
    unused_roles: z.array(z.string()).optional().describe(`Roles of the ceiling not held in the last ${REVIEW_DAYS} days`),
  })
  .openapi('Agent');

const AgentReviewSchema = AgentViewSchema.extend({
  held: z.array(z.object({ role: z.string(), count: z.number().int() })),
  unused_roles: z.array(z.string()),
  last_activity: z.string().nullable().describe('When it was last issued a credential'),
  active_leases: z.object({ count: z.number().int(), items: z.array(AdminLeaseSchema) }),
  suspensions: z.array(SuspensionSchema).describe('Newest first'),
}).openapi('AgentReview');

function suspensionView(s: AgentSuspension) {
  return {
    id: s.id,
    agent: s.agent,
    rule: s.rule,
    reason: s.reason,
    suspended_by: s.suspendedBy,
    suspended_at: s.suspendedAt.toISOString(),
    revoked: s.revoked,
    resumed_by: s.resumedBy,
    resumed_at: iso(s.resumedAt),
    resume_reason: s.resumeReason,
  };
}

function agentView(agent: Agent, suspension: AgentSuspension | undefined) {
  return {
    name: agent.name,
    source: agent.source,
    match: agent.match,
    owner: agent.owner,
    purpose: agent.purpose,
    roles: agent.roles,
    labels: agent.labels,
    created_by: agent.createdBy,
    created_at: iso(agent.createdAt),
    suspension: suspension ? suspensionView(suspension) : null,
  };
}

/** Admins, and the agent's owners (`owner.principals`): checked in the handler, where the agent is known. */
const adminOrOwner = { security: bearer };

const listRoute = createRoute({
  method: 'get',
  path: '/v1/agents',
  tags: ['admin'],
  summary: 'The registered agents; with unused_roles=true, only those whose ceiling is wider than their use',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: { query: z.object({ unused_roles: z.enum(['true', 'false']).optional() }) },
  responses: { 200: json(z.object({ items: z.array(AgentViewSchema) }), 'The agents, by name'), ...commonErrors },
});

const createAgentRoute = createRoute({
  method: 'post',
  path: '/v1/agents',
  tags: ['admin'],
  summary: 'Register an agent: its identity rule, owner, purpose and ceiling',
  security: bearer,
  middleware: [requireAdmin] as const,
  // A fresh object over the config's shape: zod copies .openapi onto a schema when it is made, and
  // AgentSchema is made before @hono/zod-openapi extends zod wherever the config loads first (serve).
  request: jsonBody(z.strictObject(AgentSchema.shape).openapi('AgentDefinition')),
  responses: { 201: json(z.object({ agent: AgentViewSchema }), 'Registered'), ...commonErrors, 409: commonErrors[404] },
});

const showRoute = createRoute({
  method: 'get',
  path: '/v1/agents/{name}',
  tags: ['admin'],
  summary: 'Review one agent: its ceiling against what it held, its last activity, its active leases and its suspensions',
  ...adminOrOwner,
  request: { params: AgentNameParams },
  responses: { 200: json(z.object({ agent: AgentReviewSchema }), 'The review'), ...commonErrors },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/agents/{name}',
  tags: ['admin'],
  summary: 'Delete an agent registered through the API (its leases are left as they are)',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: { params: AgentNameParams },
  responses: { 200: json(z.object({ deleted: z.string() }), 'Deleted'), ...commonErrors, 409: commonErrors[404] },
});

const suspendRoute = createRoute({
  method: 'post',
  path: '/v1/agents/{name}/suspend',
  tags: ['admin'],
  summary: "Suspend an agent: revoke its active leases and refuse its requests on every replica from this answer on",
  ...adminOrOwner,
  request: { params: AgentNameParams, ...jsonBody(Reason) },
  responses: { 200: json(z.object({ suspension: SuspensionSchema, revoking: z.number().int() }), 'Suspended'), ...commonErrors },
});

const resumeRoute = createRoute({
  method: 'post',
  path: '/v1/agents/{name}/resume',
  tags: ['admin'],
  summary: 'End an agent\'s suspension',
  ...adminOrOwner,
  request: { params: AgentNameParams, ...jsonBody(Reason) },
  responses: { 200: json(z.object({ suspension: NullableSuspension }), 'Resumed (null: it was not suspended)'), ...commonErrors },
});

const rulesRoute = createRoute({
  method: 'get',
  path: '/v1/suspensions',
  tags: ['admin'],
  summary: 'Suspensions by identity rule in force',
  security: bearer,
  middleware: [requireAdmin] as const,
  responses: { 200: json(z.object({ items: z.array(SuspensionSchema) }), 'In force, oldest first'), ...commonErrors },
});

const suspendRuleRoute = createRoute({
  method: 'post',
  path: '/v1/suspensions',
  tags: ['admin'],
  summary: 'Suspend every identity a rule matches (an issuer and a subject or subject_pattern), registered or not',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: jsonBody(z.strictObject({ match: SuspensionRuleSchema, reason: safeText(500) })),
  responses: { 201: json(z.object({ suspension: SuspensionSchema, revoking: z.number().int() }), 'In force'), ...commonErrors },
});

const liftRoute = createRoute({
  method: 'post',
  path: '/v1/suspensions/{id}/lift',
  tags: ['admin'],
  summary: 'Lift a suspension by rule',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: { params: z.object({ id: z.string().max(64).openapi({ param: { name: 'id', in: 'path' } }) }), ...jsonBody(Reason) },
  responses: { 200: json(z.object({ suspension: SuspensionSchema }), 'Lifted'), ...commonErrors },
});

export function registerAgentRegistryRoutes(app: OpenAPIHono<AppEnv>, deps: { db: Db; clock: Clock; registry: AgentRegistry; agentService: AgentService }) {
  const { registry, agentService } = deps;

  /** The agent, for an admin or one of its owners; anyone else learns nothing of whether it exists. */
  const forAdminOrOwner = (c: Parameters<typeof callerOf>[0], name: string) => agentService.forAdminOrOwner(c.get('principal'), name);

  app.openapi(listRoute, async (c) => {
    const agents = await registry.list();
    const states = await Promise.all(agents.map((a) => registry.get(a.name)));
    const items = agents.map((a, i) => agentView(a, states[i]?.suspension));
    if (c.req.valid('query').unused_roles !== 'true') return c.json({ items }, 200);
    const use = await agentsUse(deps.db, agents, deps.clock.now());
    const wider = items.flatMap((item) => {
      const u = use.get(item.name)!;
      return u.unused.length > 0 ? [{ ...item, held: u.held, unused_roles: u.unused }] : [];
    });
    return c.json({ items: wider }, 200);
  });

  app.openapi(createAgentRoute, async (c) => {
    const agent = await agentService.create(callerOf(c), c.req.valid('json'));
    return c.json({ agent: agentView(agent, undefined) }, 201);
  });

  app.openapi(showRoute, async (c) => {
    const { agent, suspension } = await forAdminOrOwner(c, c.req.valid('param').name);
    const review = await reviewAgent(deps.db, agent, deps.clock.now());
    return c.json(
      {
        agent: {
          ...agentView(agent, suspension),
          held: review.held,
          unused_roles: review.unused,
          last_activity: iso(review.lastActivity),
          active_leases: { count: review.activeCount, items: review.active.map(adminLeaseView) },
          suspensions: review.history.map(suspensionView),
        },
      },
      200,
    );
  });

  app.openapi(deleteRoute, async (c) => {
    const { name } = c.req.valid('param');
    await agentService.remove(callerOf(c), name);
    return c.json({ deleted: name }, 200);
  });

  app.openapi(suspendRoute, async (c) => {
    const { name } = c.req.valid('param');
    await forAdminOrOwner(c, name);
    const result = await agentService.suspend(callerOf(c), name, c.req.valid('json').reason);
    return c.json({ suspension: suspensionView(result.suspension), revoking: result.revoking }, 200);
  });

  app.openapi(resumeRoute, async (c) => {
    const { name } = c.req.valid('param');
    await forAdminOrOwner(c, name);
    const result = await agentService.resume(callerOf(c), name, c.req.valid('json').reason);
    return c.json({ suspension: result.suspension ? suspensionView(result.suspension) : null }, 200);
  });

  app.openapi(rulesRoute, async (c) => c.json({ items: (await agentService.rules()).map(suspensionView) }, 200));

  app.openapi(suspendRuleRoute, async (c) => {
    const body = c.req.valid('json');
    const { issuer, subject, subject_pattern } = body.match;
    const result = await agentService.suspendRule(callerOf(c), { issuer, ...(subject ? { subject } : {}), ...(subject_pattern ? { subject_pattern } : {}) }, body.reason);
    return c.json({ suspension: suspensionView(result.suspension), revoking: result.revoking }, 201);
  });

  app.openapi(liftRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID_RE.test(id)) throw new AppError('suspension_not_found', 'no such suspension');
    return c.json({ suspension: suspensionView(await agentService.lift(callerOf(c), id, c.req.valid('json').reason)) }, 200);
  });
}
