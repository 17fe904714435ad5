import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { AuditInput } from './append.js';

/**
 * Repeated refusals, audited once per key and window, so that one identity
 * repeating a refused request cannot make every request append to the audit
 * chain, whose single head every issuance in every replica waits for.
 *
 * Invariant: the first refusal of a key in a window is handed to `write` at
 * once (the caller may wait for it), so a crash loses at most the count of the
 * repeats; repeats are only counted here, and written as one event with their
 * count when the window ends (`flushDue`), when the map is full (the oldest
 * key first), or on shutdown (`drain`). Memory is bounded by `maxKeys`.
 * Proved by test/policy/refusal-flood.test.ts.
 */
export interface RefusalAuditOptions {
  clock: Clock;
  /** Appends events to the audit chain (the issuance path's group commit). */
  write: (events: AuditInput[]) => Promise<void>;
  log: Pick<Logger, 'error'>;
  windowMs?: number;
  maxKeys?: number;
}

interface Entry {
  first: AuditInput;
  start: number;
  last: number;
  /** Refusals of this window not written one by one: the repeats, and the first if its write failed. */
  unrecorded: number;
}

export function createRefusalAudit({ clock, write, log, windowMs = 60_000, maxKeys = 10_000 }: RefusalAuditOptions) {
  const entries = new Map<string, Entry>();
  const inFlight = new Set<Promise<void>>();

  /** The window's repeats as one event; none when every refusal of it was written one by one. */
  function summary(e: Entry, now: number): AuditInput | undefined {
    if (e.unrecorded === 0) return undefined;
    // What differs from one request to the next (its token, its Retry-After, the task and role it named) is not the window's:
    // the window is the identity's, so the summary names the identity; the first refusal names its request's task and role.
    const { token_sha256: _token, retry_after: _retry, role: _role, ...details } = e.first.details ?? {};
    return {
      at: new Date(e.last),
      actor: e.first.actor,
      action: e.first.action,
      target: `agent:${e.first.actor}`,
      decision: 'deny',
      reason: `${e.first.reason ?? 'refused'}; repeated`,
      details: { ...details, count: e.unrecorded, window_start: new Date(e.start).toISOString(), window_end: new Date(Math.min(now, e.start + windowMs)).toISOString() },
      requestId: null,
    };
  }

  function track(p: Promise<void>): void {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }

  /** Writes the summaries of `ended` in the background; a failed write loses those counts, which the log says. */
  function close(ended: Entry[], now: number): void {
    const events = ended.map((e) => summary(e, now)).filter((e): e is AuditInput => e !== undefined);
    if (events.length === 0) return;
    track(
      write(events).catch((err: unknown) =>
        log.error({ err: err instanceof Error ? err.message : 'unknown', refusals: events.reduce((n, e) => n + (e.details!.count as number), 0) }, 'repeated refusals could not be audited'),
      ),
    );
  }

  return {
    /**
     * Records one refusal under `key`. The first of a window is written (awaited when `wait`; otherwise in
     * the background, and counted with the repeats if that write fails); a repeat is only counted.
     */
    async refuse(key: string, event: AuditInput, { wait }: { wait: boolean }): Promise<void> {
      const now = clock.now().getTime();
      const open = entries.get(key);
      if (open && now - open.start < windowMs) {
        open.unrecorded++;
        open.last = now;
        return;
      }
      const ended: Entry[] = open ? [open] : [];
      entries.delete(key);
      if (entries.size >= maxKeys) {
        const [oldest, entry] = entries.entries().next().value!;
        entries.delete(oldest);
        ended.push(entry);
      }
      close(ended, now);
      const entry: Entry = { first: event, start: now, last: now, unrecorded: 0 };
      entries.set(key, entry);
      const written = write([event]).catch((err: unknown) => {
        entry.unrecorded++;
        throw err;
      });
      if (wait) return written;
      track(written.catch((err: unknown) => log.error({ err: err instanceof Error ? err.message : 'unknown' }, 'a refusal could not be audited; counted with its repeats')));
    },
    /** Writes the windows that have ended (called by the sweeper's housekeeping, every pass). */
    async flushDue(): Promise<void> {
      const now = clock.now().getTime();
      const ended: Entry[] = [];
      for (const [key, e] of entries) {
        if (now - e.start < windowMs) continue;
        entries.delete(key);
        ended.push(e);
      }
      close(ended, now);
      await Promise.all([...inFlight]);
    },
    /** Ends every window now and waits for every write (shutdown). */
    async drain(): Promise<void> {
      const now = clock.now().getTime();
      const ended = [...entries.values()];
      entries.clear();
      close(ended, now);
      await Promise.all([...inFlight]);
    },
    get size() {
      return entries.size;
    },
  };
}
export type RefusalAudit = ReturnType<typeof createRefusalAudit>;
