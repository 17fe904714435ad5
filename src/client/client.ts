import createFetchClient from 'openapi-fetch';
import { TaskleaseError, unwrap } from './errors.js';
import { LeaseHandle, type Credentials, type Lease, type LeaseCalls, type LeaseHandleOptions } from './lease.js';
import type { components, paths } from './openapi.js';
import { createRetryingFetch, type RetryOptions } from './retry.js';
import { createTasks } from './tasks.js';
import { defaultTokenSource, toTokenSource, type TokenInput } from './tokens.js';

export type Approval = components['schemas']['Approval'];

export interface ClientOptions {
  /** The broker's base URL (default TASKLEASE_URL). */
  url?: string;
  /** The caller's identity token: a string, a function, or a TokenSource (default: the default chain, tokens.ts). */
  token?: TokenInput;
  retry?: RetryOptions;
  /** Each attempt is abandoned after this long (default 30 s). */
  timeoutMs?: number;
  /** For tests and proxies: the fetch underneath. */
  fetch?: (input: Request) => Promise<Response>;
}

/** The role needs an approval: the broker created (or found) it; ask again with `{ approval: error.approval.id }` once approved. */
export class ApprovalPendingError extends TaskleaseError {
  override name = 'ApprovalPendingError';
  constructor(
    readonly approval: Approval,
    requestId: string | null,
  ) {
    super('approval_pending', 202, `the role ${approval.role} needs approval ${approval.id} (${approval.status})`, requestId);
  }
}

/** The broker's clock when it answered (its Date header), so expiry is timed against the clock that set it. */
function serverNow(response: Response): number {
  const date = Date.parse(response.headers.get('date') ?? '');
  return Number.isNaN(date) ? Date.now() : date;
}

export function createClient(options: ClientOptions = {}) {
  const url = options.url ?? process.env.TASKLEASE_URL;
  if (!url) throw new TaskleaseError('client_no_url', 0, 'no broker URL: pass `url` or set TASKLEASE_URL');
  const source = toTokenSource(options.token ?? defaultTokenSource());
  const timeoutMs = options.timeoutMs ?? 30_000;
  const underlying = options.fetch ?? ((input: Request) => globalThis.fetch(input));
  const api = createFetchClient<paths>({
    baseUrl: url.replace(/\/+$/, ''),
    fetch: createRetryingFetch(() => source.token(), options.retry, (input) =>
      underlying(new Request(input, { signal: AbortSignal.any([input.signal, AbortSignal.timeout(timeoutMs)]) })),
    ),
  });

  const leaseCalls: LeaseCalls & { issueOrApproval: typeof issueOrApproval } = {
    async issue(task, role, ttlSeconds) {
      return issueOrApproval(task, role, { ttlSeconds });
    },
    async renew(id) {
      const result = await api.POST('/v1/leases/{id}/renew', { params: { path: { id } }, body: {} });
      return { lease: unwrap(result).lease, serverNow: serverNow(result.response) };
    },
    async release(id) {
      return unwrap(await api.DELETE('/v1/leases/{id}', { params: { path: { id } } })).lease;
    },
    issueOrApproval,
  };

  async function issueOrApproval(task: string, role: string, { ttlSeconds, approval }: { ttlSeconds?: number; approval?: string }) {
    const result = await api.POST('/v1/credentials', { body: { task, role, ttl_seconds: ttlSeconds, approval } });
    const data = unwrap(result);
    if ('approval' in data) throw new ApprovalPendingError(data.approval, result.response.headers.get('x-request-id'));
    return { lease: data.lease, credentials: data.credentials as Credentials, serverNow: serverNow(result.response) };
  }

  return {
    /** The typed openapi-fetch client underneath, for any route the helpers do not cover. */
    api,
    /**
     * Credentials for `role` within `task`, as a handle that renews its lease
     * and is released by `await handle.release()` or `await using`.
     * A gated role throws ApprovalPendingError; pass `approval` once approved.
     */
    async credentials(task: string, role: string, opts: LeaseHandleOptions & { approval?: string } = {}): Promise<LeaseHandle> {
      const issued = await issueOrApproval(task, role, opts);
      return new LeaseHandle(leaseCalls, task, role, issued, opts);
    },
    leases: {
      async get(id: string): Promise<Lease> {
        return unwrap(await api.GET('/v1/leases/{id}', { params: { path: { id } } })).lease;
      },
      release: leaseCalls.release,
    },
    tasks: createTasks(api),
  };
}
export type Client = ReturnType<typeof createClient>;
