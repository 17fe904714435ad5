/**
 * Commits that run while the caller goes on working, at most `maxInFlight` at once.
 *
 * Invariant: a commit holds its slot until it and every commit submitted before it have settled (slots free in
 * submission order), so at most `maxInFlight` are ever running; `drain` returns only once every commit submitted has
 * settled, failed or not; the error reported is that of the earliest-submitted commit that failed, and each failure
 * is reported once. Proved by test/sweeper/commit-pipeline.test.ts (a property test over random completion orders),
 * and in the sweeper by test/sweeper/sweeper.test.ts ("keeps at most four wave commits in flight").
 */
export interface CommitPipeline {
  /**
   * Starts `commit` at once, then waits while `maxInFlight` commits hold their slots (the oldest settling frees one).
   * Rejects with the oldest commit's error if that is what it waited for; the commit submitted still runs.
   */
  submit(commit: () => Promise<unknown>): Promise<void>;
  /** Waits for every commit submitted to settle, then rejects with the earliest-submitted failure not yet reported. */
  drain(): Promise<void>;
  /** True once any commit has failed (in whatever order they end): the caller should start no new work. */
  readonly failed: boolean;
}

export function createCommitPipeline(opts: { maxInFlight: number }): CommitPipeline {
  if (!Number.isInteger(opts.maxInFlight) || opts.maxInFlight < 1) throw new RangeError('maxInFlight must be a positive integer');
  // Oldest first; each promise is awaited (and its error reported) exactly once, by submit or by drain.
  const inFlight: Promise<unknown>[] = [];
  let failed = false;

  return {
    async submit(commit) {
      // Called here, in an async function, so that a commit throwing before its first await still fails as a rejection.
      const running = (async () => commit())();
      // Never an unhandled rejection while it waits its turn to be awaited.
      running.catch(() => (failed = true));
      inFlight.push(running);
      if (inFlight.length >= opts.maxInFlight) await inFlight.shift();
    },
    async drain() {
      let first: PromiseRejectedResult | undefined;
      // Again while commits were submitted during the wait: none is left behind.
      while (inFlight.length > 0) {
        const settled = await Promise.allSettled(inFlight.splice(0));
        first ??= settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      }
      if (first) throw first.reason;
    },
    get failed() {
      return failed;
    },
  };
}
