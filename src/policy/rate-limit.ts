import type { Clock } from '../clock.js';

/**
 * Token buckets per agent, in this replica's memory: `rate` requests a second
 * with bursts of `burst`. With N replicas an agent may get up to N times the
 * rate; that is the price of not touching the database to say no. Buckets of
 * agents that have been quiet long enough to be full again are dropped, so
 * memory follows the number of agents active in the last few seconds.
 */
export function createRateLimiter(options: { rate: number; burst: number; clock: Clock; maxAgents?: number }) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refillMs = (options.burst / options.rate) * 1000;
  const maxAgents = options.maxAgents ?? 100_000;

  function prune(now: number) {
    for (const [key, b] of buckets) if (now - b.at >= refillMs) buckets.delete(key);
  }

  return {
    /** Takes one token; when there is none, says how many seconds until there will be. */
    take(agent: string): { ok: true } | { ok: false; retryAfterSeconds: number } {
      const now = options.clock.now().getTime();
      if (buckets.size >= maxAgents) prune(now);
      const b = buckets.get(agent) ?? { tokens: options.burst, at: now };
      b.tokens = Math.min(options.burst, b.tokens + ((now - b.at) / 1000) * options.rate);
      b.at = now;
      buckets.delete(agent);
      buckets.set(agent, b);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / options.rate)) };
    },
  };
}
export type RateLimiter = ReturnType<typeof createRateLimiter>;
