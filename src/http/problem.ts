import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { AppError, ERROR_STATUS, type ErrorCode } from '../errors.js';
import { AuthError } from '../identity/types.js';
import type { Logger } from '../log.js';
import { isDatabaseUnavailable, isDataException } from '../db/errors.js';

/** RFC 9457 problem details, with our stable `code` and the request id. */
export function problem(c: Context, code: ErrorCode, detail: string, extra: Record<string, unknown> = {}): Response {
  const status = ERROR_STATUS[code];
  const body = {
    type: `urn:tasklease:problem:${code}`,
    title: code.replaceAll('_', ' '),
    status,
    code,
    detail,
    request_id: c.get('requestId') ?? null,
    ...extra,
  };
  if (status === 401) c.header('WWW-Authenticate', 'Bearer realm="tasklease"');
  if (typeof extra.retry_after === 'number') c.header('Retry-After', String(extra.retry_after));
  return c.body(JSON.stringify(body), status as ContentfulStatusCode, { 'Content-Type': 'application/problem+json' });
}

const HTTP_STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'bad_request',
  401: 'token_invalid',
  404: 'not_found',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  503: 'request_timeout',
};

/** The single error renderer: known errors keep their code; anything else is logged and answered without its message. */
export function createErrorHandler(log: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof AppError) return problem(c, err.code, err.message, err.extra);
    if (err instanceof AuthError) return problem(c, err.code, err.message);
    if (err instanceof HTTPException) {
      const code = HTTP_STATUS_CODES[err.status];
      if (code) return problem(c, code, code === 'bad_request' ? 'the request could not be read (malformed JSON?)' : err.message);
    }
    if (isDataException(err)) {
      // SQLSTATE class 22 (a value the database will not store): input validation should have caught it.
      log.warn({ reqId: c.get('requestId') }, 'data exception from the database');
      return problem(c, 'bad_request', 'the request contains a value that cannot be stored');
    }
    if (isDatabaseUnavailable(err)) {
      log.warn({ reqId: c.get('requestId'), err: (err as { code?: string }).code }, 'database unavailable');
      c.header('Retry-After', '1');
      return problem(c, 'database_unavailable', 'the database is not reachable; try again');
    }
    log.error({ reqId: c.get('requestId'), err: { name: err.name, stack: err.stack } }, 'unhandled error');
    return problem(c, 'internal', 'internal error; the request id identifies it in the logs');
  };
}
