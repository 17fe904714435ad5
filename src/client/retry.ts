/**
 * The fetch every SDK request goes through: it sets the bearer token (asked
 * of the token source for every attempt, so a rotated file is read again),
 * and retries a 503 or 429 with backoff, honouring Retry-After. Any other
 * answer, a 4xx refusal above all, is returned at once: a refusal repeated
 * is the same refusal, audited again.
 * It keeps: a non-idempotent request (a POST) is repeated only when the broker
 * said nothing was done (a 429, or a 503 whose problem code is in
 * NOTHING_DONE); a 503 `request_timeout` may come while the work still
 * commits, so repeating a POST could issue a second credential.
 * Proven by test/client/retry.test.ts.
 */
export interface RetryOptions {
  /** Attempts in all, the first included (default 4). */
  attempts?: number;
  /** The first backoff; it doubles per attempt, with full jitter (default 250 ms). */
  baseDelayMs?: number;
  /** No wait is longer than this, Retry-After included (default 30 s); a longer Retry-After ends the retries. */
  maxDelayMs?: number;
}

const RETRYABLE = new Set([429, 503]);
/** RFC 9110's idempotent methods: repeating one does nothing twice. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
/**
 * The 503 codes (src/errors.ts) after which the broker did nothing a repeat
 * could double: `issuer_unavailable` (the caller's token was not verified, so
 * nothing started), `backend_unavailable` (the backend minted nothing),
 * `database_unavailable` (nothing committed; a credential minted before a
 * failed commit is revoked by the broker, recorded before released). Not
 * `request_timeout`, nor a 503 without a problem body: the work may still commit.
 */
const NOTHING_DONE = new Set(['issuer_unavailable', 'backend_unavailable', 'database_unavailable']);

/** Whether `response` to `request` may be asked again. */
async function mayRetry(request: Request, response: Response): Promise<boolean> {
  if (!RETRYABLE.has(response.status)) return false;
  if (IDEMPOTENT.has(request.method) || response.status === 429) return true;
  const problem: unknown = await response
    .clone()
    .json()
    .catch(() => undefined);
  const code = typeof problem === 'object' && problem !== null ? (problem as { code?: unknown }).code : undefined;
  return typeof code === 'string' && NOTHING_DONE.has(code);
}

/** Retry-After in milliseconds (delta-seconds or an HTTP date), or undefined. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const sleep = (ms: number, signal: AbortSignal | null) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', abort, { once: true });
  });

export function createRetryingFetch(
  token: () => Promise<string>,
  options: RetryOptions = {},
  baseFetch: (input: Request) => Promise<Response> = (input) => globalThis.fetch(input),
): (input: Request) => Promise<Response> {
  const attempts = Math.max(1, options.attempts ?? 4);
  const base = options.baseDelayMs ?? 250;
  const max = options.maxDelayMs ?? 30_000;
  return async (input) => {
    for (let attempt = 1; ; attempt++) {
      const request = new Request(input.clone());
      request.headers.set('authorization', `Bearer ${await token()}`);
      const response = await baseFetch(request);
      if (attempt >= attempts || !(await mayRetry(request, response))) return response;
      const wait = retryAfterMs(response.headers.get('retry-after')) ?? Math.random() * base * 2 ** (attempt - 1);
      if (wait > max) return response;
      await response.body?.cancel();
      await sleep(Math.min(wait, max), input.signal);
    }
  };
}
