const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);
const POSTGRES_JS_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT']);

/**
 * True for failures that mean "the database is not there right now" (answered
 * 503, retryable) rather than a bug: network errors, closed connections, and
 * SQLSTATE classes 08 (connection), 57P (operator intervention / shutdown),
 * 53 (insufficient resources) and 40 (serialization failure / deadlock).
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  return errorCodes(err).some((code) => CONNECTION_ERRNOS.has(code) || POSTGRES_JS_CODES.has(code) || /^(08|57P|53|40)/.test(code));
}

/** SQLSTATE class 22: the database refused a value (NUL in text, malformed JSON, out of range). */
export function isDataException(err: unknown): boolean {
  return errorCodes(err).some((code) => /^22[0-9A-Z]{3}$/.test(code));
}

/** The `code`s along an error's cause chain (drizzle wraps driver errors). */
function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
  }
  return codes;
}

/** SQLSTATE 40P01: PostgreSQL broke a lock cycle by aborting this transaction; running it again is safe. */
export function isDeadlock(err: unknown): boolean {
  return errorCodes(err).includes('40P01');
}
