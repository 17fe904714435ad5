import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createCommitPipeline, type CommitPipeline } from '../../src/sweeper/commit-pipeline.js';

/** A commit that ends when the test says so, and records that it started. */
function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  let started = false;
  const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return {
    commit: () => ((started = true), done),
    get started() {
      return started;
    },
    resolve,
    reject,
  };
}

/** Whether `p` has settled, once every pending microtask has run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('commit pipeline', () => {
  it('starts each commit at once, and submit returns while fewer than maxInFlight are in flight', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 3 });
    const [a, b] = [deferred(), deferred()];
    await pipeline.submit(a.commit);
    await pipeline.submit(b.commit);
    expect(a.started && b.started).toBe(true);
    a.resolve();
    b.resolve();
    await pipeline.drain();
  });

  it('submit waits when full, and a slot frees in submission order: the oldest must settle, not any', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 3 });
    const [a, b, c] = [deferred(), deferred(), deferred()];
    await pipeline.submit(a.commit);
    await pipeline.submit(b.commit);
    const third = pipeline.submit(c.commit);
    expect(c.started).toBe(true);
    expect(await settled(third)).toBe(false);
    b.resolve();
    expect(await settled(third)).toBe(false);
    a.resolve();
    expect(await settled(third)).toBe(true);
    c.resolve();
    await pipeline.drain();
  });

  it('drain waits for every commit, and resolves at once when none is in flight', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 4 });
    await pipeline.drain();
    const commits = [deferred(), deferred(), deferred()];
    for (const d of commits) await pipeline.submit(d.commit);
    const drained = pipeline.drain();
    commits[2]!.resolve();
    commits[0]!.resolve();
    expect(await settled(drained)).toBe(false);
    commits[1]!.resolve();
    await expect(drained).resolves.toBeUndefined();
  });

  it('a failure is seen at once (failed), but drain reports it only once every commit has settled', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 4 });
    const [a, b] = [deferred(), deferred()];
    await pipeline.submit(a.commit);
    await pipeline.submit(b.commit);
    b.reject(new Error('b lost'));
    await new Promise((r) => setImmediate(r));
    expect(pipeline.failed).toBe(true);
    const drained = pipeline.drain();
    expect(await settled(drained)).toBe(false);
    a.resolve();
    await expect(drained).rejects.toThrow('b lost');
  });

  it('drain reports the earliest-submitted failure, whichever failed first in time', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 4 });
    const [a, b, c] = [deferred(), deferred(), deferred()];
    for (const d of [a, b, c]) await pipeline.submit(d.commit);
    c.reject(new Error('c lost'));
    b.reject(new Error('b lost'));
    a.resolve();
    await expect(pipeline.drain()).rejects.toThrow('b lost');
    // Reported once: the pipeline is empty again.
    await expect(pipeline.drain()).resolves.toBeUndefined();
  });

  it('a submit that waits on a failing oldest commit rejects with its error; the commit it submitted still runs to the end', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 2 });
    const [a, b] = [deferred(), deferred()];
    await pipeline.submit(a.commit);
    const second = pipeline.submit(b.commit);
    expect(b.started).toBe(true);
    a.reject(new Error('a lost'));
    await expect(second).rejects.toThrow('a lost');
    const drained = pipeline.drain();
    expect(await settled(drained)).toBe(false);
    b.resolve();
    // a's failure was reported by the submit; drain has nothing more to report.
    await expect(drained).resolves.toBeUndefined();
  });

  it('a commit that throws before it returns a promise fails like one that rejects', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 2 });
    await pipeline.submit(() => {
      throw new Error('thrown');
    });
    expect(pipeline.failed).toBe(true);
    await expect(pipeline.drain()).rejects.toThrow('thrown');
    const one = createCommitPipeline({ maxInFlight: 1 });
    await expect(
      one.submit(() => {
        throw new Error('thrown');
      }),
    ).rejects.toThrow('thrown');
  });

  it('drain also waits for commits submitted while it waits', async () => {
    const pipeline = createCommitPipeline({ maxInFlight: 4 });
    const [a, b] = [deferred(), deferred()];
    await pipeline.submit(a.commit);
    const drained = pipeline.drain();
    await pipeline.submit(b.commit);
    a.resolve();
    expect(await settled(drained)).toBe(false);
    b.reject(new Error('b lost'));
    await expect(drained).rejects.toThrow('b lost');
  });

  it('refuses a maxInFlight that is not a positive integer', () => {
    for (const maxInFlight of [0, -1, 1.5, Number.NaN]) expect(() => createCommitPipeline({ maxInFlight })).toThrow(RangeError);
  });

  /**
   * The sweeper's use, under every completion order: submit while nothing has failed, stop at the first error, drain.
   * At most maxInFlight commits ever run; when submit returns there is room for the next; nothing runs after the
   * drain; the error reported is the earliest-submitted failure; with no failure every commit ran.
   */
  it('keeps its invariant under random completion orders and failures (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.integer({ min: 1, max: 5 }), fc.array(fc.boolean(), { maxLength: 16 }), async (s, maxInFlight, fails) => {
        const pipeline: CommitPipeline = createCommitPipeline({ maxInFlight });
        let running = 0;
        let most = 0;
        let roomAfterSubmit = true;
        const started: number[] = [];
        const commit = (i: number) => async () => {
          started.push(i);
          running++;
          most = Math.max(most, running);
          try {
            await s.schedule(Promise.resolve(), `commit ${i}`);
            if (fails[i]) throw new Error(`commit ${i} lost`);
          } finally {
            running--;
          }
        };
        const caller = (async () => {
          try {
            for (let i = 0; i < fails.length && !pipeline.failed; i++) {
              await pipeline.submit(commit(i));
              roomAfterSubmit &&= running < maxInFlight;
            }
            await pipeline.drain();
            return undefined;
          } catch (err) {
            await pipeline.drain().catch(() => {});
            return err;
          }
        })();
        const reported = await s.waitFor(caller);

        expect(most).toBeLessThanOrEqual(maxInFlight);
        expect(roomAfterSubmit).toBe(true);
        expect(running).toBe(0);
        const firstFailed = started.find((i) => fails[i]);
        if (firstFailed === undefined) {
          expect(reported).toBeUndefined();
          expect(started).toHaveLength(fails.length);
        } else {
          expect((reported as Error).message).toBe(`commit ${firstFailed} lost`);
        }
      }),
      { numRuns: 300 },
    );
  });
});
