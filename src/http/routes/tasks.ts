import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import { AppError } from '../../errors.js';
import { leaseView, taskView } from '../../leases/view.js';
import type { TaskService } from '../../tasks/service.js';
import { requireOrchestrator } from '../auth.js';
import { callerOf, type AppEnv } from '../env.js';
import { bearer, commonErrors, json, jsonBody, LeaseSchema, NameParam, safeText, SubjectSchema, TaskIdSchema, TaskSchema } from '../schemas.js';

const OpenTaskSchema = z
  .strictObject({
    external_id: TaskIdSchema.optional().openapi({
      description: 'Your own reference for the task, unique among your tasks: sent again, it answers the task opened first. The task id is assigned by the broker.',
    }),
    agent: z.strictObject({ issuer: NameParam.optional(), subject: SubjectSchema }),
    roles: z.array(NameParam).min(1).max(64),
    ttl_seconds: z.number().int().min(1).max(30 * 86400),
    /** Labels that approval rules and orchestrator scopes match, e.g. {environment: production}. */
    labels: z.record(z.string().regex(/^[A-Za-z0-9._/-]{1,63}$/), safeText(256)).refine((l) => Object.keys(l).length <= 32, 'at most 32 labels').optional(),
    /** How many credentials the task may be issued in all. */
    max_leases: z.number().int().min(1).max(100_000).optional(),
    purpose: safeText(1024).optional().openapi({ description: 'Why the task exists, in a sentence: audited, and seen by policy (Task.purpose)' }),
    owner: safeText(256).optional().openapi({ description: 'The person or team accountable for the task: audited, and seen by policy (Task.owner)' }),
  })
  .openapi('OpenTask');

/** What hono's validator reads as JSON. */
const JSON_MEDIA = /^application\/([\w.-]+\+)?json$/i;

/**
 * The broker assigns every task id, so that no orchestrator can learn of
 * another's tasks or claim ids another will use (test/tasks/external-id.test.ts).
 * A client still sending `id` is told so, rather than refused as an unknown key.
 */
const refuseChosenId = createMiddleware(async (c, next) => {
  // Only JSON bodies: any other media type is the validator's to refuse (415), as on every route.
  const media = (c.req.header('content-type') ?? '').split(';')[0]!.trim();
  const body: unknown = JSON_MEDIA.test(media) ? await c.req.json().catch(() => undefined) : undefined;
  if (typeof body === 'object' && body !== null && 'id' in body) {
    throw new AppError('task_id_not_accepted', 'task ids are assigned by the broker: send your own reference as external_id and use the returned task.id');
  }
  await next();
});

const TaskParams = z.object({ id: TaskIdSchema.openapi({ param: { name: 'id', in: 'path' } }) });

const openRoute = createRoute({
  method: 'post',
  path: '/v1/tasks',
  tags: ['orchestrator'],
  summary: 'Open a task: which agent, which roles, until when',
  security: bearer,
  middleware: [requireOrchestrator, refuseChosenId] as const,
  request: jsonBody(OpenTaskSchema),
  responses: {
    201: json(z.object({ task: TaskSchema }), 'Opened'),
    200: json(z.object({ task: TaskSchema }), 'Opened before with this external_id and the same request: that task'),
    ...commonErrors,
    409: { ...commonErrors[404], description: 'You opened a different task with this external_id (`task` names it)' },
  },
});

const findRoute = createRoute({
  method: 'get',
  path: '/v1/tasks',
  tags: ['orchestrator'],
  summary: 'Your own task with this external_id (none, or one)',
  security: bearer,
  middleware: [requireOrchestrator] as const,
  request: { query: z.object({ external_id: TaskIdSchema }) },
  responses: { 200: json(z.object({ items: z.array(TaskSchema) }), 'Your tasks with this external_id'), ...commonErrors },
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
    const { task, created } = await tasks.open(caller(c), {
      externalId: body.external_id ?? null,
      agent: body.agent,
      roles: body.roles,
      ttlSeconds: body.ttl_seconds,
      labels: body.labels ?? {},
      maxLeases: body.max_leases ?? null,
      purpose: body.purpose ?? null,
      owner: body.owner ?? null,
    });
    return created ? c.json({ task: taskView(task) }, 201) : c.json({ task: taskView(task) }, 200);
  });

  app.openapi(findRoute, async (c) => {
    const found = await tasks.findByExternalId(caller(c), c.req.valid('query').external_id);
    return c.json({ items: found.map(taskView) }, 200);
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
