import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Introspector } from '../../leases/introspect.js';
import type { AppEnv } from '../env.js';
import { bearer, commonErrors, json, safeText } from '../schemas.js';

export interface Readiness {
  database: boolean;
  migrations: boolean;
  /** Per backend that can check itself: does the broker hold the permissions its roles need? */
  backends?: Record<string, { ok: boolean; missing: string[] }>;
}

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
  deps: { ready: () => Promise<Readiness>; jwks: () => Promise<unknown>; introspect: Introspector; metrics: () => Promise<string> },
) {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.get('/readyz', async (c) => {
    const checks = await deps.ready();
    const ok = checks.database && checks.migrations && Object.values(checks.backends ?? {}).every((b) => b.ok);
    return c.json({ status: ok ? 'ready' : 'not_ready', checks }, ok ? 200 : 503);
  });

  // Counts only, no identities: scraped without a token, like /healthz.
  app.get('/metrics', async (c) => c.text(await deps.metrics(), 200, { 'Content-Type': 'text/plain; version=0.0.4' }));

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
