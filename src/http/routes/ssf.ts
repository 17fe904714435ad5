import type { Context, Hono } from 'hono';
import type { Logger } from '../../log.js';
import type { ClientAuthenticator } from '../../oauth/clients.js';
import { OAuthError } from '../../oauth/errors.js';
import { PollRequestSchema, type SecurityEventPoll } from '../../oauth/ssf/poll.js';
import type { AppEnv } from '../env.js';

/** RFC 8935 section 2.3's error codes, the ones a poll can meet. */
type SetError = 'invalid_request' | 'authentication_failed' | 'access_denied';

/**
 * The SSF transmitter's endpoints (docs/oauth.md): its configuration metadata,
 * and RFC 8936 polling for receivers configured with `delivery: poll`,
 * authenticated by client_secret_basic. Errors use RFC 8935's `{err,
 * description}`.
 */
export function registerSsfRoutes(app: Hono<AppEnv>, deps: { metadata: () => unknown; poll: SecurityEventPoll; clients: ClientAuthenticator; log: Logger }) {
  const refuse = (c: Context<AppEnv>, status: 400 | 401 | 403, err: SetError, description: string) => {
    c.header('Cache-Control', 'no-store');
    if (status === 401) c.header('WWW-Authenticate', 'Basic realm="tasklease"');
    return c.json({ err, description }, status);
  };

  app.get('/.well-known/ssf-configuration', (c) => {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(deps.metadata() as Record<string, unknown>);
  });

  app.post('/ssf/poll', async (c) => {
    let receiver: string;
    try {
      // HTTP Basic only: the body is the poll's JSON, so there is no form to carry other client authentication.
      const server = await deps.clients(c.req.header('authorization'), new URLSearchParams());
      if (server.security_events?.delivery !== 'poll') return refuse(c, 403, 'access_denied', 'this client has no poll stream');
      receiver = server.client_id;
    } catch (err) {
      if (err instanceof OAuthError && err.status !== 401) return refuse(c, 400, 'invalid_request', err.description);
      return refuse(c, 401, 'authentication_failed', 'the client could not be authenticated');
    }
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') return refuse(c, 400, 'invalid_request', 'send the poll request as application/json');
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      return refuse(c, 400, 'invalid_request', 'the body is not JSON');
    }
    const request = PollRequestSchema.safeParse(body);
    if (!request.success) return refuse(c, 400, 'invalid_request', request.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
    const answer = await deps.poll.poll(receiver, request.data, c.req.raw.signal);
    c.header('Cache-Control', 'no-store');
    return c.json(answer, 200);
  });
}
