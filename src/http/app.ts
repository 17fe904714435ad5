import { OpenAPIHono } from '@hono/zod-openapi';
import type { Hono, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { timeout } from 'hono/timeout';
import type { AgentRegistry } from '../agents/registry.js';
import type { AgentService } from '../agents/service.js';
import type { ApprovalService } from '../approvals/service.js';
import type { CheckpointResult } from '../audit/checkpoint.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import type { Policy } from '../policy/decide.js';
import type { Limits } from '../policy/limits.js';
import { AppError } from '../errors.js';
import type { Authenticator } from '../identity/principals.js';
import type { Introspector } from '../leases/introspect.js';
import type { Issuer } from '../leases/issue.js';
import type { Renewer } from '../leases/renew.js';
import type { LeaseService } from '../leases/service.js';
import { accessLogger, type Logger } from '../log.js';
import type { TaskService } from '../tasks/service.js';
import { consoleHeaders } from '../console/security.js';
import { authenticate } from './auth.js';
import type { AppEnv } from './env.js';
import { createErrorHandler, problem } from './problem.js';
import { requestIds } from './request-id.js';
import { registerAdminRoutes } from './routes/admin.js';
import { registerAgentRoutes } from './routes/agent.js';
import { registerAgentRegistryRoutes } from './routes/agents.js';
import { registerApprovalRoutes } from './routes/approvals.js';
import { CONTAINER_CREDENTIALS_PATH, registerAwsRoutes } from './routes/aws.js';
import { registerPolicyRoutes } from './routes/policy.js';
import { registerSystemRoutes, type Readiness } from './routes/system.js';
import { registerTaskRoutes } from './routes/tasks.js';
import { registerOAuthRoutes } from './routes/oauth.js';
import { registerSsfRoutes } from './routes/ssf.js';
import { registerGatewayRoutes } from './routes/gateway.js';
import type { TaskClosures } from '../tasks/closures.js';
import type { GatewayCallAudit } from '../tasks/gateway-calls.js';
import type { SecurityEventPoll } from '../oauth/ssf/poll.js';
import type { TokenExchange } from '../oauth/exchange.js';
import type { Revocation } from '../oauth/revoke.js';
import type { DpopVerifier } from '../oauth/dpop.js';
import type { ClientAuthenticator } from '../oauth/clients.js';

export interface AppDeps {
  db: Db;
  clock: Clock;
  policy: Policy;
  limits: Limits;
  approvals: ApprovalService;
  log: Logger;
  authenticator: Authenticator;
  issue: Issuer;
  renew: Renewer;
  leases: LeaseService;
  tasks: TaskService;
  introspect: Introspector;
  registry: AgentRegistry;
  agentService: AgentService;
  jwks: () => Promise<unknown>;
  /** Signs a checkpoint of the audit chain's head (audit/checkpoint.ts). */
  auditCheckpoint: () => Promise<CheckpointResult>;
  ready: () => Promise<Readiness>;
  /** Prometheus exposition text. */
  metrics: () => Promise<string>;
  /** SHA-256 of the scrape token: /metrics is served on this app only behind it. */
  metricsTokenSha256?: string;
  version: string;
  /** The OAuth endpoints (src/oauth/): metadata, token exchange, revocation. */
  oauth: { metadata: () => unknown; exchange: TokenExchange; revoke: Revocation; clients: ClientAuthenticator };
  /** What a gateway asks besides credentials: task closures, and its calls for the audit trail. */
  gateway: { closures: TaskClosures; recordCalls: GatewayCallAudit };
  /** The SSF transmitter's metadata and RFC 8936 poll (src/oauth/ssf/). */
  ssf: { metadata: () => unknown; poll: SecurityEventPoll };
  /** DPoP proofs on POST /v1/credentials: checked against `publicUrl` + the path (oauth/dpop.ts). */
  dpop: { verifier: Pick<DpopVerifier, 'verify'>; publicUrl: string };
  /** The console's pages (src/console/app.tsx), served at /console: cookie sessions, not Bearer tokens. */
  console?: Hono<any>;
}

const MAX_BODY_BYTES = 64 * 1024;
const REQUEST_TIMEOUT_MS = 20_000;

/**
 * Refuses bodies over `maxSize`. Over HTTP/1.1 (node's parser frames the
 * body), a declared Content-Length is checked without touching the body, and a
 * request with neither Content-Length nor Transfer-Encoding has none (RFC 9112
 * section 6.3): both leave the body to be read straight from the socket,
 * without building a web stream for it. Chunked bodies, and requests handed to
 * app.fetch directly, are counted as they stream, by hono's bodyLimit.
 */
function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  const tooLarge = () => {
    throw new AppError('payload_too_large', `request bodies are limited to ${maxSize} bytes`);
  };
  const streamed = bodyLimit({ maxSize, onError: tooLarge });
  return async (c, next) => {
    const framed = (c.env as { incoming?: unknown } | undefined)?.incoming !== undefined;
    if (!framed || c.req.header('transfer-encoding') !== undefined) return streamed(c, next);
    const length = c.req.header('content-length');
    if (length !== undefined && !(Number(length) <= maxSize)) return tooLarge();
    return next();
  };
}

