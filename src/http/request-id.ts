import { createMiddleware } from 'hono/factory';
import type { Clock } from '../clock.js';
import { newId } from '../ids.js';
import type { AppEnv } from './env.js';

/**
 * What a caller's own X-Request-Id may hold to be recorded: trace and
 * correlation ids (UUIDs, W3C trace ids, AWS `Root=1-...;Parent=...`), never
 * anything that could forge a log line or fill a row.
 */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:;=+/-]{1,128}$/;

/**
 * The broker names every request itself (a UUIDv7, returned in X-Request-Id
 * and used in logs and audit), so no caller can choose, reuse or collide with
 * the id an audit event is found by. A sane X-Request-Id from the caller is
 * kept beside it as `clientRequestId`; any other is ignored.
 */
export function requestIds(clock: Clock) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const id = newId(clock);
    c.set('requestId', id);
    const client = c.req.header('x-request-id');
    if (client !== undefined && CLIENT_REQUEST_ID.test(client)) c.set('clientRequestId', client);
    c.header('X-Request-Id', id);
    await next();
  });
}
