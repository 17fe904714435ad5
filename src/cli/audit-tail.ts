import type { components } from '../client/openapi.js';
import type { CliContext } from './command.js';
import { connect, remoteCall, table, type Column, type RemoteOptions } from './remote.js';

type AuditEvent = components['schemas']['AuditEvent'];

const COLUMNS: Column<AuditEvent>[] = [
  ['SEQ', (e) => e.seq],
  ['AT', (e) => e.at],
  ['DECISION', (e) => e.decision],
  ['ACTION', (e) => e.action],
  ['ACTOR', (e) => e.actor],
  ['TARGET', (e) => e.target],
  ['REASON', (e) => e.reason],
];

export interface AuditTailOptions extends RemoteOptions {
  limit?: number;
  since?: string;
  follow?: boolean;
  interval?: number;
}

/**
 * `audit tail`: GET /v1/audit reads oldest first by `seq`, so the newest N are
 * found by reading to the end (from --since when given) and keeping the last N;
 * --follow then polls after the last seq seen. --json prints one event per line.
 */
export async function runAuditTail(cli: CliContext, options: AuditTailOptions): Promise<void> {
  await remoteCall(async () => {
    const client = await connect(cli, options);
    const { unwrap } = await import('../client/index.js');
    const page = async (after: number | undefined) =>
      unwrap(await client.api.GET('/v1/audit', { params: { query: { after, since: options.since, limit: 500 } } }));
    const readFrom = async (after: number | undefined, keep: number) => {
      let events: AuditEvent[] = [];
      for (let cursor = after; ; ) {
        const got = await page(cursor);
        events = [...events, ...got.items].slice(-keep);
        if (got.next_cursor === null) return { events, last: got.items.at(-1)?.seq ?? cursor };
        cursor = Number(got.next_cursor);
      }
    };
    const print = (events: AuditEvent[], header: boolean) => {
      if (events.length === 0) return;
      if (options.json) return cli.io.stdout(events.map((e) => `${JSON.stringify(e)}\n`).join(''));
      const lines = table(events, COLUMNS).split('\n');
      cli.io.stdout(`${(header ? lines : lines.slice(1)).join('\n')}\n`);
    };

    let { events, last } = await readFrom(undefined, options.limit ?? 20);
    print(events, true);
    if (!options.follow) return cli.report({ code: 0 });

    // Until a signal: then exit 0, as `tail -f` does.
    const stopped = new Promise<void>((resolve) => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
    });
    let stop = false;
    void stopped.then(() => (stop = true));
    while (!stop) {
      await Promise.race([stopped, new Promise((r) => setTimeout(r, (options.interval ?? 2) * 1000))]);
      if (stop) break;
      ({ events, last } = await readFrom(last, Infinity));
      print(events, false);
    }
    cli.report({ code: 0 });
  });
}
