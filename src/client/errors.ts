/**
 * A refusal or failure from the broker, carrying the problem's stable `code`
 * (src/errors.ts on the broker lists them) for code to branch on; `detail` is
 * for humans. Errors of the client itself (no token, a malformed answer)
 * have codes of their own, prefixed `client_`.
 */
export class TaskleaseError extends Error {
  override name = 'TaskleaseError';
  constructor(
    /** The problem's stable machine code, e.g. `role_denied`, `task_not_open`, `rate_limited`. */
    readonly code: string,
    /** The HTTP status, or 0 for an error of the client itself. */
    readonly status: number,
    /** The broker's human-readable explanation (never a secret). */
    readonly detail: string,
    /** The broker's id for the request (X-Request-Id), to find it in its logs and audit. */
    readonly requestId: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${detail}${requestId ? ` (request ${requestId})` : ''}`, options);
  }
}

interface ProblemBody {
  code?: unknown;
  detail?: unknown;
  title?: unknown;
  request_id?: unknown;
}

/** The error a non-2xx answer stands for: the problem's code when it is one, else `http_<status>`. */
export function errorFromResponse(response: Response, body: unknown): TaskleaseError {
  const problem: ProblemBody = typeof body === 'object' && body !== null ? (body as ProblemBody) : {};
  const code = typeof problem.code === 'string' ? problem.code : `http_${response.status}`;
  const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : response.statusText || `HTTP ${response.status}`;
  const requestId = typeof problem.request_id === 'string' ? problem.request_id : response.headers.get('x-request-id');
  return new TaskleaseError(code, response.status, detail, requestId);
}

/** The data of a 2xx answer of openapi-fetch, or the problem as a TaskleaseError. */
export function unwrap<T>({ data, error, response }: { data?: T; error?: unknown; response: Response }): T {
  if (!response.ok || data === undefined) throw errorFromResponse(response, error);
  return data;
}
