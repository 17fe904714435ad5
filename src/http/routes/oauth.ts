import type { Context, Hono } from 'hono';
import type { Logger } from '../../log.js';
import { asOAuthError, OAuthError } from '../../oauth/errors.js';
import type { TokenExchange } from '../../oauth/exchange.js';
import type { Revocation } from '../../oauth/revoke.js';
import { meantFor, type ClientAuthenticator } from '../../oauth/clients.js';
import type { Introspector } from '../../leases/introspect.js';
import type { AppEnv } from '../env.js';
import { requestOf } from '../env.js';

/** The request's form body (RFC 6749 section 3.2: `application/x-www-form-urlencoded`). */
async function form(c: Context<AppEnv>): Promise<URLSearchParams> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new OAuthError('invalid_request', 'send the parameters as application/x-www-form-urlencoded');
  return new URLSearchParams(await c.req.text());
}

/**
 * The OAuth endpoints (docs/oauth.md). They answer in RFC 6749's error format,
 * `{error, error_description}`, not problem+json, with `no-store`; the broker's
 * own code rides along as the description's first word.
 */
export function registerOAuthRoutes(
  app: Hono<AppEnv>,
  deps: { metadata: () => unknown; exchange: TokenExchange; revoke: Revocation; clients: ClientAuthenticator; introspect: Introspector; log: Logger },
) {
  const answerError = (c: Context<AppEnv>, err: unknown) => {
    const known = asOAuthError(err);
    if (!known) deps.log.error({ err: err instanceof Error ? err.name : 'unknown', reqId: c.get('requestId') }, 'oauth endpoint failed');
    const e = known ?? new OAuthError('server_error', 'the request could not be completed', 500);
    c.header('Cache-Control', 'no-store');
    if (e.retryAfter !== undefined) c.header('Retry-After', String(e.retryAfter));
    if (e.status === 401) c.header('WWW-Authenticate', c.req.path === '/oauth2/introspect' ? 'Basic realm="tasklease"' : 'Bearer');
    return c.json({ error: e.error, error_description: e.description }, e.status as 400);
  };

  app.get('/.well-known/oauth-authorization-server', (c) => {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(deps.metadata() as Record<string, unknown>);
  });

  app.post('/oauth2/token', async (c) => {
    try {
      const answer = await deps.exchange(await form(c), requestOf(c), c.req.header('dpop'));
      c.header('Cache-Control', 'no-store');
      c.header('Pragma', 'no-cache');
      return c.json(answer, 200);
    } catch (err) {
      return answerError(c, err);
    }
  });

  // RFC 7662 for resource servers authenticated as OAuth clients: only tokens meant for their audiences are active.
  app.post('/oauth2/introspect', async (c) => {
    try {
      const body = await form(c);
      const server = await deps.clients(c.req.header('authorization'), body);
      const tokens = body.getAll('token');
      if (tokens.length !== 1) throw new OAuthError('invalid_request', 'send the token to introspect, once');
      const answer = await deps.introspect(tokens[0]!);
      c.header('Cache-Control', 'no-store');
      return c.json(answer.active && meantFor(server, answer.aud) ? answer : { active: false }, 200);
    } catch (err) {
      return answerError(c, err);
    }
  });

  app.post('/oauth2/revoke', async (c) => {
    try {
      await deps.revoke(c.req.header('authorization'), await form(c), requestOf(c));
      c.header('Cache-Control', 'no-store');
      return c.body(null, 200);
    } catch (err) {
      return answerError(c, err);
    }
  });
}
