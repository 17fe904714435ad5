/** Runs `fn` over `items` with at most `limit` calls in flight; results keep input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** Rejects with a TimeoutError carrying `message` when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Sleepers that can be woken early, by key: `sleep(key, ms, signal)` resolves
 * after `ms`, when `wake(key)` (or `wakeAll()`) is called, or when `signal`
 * aborts, whichever comes first. Long polls wait on it (oauth/ssf/poll.ts,
 * tasks/closures.ts); nothing is held but the sleepers themselves.
 */
export function createWakeable() {
  const sleepers = new Map<string, Set<() => void>>();
  return {
    sleep(key: string, ms: number, signal?: AbortSignal): Promise<void> {
      return new Promise((resolve) => {
        const set = sleepers.get(key) ?? new Set<() => void>();
        sleepers.set(key, set);
        const done = () => {
          clearTimeout(timer);
          set.delete(done);
          if (set.size === 0) sleepers.delete(key);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        set.add(done);
        signal?.addEventListener('abort', done);
      });
    },
    wake(key: string): void {
      for (const done of [...(sleepers.get(key) ?? [])]) done();
    },
    wakeAll(): void {
      for (const set of [...sleepers.values()]) for (const done of [...set]) done();
    },
  };
}
