import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { appendAudit } from '../../audit/append.js';
import type { Clock } from '../../clock.js';
import type { Db } from '../../db/client.js';
import type { Policy } from '../../policy/decide.js';
import { explain } from '../../policy/evaluate.js';
import type { Limits } from '../../policy/limits.js';
import { actorOf } from '../../identity/types.js';
import { requireAdmin } from '../auth.js';
import { requestOf, type AppEnv } from '../env.js';
import { bearer, commonErrors, json, jsonBody, NameParam, SubjectSchema, TaskIdSchema } from '../schemas.js';

/** Whether `value` nests no deeper than `max`, checked without recursion (so a 10,000-deep array is safe to ask about). */
function nestsAtMost(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return false;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return true;
}

const EvaluateSchema = z
  .strictObject({
    identity: z.strictObject({
      issuer: NameParam,
      subject: SubjectSchema,
      // Claims become policy tags through JSON.stringify, which a very deep value overflows: what a token could never sensibly carry is refused.
      claims: z
        .record(z.string(), z.unknown())
        .default({})
        .refine((c) => nestsAtMost(c, 32), 'claims nest at most 32 levels deep'),
    }),
    task: TaskIdSchema,
    role: NameParam,
    ttl_seconds: z.number().int().min(1).max(7 * 86400).optional(),
  })
  .openapi('PolicyEvaluation');

const evaluateRoute = createRoute({
  method: 'post',
  path: '/v1/policy/evaluate',
  tags: ['admin'],
  summary: 'Explain the decision for an identity, task and role, without issuing anything',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: jsonBody(EvaluateSchema),
  responses: {
    200: json(
      z.object({
        decision: z.enum(['allow', 'deny', 'approval_required']),
        code: z.string().optional(),
        reason: z.string(),
        ttl_seconds: z.number().int().optional(),
        required_by: z.string().optional(),
        conflicts_with: z.string().optional(),
        agent: z.string().optional().describe('The registered agent the identity is'),
        policies: z
          .array(z.string())
          .optional()
          .describe('The Cedar policies that determined the decision: the permits that allowed it, the forbids that fired (none: no permit matched)'),
        policy_set: z.string().describe('The first 16 hex digits of the SHA-256 of the policy set this replica runs'),
      }),
      'The decision and why',
    ),
    ...commonErrors,
  },
});

export function registerPolicyRoutes(app: OpenAPIHono<AppEnv>, deps: { db: Db; policy: Policy; limits: Limits; clock: Clock; agents: Parameters<typeof explain>[0]['agents'] }) {
  app.openapi(evaluateRoute, async (c) => {
    const body = c.req.valid('json');
    const now = deps.clock.now();
    const identity = {
      issuer: body.identity.issuer,
      subject: body.identity.subject,
      claims: { ...body.identity.claims, sub: body.identity.subject },
      tokenSha256: '',
      expiresAt: new Date(now.getTime() + 3600_000),
    };
    const result = await explain(deps, { identity, taskId: body.task, roleName: body.role, ttlSeconds: body.ttl_seconds, now });
    await deps.db.transaction((tx) =>
      appendAudit(tx, [
        {
          at: now,
          actor: c.get('principal').actor,
          action: 'policy.evaluated',
          target: `task:${body.task}`,
          reason: result.reason,
          details: { identity: actorOf(identity), role: body.role, decision: result.decision },
          ...requestOf(c),
        },
      ]),
    );
    return c.json(result, 200);
  });
}
