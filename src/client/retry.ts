/**
 * The fetch every SDK request goes through: it sets the bearer token (asked
 * of the token source for every attempt, so a rotated file is read again),
 * and retries a 503 or 429 with backoff, honouring Retry-After. Any other
 * answer, a 4xx refusal above all, is returned at once: a refusal repeated
 * is the same refusal, audited again. Proven by test/client/retry.test.ts.
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
      if (!RETRYABLE.has(response.status) || attempt >= attempts) return response;
      const wait = retryAfterMs(response.headers.get('retry-after')) ?? Math.random() * base * 2 ** (attempt - 1);
      if (wait > max) return response;
      await response.body?.cancel();
      await sleep(Math.min(wait, max), input.signal);
    }
  };
}
