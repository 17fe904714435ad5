import type { AuditInput } from '../audit/append.js';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import { actorOf, type Identity } from '../identity/types.js';
import { boundTo } from '../policy/decide.js';
import type { RateLimiter } from '../policy/rate-limit.js';
import type { TaskClosures } from './closures.js';

/** One call through a gateway, as it reports it: never a body, a query string or a header. */
export interface GatewayCall {
  task: string;
  route: string;
  method: string;
  path: string;
  status: number;
  decision: 'allow' | 'deny';
  /** The allow or deny rule that decided a refusal (or `task_not_open`, `path_refused` ...). */
  rule?: string | undefined;
  bytes_in: number;
  bytes_out: number;
  ms: number;
  at: string;
  count: number;
}

/**
 * The calls an agent's gateway made, in the audit chain (docs/gateway.md): one
 * `gateway.call` event per call, a batch at a time, through the writer's group
 * commit, so a chatty agent costs the chain's head one append per batch, not
 * one per call. Every task in a batch must be the caller's own, or nothing is
 * written (404, as for any task not yours). An identity may post 5 batches a
 * second (bursts of 20): at most 1,280 events a second, however it posts.
 * Proved by test/gateway/gateway.test.ts.
 */
export function createGatewayCallAudit(deps: { closures: TaskClosures; clock: Clock; audit: (events: AuditInput[]) => Promise<void>; limiter: RateLimiter }) {
  return async function record(identity: Identity, calls: GatewayCall[], request: { requestId?: string; clientRequestId?: string | undefined }): Promise<number> {
    // A gateway sends a batch a second; an identity posting faster is told to wait (the gateway keeps its records and tries again).
    const limited = deps.limiter.take(actorOf(identity));
    if (!limited.ok) throw new AppError('rate_limited', 'too many call records; slow down', { retry_after: limited.retryAfterSeconds });
    const ids = [...new Set(calls.map((c) => c.task))];
    const found = new Map((await deps.closures.tasksOf(ids)).map((t) => [t.id, t]));
    for (const id of ids) {
      const task = found.get(id);
      if (!task || !boundTo(task, identity)) throw new AppError('task_not_found', 'no such task');
    }
    const now = deps.clock.now();
    const actor = actorOf(identity);
    await deps.audit(
      calls.map((c) => ({
        at: now,
        actor,
        action: 'gateway.call',
        target: `task:${c.task}`,
        decision: c.decision,
        ...(c.rule ? { reason: c.rule } : {}),
        details: { route: c.route, method: c.method, path: c.path, status: c.status, count: c.count, bytes_in: c.bytes_in, bytes_out: c.bytes_out, ms: c.ms, called_at: c.at, via: 'gateway' },
        requestId: request.requestId ?? null,
        clientRequestId: request.clientRequestId ?? null,
      })),
    );
    return calls.length;
  };
}
export type GatewayCallAudit = ReturnType<typeof createGatewayCallAudit>;
