import type { components } from '../client/openapi.js';
import type { Asker } from './leases.js';

/** One call (or identical calls counted) as the broker's audit route takes it (the SDK's type of POST /v1/gateway/calls). */
export type CallRecord = components['schemas']['GatewayCalls']['calls'][number];

const shapeOf = (c: CallRecord) => JSON.stringify([c.task, c.route, c.method, c.path, c.status, c.decision, c.rule ?? null]);

const BATCH = 256;
const FLUSH_MS = 1000;
/** Records kept while the broker cannot take them; past this the oldest are dropped, counted and logged. */
const MAX_PENDING = 10_000;

/**
 * The gateway's calls, sent to the broker's audit trail in batches
 * (POST /v1/gateway/calls, one audit append per batch) every second, per
 * identity: identical calls of that second are one record with their count,
 * so an agent repeating a call a thousand times a second costs one audit event
 * a second. Records wait while the broker is unreachable, up to 10,000 kinds;
 * a gateway that dies loses at most the last second's. Never a body, a query
 * string, a header or a credential.
 */
export function createCallReporter(deps: { log: (line: Record<string, unknown>, msg: string) => void }) {
  const pending = new Map<string, { asker: Asker; records: CallRecord[]; byShape: Map<string, CallRecord> }>();
  let dropped = 0;
  let flushing: Promise<void> | undefined;

  async function flushOne(asker: Asker, records: CallRecord[]): Promise<boolean> {
    for (let i = 0; i < records.length; i += BATCH) {
      const batch = records.slice(i, i + BATCH);
      const res = await asker.client.api.POST('/v1/gateway/calls', { body: { calls: batch } }).catch(() => undefined);
      if (!res?.response.ok) {
        // Kept for the next flush (unreachable, 5xx, 429), unless the broker refused them for good (another 4xx: they would be refused again).
        const status = res?.response.status ?? 0;
        if (status >= 400 && status < 500 && status !== 429) {
          deps.log({ status, records: records.length - i }, 'the broker refused gateway call records; dropped');
          return true;
        }
        const left = records.slice(i);
        const entry = pending.get(asker.key) ?? { asker, records: [] as CallRecord[], byShape: new Map<string, CallRecord>() };
        entry.records.unshift(...left);
        pending.set(asker.key, entry);
        return false;
      }
    }
    return true;
  }

  async function flush(): Promise<void> {
    const batches = [...pending.values()];
    pending.clear();
    await Promise.all(batches.map((b) => flushOne(b.asker, b.records)));
  }

  const timer = setInterval(() => {
    flushing ??= flush().finally(() => (flushing = undefined));
  }, FLUSH_MS);
  timer.unref();

  return {
    record(asker: Asker, call: CallRecord): void {
      const entry = pending.get(asker.key) ?? { asker, records: [] as CallRecord[], byShape: new Map<string, CallRecord>() };
      pending.set(asker.key, entry);
      const shape = shapeOf(call);
      const same = entry.byShape.get(shape);
      if (same) {
        same.count += 1;
        same.bytes_in += call.bytes_in;
        same.bytes_out += call.bytes_out;
        same.ms = Math.max(same.ms, call.ms);
        return;
      }
      entry.byShape.set(shape, call);
      entry.records.push(call);
      const total = [...pending.values()].reduce((n, e) => n + e.records.length, 0);
      if (total > MAX_PENDING) {
        entry.records.shift();
        if (dropped++ % 1000 === 0) deps.log({ dropped }, 'gateway call records dropped: the broker is not taking them');
      }
      if (entry.records.length >= BATCH) flushing ??= flush().finally(() => (flushing = undefined));
    },
    /** Sends what is left (shutdown). */
    async stop(): Promise<void> {
      clearInterval(timer);
      await flushing;
      await flush();
    },
  };
}
