import { and, inArray, sql } from 'drizzle-orm';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Db } from '../db/client.js';
import { approvals } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { ConsoleEnv } from './kit.js';
import type { SessionStore } from './sessions.js';

/**
 * A fingerprint of the approvals a page shows, read once per second per live
 * page: how many are pending and approved, and the newest of them. Any
 * request arriving, decided, expiring or redeemed changes it (an arrival
 * raises the newest id; every other change moves a count). It reads only the
 * rows of the partial index on pending and approved requests.
 */
export async function approvalsFingerprint(db: Db, roles: string[] | undefined): Promise<string> {
  if (roles && roles.length === 0) return 'none';
  const [row] = await db
    .select({
      pending: sql<number>`count(*) filter (where ${approvals.status} = 'pending')::int`,
      approved: sql<number>`count(*) filter (where ${approvals.status} = 'approved')::int`,
      newest: sql<string | null>`max(${approvals.id}::text)`,
    })
    .from(approvals)
    .where(and(inArray(approvals.status, ['pending', 'approved']), roles ? inArray(approvals.role, roles) : undefined));
  return `${row?.pending ?? 0}/${row?.approved ?? 0}/${row?.newest ?? ''}`;
}

/** Live pages per replica, and how long one stream lasts before the browser reconnects: both bounded. */
const MAX_STREAMS = 200;
const MAX_STREAMS_PER_SESSION = 5;
const STREAM_MS = 10 * 60_000;

export interface LiveDeps {
  sessions: SessionStore;
  log: Logger;
  /** How often a stream looks for changes. */
  pollMs: number;
}

/**
 * Server-sent events for live pages: the stream reads a page's fingerprint
 * every pollMs and sends `changed` when it moves, `ended` within a tick of the
 * session ending on any replica. A replica serves at most MAX_STREAMS, one
 * session at most MAX_STREAMS_PER_SESSION (tabs), each at most STREAM_MS of
 * real time. Proved by test/console/sessions.test.ts ("tells a live page...",
 * "gives one session a few live streams").
 */
export function createLiveStreams({ sessions, log, pollMs }: LiveDeps) {
  let streams = 0;
  const perSession = new Map<string, number>();

  return function serve(c: Context<ConsoleEnv>, what: string, fingerprint: () => Promise<string>): Response | Promise<Response> {
    const sessionId = c.get('session').id;
    // One session cannot take every stream of the replica: a few tabs each.
    if (streams >= MAX_STREAMS || (perSession.get(sessionId) ?? 0) >= MAX_STREAMS_PER_SESSION) {
      return c.text('too many live pages; close some, or reload later', 503);
    }
    const token = c.get('sessionToken');
    streams += 1;
    perSession.set(sessionId, (perSession.get(sessionId) ?? 0) + 1);
    return streamSSE(
      c,
      async (stream) => {
        // Real time bounds the connection, whatever the broker's clock says.
        const started = performance.now();
        try {
          let last = await fingerprint();
          await stream.writeSSE({ event: 'ready', data: 'ok', retry: 3000 });
          for (let tick = 1; !stream.aborted && performance.now() - started < STREAM_MS; tick++) {
            await stream.sleep(pollMs);
            if (stream.aborted) break;
            // Logout on any replica, or a timeout, ends the stream within a tick.
            if (!(await sessions.find(token))) {
              await stream.writeSSE({ event: 'ended', data: 'session ended' });
              break;
            }
            const now = await fingerprint();
            if (now !== last) {
              last = now;
              await stream.writeSSE({ event: 'changed', data: what });
            } else if (tick % 15 === 0) {
              await stream.write(': keep-alive\n\n');
            }
          }
        } finally {
          streams -= 1;
          const left = (perSession.get(sessionId) ?? 1) - 1;
          if (left > 0) perSession.set(sessionId, left);
          else perSession.delete(sessionId);
        }
      },
      async (err) => {
        // A database outage ends the stream; the browser reconnects after `retry`.
        log.warn({ err: err.name }, 'a console live stream ended on an error');
      },
    );
  };
}
export type LiveStreams = ReturnType<typeof createLiveStreams>;
