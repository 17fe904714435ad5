/**
 * A background worker's loop (the sweeper, the notifier): a pass, then a wait
 * of `intervalMs`, cut short by `nudge()`; a nudge during a pass runs the
 * next one at once. `stop()` ends the loop after the pass in flight. A pass
 * handles (and logs) its own errors: one that throws is simply followed by
 * the next.
 */
export function createPassLoop(intervalMs: number, pass: () => Promise<void>) {
  let stopped = true;
  let nudged = false;
  let wake: (() => void) | undefined;
  let loop: Promise<void> | undefined;

  async function run(): Promise<void> {
    while (!stopped) {
      nudged = false;
      await pass().catch(() => {});
      if (stopped) break;
      if (nudged) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      loop = run();
    },
    nudge() {
      nudged = true;
      wake?.();
    },
    /** Ends the loop; resolves once the pass in flight has finished. */
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}