export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({
    // Every validation failure becomes one problem shape with the failing paths (never the values).
    defaultHook: (result, c) => {
      if (result.success) return;
      const errors = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
      return problem(c, 'validation_failed', 'the request does not match the schema', { errors });
    },
  });

  app.use(requestIds(deps.clock));
  const access = accessLogger(deps.log);
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    access.info(
      { reqId: c.get('requestId'), client_request_id: c.get('clientRequestId'), method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) },
      'request',
    );
  });
  // The console's headers (CSP, frame denial, no-store) on every answer under /console, also those this app gives
  // before the console sees the request (a body over the limit, a request timeout).
  app.use('/console/*', consoleHeaders);
  // Nothing waits forever on a dependency: past this, the caller gets a 503 (the work may still finish, recorded as usual).
  app.use(
    timeout(REQUEST_TIMEOUT_MS, () => new HTTPException(503, { message: 'the request took too long; a dependency is slow or unavailable' })),
  );
  app.use(limitBody(MAX_BODY_BYTES));
  // Outside /v1: OAuth clients authenticate as OAuth says (a subject token, a Bearer at revocation).
  registerOAuthRoutes(app, { ...deps.oauth, introspect: deps.introspect, log: deps.log });
  registerSsfRoutes(app, { ...deps.ssf, clients: deps.oauth.clients, log: deps.log });
  app.use('/v1/*', authenticate(deps.authenticator, new Set([CONTAINER_CREDENTIALS_PATH])));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  registerAgentRoutes(app, deps);
  registerTaskRoutes(app, deps.tasks);
  registerAdminRoutes(app, deps);
  registerSystemRoutes(app, deps);
  registerApprovalRoutes(app, deps.approvals);
  registerGatewayRoutes(app, deps.gateway);
  registerAgentRegistryRoutes(app, deps);
  // The dry run registers nobody (dev mode's registration on first sight is the service's): the registry's own view.
  registerPolicyRoutes(app, { ...deps, agents: deps.registry });
  registerAwsRoutes(app, deps.issue, (role) => deps.policy.role(role)?.aws !== undefined);

  // Not in the OpenAPI document: HTML for people; the authorization matrix checks these routes apart.
  if (deps.console) app.route('/console', deps.console);

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'tasklease', version: deps.version, description: 'Just-in-time, task-bound credentials for agents' },
  });

  app.notFound((c) => problem(c, 'not_found', 'no such endpoint'));
  app.onError(createErrorHandler(deps.log));
  return app;
}
export type App = ReturnType<typeof createApp>;
