/**
 * One POST to a webhook. The answer is judged by its status alone (the body
 * is never read, so nothing a receiver says reaches a log or a row), no
 * redirect is followed (a 3xx is a failure: the notification goes only to
 * the configured URL), and the request gives up after `timeoutMs`. The error
 * returned names what happened, never the URL, which may itself be a secret.
 */
export async function postWebhook(url: string, request: { body: string; headers: Record<string, string> }, timeoutMs: number): Promise<string | undefined> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', body: request.body, headers: request.headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    return describe(err, timeoutMs);
  }
  await res.body?.cancel().catch(() => {});
  if (res.status >= 200 && res.status < 300) return undefined;
  if (res.status >= 300 && res.status < 400) return `answered ${res.status} (redirects are not followed)`;
  return `answered ${res.status}`;
}

function describe(err: unknown, timeoutMs: number): string {
  if (err instanceof DOMException && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `timed out after ${timeoutMs / 1000}s`;
  // undici's TypeError('fetch failed') carries the socket error as its cause; only a bare code is kept.
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return typeof code === 'string' && /^[A-Z_]{2,40}$/.test(code) ? `could not connect (${code})` : 'request failed';
}
