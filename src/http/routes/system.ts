import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Introspector } from '../../leases/introspect.js';
import type { PolicyStatus } from '../../policy/cedar/reload.js';
import type { Logger } from '../../log.js';
import { requireAdmin } from '../auth.js';
import type { AppEnv } from '../env.js';
import { metricsHandler } from '../metrics.js';
import { bearer, commonErrors, json, safeText } from '../schemas.js';

export interface Readiness {
  database: boolean;
  migrations: boolean;
  /** Per backend that can check itself: does the broker hold the permissions its roles need? */
  backends?: Record<string, { ok: boolean; missing: string[] }>;
  /** The policy set in force, and why the last reload failed (degraded: the broker still decides, by the old set). */
  policy: PolicyStatus;
}

const ReadinessSchema = z
  .object({
    status: z.enum(['ready', 'degraded', 'not_ready']),
    checks: z.object({
      database: z.boolean(),
      migrations: z.boolean(),
      backends: z.record(z.string(), z.object({ ok: z.boolean(), missing: z.array(z.string()) })).optional(),
      policy: z.object({
        set: z.string().describe('The first 16 hex digits of the SHA-256 of the policy set in force: replicas that agree show the same'),
        reloadError: z.string().optional().describe('Why the last reload was refused; the set in force stayed (degraded)'),
      }),
    }),
  })
  .openapi('Readiness');

const readinessRoute = createRoute({
  method: 'get',
  path: '/v1/readiness',
  tags: ['admin'],
  summary: 'Which readiness check fails, and which backend permissions are missing (GET /readyz says only ready or not)',
  security: bearer,
  middleware: [requireAdmin] as const,
  responses: { 200: json(ReadinessSchema, 'Every check, whether or not the broker is ready'), ...commonErrors },
});

const IntrospectSchema = z
  .object({ token: safeText(16 * 1024), token_type_hint: safeText(64).optional() })
  .openapi('IntrospectionRequest');

const introspectRoute = createRoute({
  method: 'post',
  path: '/v1/introspect',
  tags: ['system'],
  summary: 'RFC 7662 token introspection for credentials from the jwt backend',
  security: bearer,
  request: {
    body: {
      content: { 'application/x-www-form-urlencoded': { schema: IntrospectSchema } },
      required: true,
    },
  },
  responses: {
    200: json(z.object({ active: z.boolean() }).catchall(z.unknown()), 'Whether the token is active, and its claims if so'),
    ...commonErrors,
  },
});

export function registerSystemRoutes(
  app: OpenAPIHono<AppEnv>,
  deps: {
    ready: () => Promise<Readiness>;
    jwks: () => Promise<unknown>;
    introspect: Introspector;
    metrics: () => Promise<string>;
    /** Serves /metrics here, behind this token; without one, only the metrics listener serves it. */
    metricsTokenSha256?: string;
    log: Logger;
  },
) {
  // Which check failed is for operators: logged when readiness changes, shown to admins, never to anyone.
  let wasReady: boolean | undefined;
  async function assess() {
    const checks = await deps.ready();
    const ready = checks.database && checks.migrations && Object.values(checks.backends ?? {}).every((b) => b.ok);
    if (!ready && wasReady !== false) deps.log.warn({ checks }, 'not ready');
    if (ready && wasReady === false) deps.log.info('ready again');
    wasReady = ready;
    // Degraded: serving, by a policy set older than the files (a reload was refused).
    const status = !ready ? ('not_ready' as const) : checks.policy.reloadError ? ('degraded' as const) : ('ready' as const);
    return { ready, status, checks };
  }

  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', async (c) => {
    const { ready, status, checks } = await assess();
    return c.json({ status, policy_set: checks.policy.set }, ready ? 200 : 503);
  });

  app.openapi(readinessRoute, async (c) => {
    const { status, checks } = await assess();
    return c.json({ status, checks }, 200);
  });

  if (deps.metricsTokenSha256) app.get('/metrics', metricsHandler({ metrics: deps.metrics, tokenSha256: deps.metricsTokenSha256 }));

  app.get('/.well-known/jwks.json', async (c) => {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json((await deps.jwks()) as Record<string, unknown>);
  });

  app.openapi(introspectRoute, async (c) => {
    const body = c.req.valid('form');
    c.header('Cache-Control', 'no-store');
    return c.json(await deps.introspect(body.token), 200);
  });
}
