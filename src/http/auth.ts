import { createMiddleware } from 'hono/factory';
import type { Authenticator } from '../identity/principals.js';
import { AppError } from '../errors.js';
import { AuthError } from '../identity/types.js';
import type { AppEnv } from './env.js';

const MAX_TOKEN_LENGTH = 16 * 1024;

/** Reads the Bearer token; every /v1 route needs one. */
export function authenticate(authenticator: Authenticator, rawTokenPaths: ReadonlySet<string> = new Set()) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    // AWS SDKs send AWS_CONTAINER_AUTHORIZATION_TOKEN as the whole header value, without a scheme.
    const match = /^Bearer +([^\s]+) *$/i.exec(header) ?? (rawTokenPaths.has(c.req.path) ? /^([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header) : null);
    if (!match) throw new AuthError('token_missing', 'send a Bearer token in the Authorization header');
    if (match[1]!.length > MAX_TOKEN_LENGTH) throw new AuthError('token_malformed', 'the bearer token is too long');
    c.set('principal', await authenticator.authenticate(match[1]!));
    await next();
  });
}

/** Agents are callers with a workload identity; static-token principals cannot ask for credentials. */
export const requireAgent = createMiddleware<AppEnv>(async (c, next) => {
  const identity = c.get('principal').identity;
  if (!identity) throw new AppError('not_agent', 'this endpoint needs a workload identity token');
  c.set('identity', identity);
  await next();
});

export const requireOrchestrator = createMiddleware<AppEnv>(async (c, next) => {
  const p = c.get('principal');
  if (!p.orchestrator && !p.admin) throw new AppError('not_orchestrator', 'this endpoint is for orchestrators');
  await next();
});

export const requireAdmin = createMiddleware<AppEnv>(async (c, next) => {
  if (!c.get('principal').admin) throw new AppError('not_admin', 'this endpoint is for admins');
  await next();
});
