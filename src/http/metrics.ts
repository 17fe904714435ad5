import { Hono, type Handler } from 'hono';
import { digestsEqual, sha256Hex } from '../ids.js';
import { AuthError } from '../identity/types.js';
import type { Logger } from '../log.js';
import { createErrorHandler, problem } from './problem.js';

export interface MetricsRouteDeps {
  /** Prometheus exposition text. */
  metrics: () => Promise<string>;
  /** SHA-256 (hex) of the scrape token; when set, every scrape must send it as a Bearer token. */
  tokenSha256?: string;
}

/** GET /metrics: counts and labels for operators, so behind the scrape token when one is configured. */
export function metricsHandler(deps: MetricsRouteDeps): Handler {
  return async (c) => {
    if (deps.tokenSha256) {
      const token = /^Bearer +(\S+) *$/i.exec(c.req.header('authorization') ?? '')?.[1];
      if (!token) throw new AuthError('token_missing', 'send the metrics token as a Bearer token');
      // Hashes of equal length compared in constant time: the token's length and content stay unknown.
      if (!digestsEqual(sha256Hex(token), deps.tokenSha256)) throw new AuthError('token_invalid', 'not the metrics token');
    }
    return c.text(await deps.metrics(), 200, { 'Content-Type': 'text/plain; version=0.0.4' });
  };
}

/** The app of the metrics listener (config `metrics.listen`): /metrics and nothing else. */
export function createMetricsApp(deps: MetricsRouteDeps & { log: Logger }) {
  const app = new Hono();
  app.get('/metrics', metricsHandler(deps));
  app.notFound((c) => problem(c, 'not_found', 'this listener serves /metrics only'));
  app.onError(createErrorHandler(deps.log));
  return app;
}
