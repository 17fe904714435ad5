import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { leaseView, taskView } from '../../leases/view.js';
import type { TaskService } from '../../tasks/service.js';
import { requireOrchestrator } from '../auth.js';
import { callerOf, type AppEnv } from '../env.js';
import { bearer, commonErrors, json, jsonBody, LeaseSchema, NameParam, safeText, SubjectSchema, TaskIdSchema, TaskSchema } from '../schemas.js';

const OpenTaskSchema = z
  .strictObject({
    id: TaskIdSchema.optional(),
    agent: z.strictObject({ issuer: NameParam.optional(), subject: SubjectSchema }),
    roles: z.array(NameParam).min(1).max(64),
    ttl_seconds: z.number().int().min(1).max(30 * 86400),
    /** Labels that approval rules and orchestrator scopes match, e.g. {environment: production}. */
    labels: z.record(z.string().regex(/^[A-Za-z0-9._/-]{1,63}$/), safeText(256)).refine((l) => Object.keys(l).length <= 32, 'at most 32 labels').optional(),
    /** How many credentials the task may be issued in all. */
    max_leases: z.number().int().min(1).max(100_000).optional(),
  })
  .openapi('OpenTask');

const TaskParams = z.object({ id: TaskIdSchema.openapi({ param: { name: 'id', in: 'path' } }) });

const openRoute = createRoute({
  method: 'post',
  path: '/v1/tasks',
  tags: ['orchestrator'],
  summary: 'Open a task: which agent, which roles, until when',
  security: bearer,
  middleware: [requireOrchestrator] as const,
  request: jsonBody(OpenTaskSchema),
  responses: { 201: json(z.object({ task: TaskSchema }), 'Opened'), ...commonErrors, 409: commonErrors[404] },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/tasks/{id}',
  tags: ['orchestrator'],
  summary: 'A task and its leases',
  security: bearer,
  middleware: [requireOrchestrator] as const,
  request: { params: TaskParams },
  responses: { 200: json(z.object({ task: TaskSchema, leases: z.array(LeaseSchema) }), 'The task'), ...commonErrors },
});

const completeRoute = createRoute({
  method: 'post',
  path: '/v1/tasks/{id}/complete',
  tags: ['orchestrator'],
  summary: 'Report completion; every lease of the task is revoked',
  security: bearer,
  middleware: [requireOrchestrator] as const,
  request: { params: TaskParams, ...jsonBody(z.strictObject({ outcome: safeText(64) }).openapi('CompleteTask')) },
  responses: {
    202: json(z.object({ task: TaskSchema, revoking: z.number().int() }), 'Completed; `revoking` leases are being revoked'),
    ...commonErrors,
  },
});

export function registerTaskRoutes(app: OpenAPIHono<AppEnv>, tasks: TaskService) {
  const caller = callerOf;

  app.openapi(openRoute, async (c) => {
    const body = c.req.valid('json');
    const task = await tasks.open(caller(c), {
      id: body.id,
      agent: body.agent,
      roles: body.roles,
      ttlSeconds: body.ttl_seconds,
      labels: body.labels ?? {},
      maxLeases: body.max_leases ?? null,
    });
    return c.json({ task: taskView(task) }, 201);
  });

  app.openapi(getRoute, async (c) => {
    const { task, leases } = await tasks.get(caller(c), c.req.valid('param').id);
    return c.json({ task: taskView(task), leases: leases.map(leaseView) }, 200);
  });

  app.openapi(completeRoute, async (c) => {
    const { task, revoking } = await tasks.complete(caller(c), c.req.valid('param').id, c.req.valid('json').outcome);
    return c.json({ task: taskView(task), revoking }, 202);
  });
}
