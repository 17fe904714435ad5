import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { AppError } from '../../errors.js';
import { boundTo } from '../../policy/decide.js';
import type { TaskClosures } from '../../tasks/closures.js';
import type { GatewayCallAudit } from '../../tasks/gateway-calls.js';
import { requireAgent } from '../auth.js';
import { requestOf, type AppEnv } from '../env.js';
import { bearer, commonErrors, json, jsonBody, NameParam, safeText, TaskIdSchema } from '../schemas.js';

const TaskParams = z.object({ id: TaskIdSchema.openapi({ param: { name: 'id', in: 'path' } }) });
/** Under the request timeout (20 s), so a wait always answers. */
const MAX_WAIT_SECONDS = 15;

const closureRoute = createRoute({
  method: 'get',
  path: '/v1/tasks/{id}/closure',
  tags: ['agent'],
  summary: "Wait until the agent's own task is no longer open (a gateway drops the task's credentials at once)",
  security: bearer,
  middleware: [requireAgent] as const,
  request: {
    params: TaskParams,
    query: z.object({ wait: z.coerce.number().int().min(0).max(MAX_WAIT_SECONDS).default(0).openapi({ description: 'Seconds to wait for the task to close (0-15; default 0: answer at once)' }) }),
  },
  responses: { 200: json(z.object({ task: z.object({ id: z.string(), status: z.string() }) }), 'The task: `open` if it was still open when the wait ran out'), ...commonErrors },
});

const CallSchema = z.strictObject({
  task: TaskIdSchema,
  route: NameParam,
  method: z.string().regex(/^[A-Z]{1,16}$/),
  path: safeText(2048),
  status: z.number().int().min(0).max(999),
  decision: z.enum(['allow', 'deny']),
  rule: safeText(256).optional(),
  bytes_in: z.number().int().min(0),
  bytes_out: z.number().int().min(0),
  ms: z.number().min(0).max(86_400_000),
  at: z.iso.datetime({ offset: true }),
  /** Identical calls counted into one record (bytes summed, `ms` the slowest). */
  count: z.number().int().min(1).max(1_000_000_000).default(1),
});

const callsRoute = createRoute({
  method: 'post',
  path: '/v1/gateway/calls',
  tags: ['agent'],
  summary: "Record a batch of calls an agent's gateway made or refused, in the audit trail",
  security: bearer,
  middleware: [requireAgent] as const,
  request: jsonBody(z.strictObject({ calls: z.array(CallSchema).min(1).max(256) }).openapi('GatewayCalls')),
  responses: { 202: json(z.object({ recorded: z.number().int() }), 'Audited'), ...commonErrors },
});

/** What the gateway (src/gateway/, docs/gateway.md) asks of the broker besides credentials. */
export function registerGatewayRoutes(app: OpenAPIHono<AppEnv>, deps: { closures: TaskClosures; recordCalls: GatewayCallAudit }) {
  app.openapi(closureRoute, async (c) => {
    const { id } = c.req.valid('param');
    const [task] = await deps.closures.tasksOf([id]);
    // Not yours reads like not there.
    if (!task || !boundTo(task, c.get('identity'))) throw new AppError('task_not_found', 'no such task');
    const status = await deps.closures.wait(id, c.req.valid('query').wait * 1000, c.req.raw.signal);
    c.header('Cache-Control', 'no-store');
    return c.json({ task: { id, status } }, 200);
  });

  app.openapi(callsRoute, async (c) => {
    const recorded = await deps.recordCalls(c.get('identity'), c.req.valid('json').calls, requestOf(c));
    return c.json({ recorded }, 202);
  });
}
