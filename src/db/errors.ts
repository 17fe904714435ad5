const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);
const POSTGRES_JS_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT']);

/**
 * True for failures that mean "the database is not there right now" (answered
 * 503, retryable) rather than a bug: network errors, closed connections, and
 * SQLSTATE classes 08 (connection), 57P (operator intervention / shutdown),
 * 53 (insufficient resources) and 40 (serialization failure / deadlock).
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (CONNECTION_ERRNOS.has(code) || POSTGRES_JS_CODES.has(code)) return true;
    if (/^(08|57P|53|40)/.test(code)) return true;
  }
  return false;
}
