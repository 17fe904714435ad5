import pino, { type Logger } from 'pino';

export type { Logger };

/** Paths pino blanks out wherever they appear, as a second line of defence: secrets should never be logged at all. */
export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'token',
  '*.token',
  'credentials',
  '*.credentials',
  'secret',
  '*.secret',
  'SecretAccessKey',
  '*.SecretAccessKey',
  'SessionToken',
  '*.SessionToken',
  'client_token',
  '*.client_token',
  'password',
  '*.password',
];

/**
 * Standard output written asynchronously: lines logged while a write is in
 * flight go out together in the next one, so a busy broker does not make a
 * system call per request line. Flushed when the process exits.
 */
export const asyncStdout = (): pino.DestinationStream & { flushSync(): void } => pino.destination({ dest: 1, sync: false });

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'tasklease' } }, destination);
}

/**
 * The access log: one line per request, of fields this code picks (request
 * id, method, path, status, duration) and never of the request's content, so
 * it skips the redaction pass, which cost more than the rest of the line.
 */
export function accessLogger(log: Logger): Logger {
  return log.child({}, { redact: { paths: [] } });
}
