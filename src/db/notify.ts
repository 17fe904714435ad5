import { randomUUID } from 'node:crypto';
import type { PGlite } from '@electric-sql/pglite';
import type postgres from 'postgres';
import { withTimeout } from '../concurrency.js';

/** What a listener tells its owner. */
export interface NotifyHandlers {
  /** A notification on the channel, with its payload. */
  message(payload: string): void;
  /**
   * `true` once notifications are being received (again), `false` when some
   * may be missed (the connection was lost, or could not listen: `reason`).
   * Whatever was learnt before either may be stale: both mean start over.
   */
  listening(on: boolean, reason?: string): void;
}

export interface Listener {
  close(): Promise<void>;
}

const quoted = (channel: string) => `"${channel.replace(/"/g, '""')}"`;

/** Heartbeats carry this prefix, which no task id has: a listener never takes one for a closure. */
const HEARTBEAT = '#heartbeat:';

export interface ListenerTiming {
  /** The first wait before listening again after a loss (doubling, up to 30 s). */
  retryMs?: number;
  /** How often the listener checks that its own notification comes back. */
  heartbeatMs?: number;
  /** How long it waits for it before taking the connection for dead. */
  heartbeatTimeoutMs?: number;
}

/**
 * LISTEN on a connection of its own, kept for as long as the listener is
 * open: when the connection closes (the server restarted, a proxy dropped
 * it), it says so, then listens again on a new one, retrying every
 * `retryMs` (doubling, up to 30 s) while the server cannot be reached.
 * (postgres.js's own `listen` gives up on a channel whose LISTEN failed once
 * after a reconnect, without telling anyone.) A connection that dies
 * silently (a dropped NAT entry, a vanished host) or never delivers (a
 * pooler that does not carry LISTEN) is found by a heartbeat: every
 * `heartbeatMs` the listener notifies its own channel and expects to hear it
 * within `heartbeatTimeoutMs`; if not, it says so and starts over on a new
 * connection.
 */
export function postgresListener(
  open: (hooks: { onnotify: (channel: string, payload: string) => void; onclose: () => void }) => postgres.Sql,
  channel: string,
  handlers: NotifyHandlers,
  { retryMs = 1000, heartbeatMs = 30_000, heartbeatTimeoutMs = 10_000 }: ListenerTiming = {},
): Listener {
  let closed = false;
  let live = false;
  let wait = retryMs;
  let timer: NodeJS.Timeout | undefined;
  let awaited: { token: string; heard: () => void } | undefined;
  const lost = (reason: string) => {
    live = false;
    handlers.listening(false, reason);
    retry();
  };
  const retry = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void start();
    }, wait);
    wait = Math.min(wait * 2, 30_000);
  };
  const connect = (): postgres.Sql => {
    const self: postgres.Sql = open({
      onnotify(c, payload) {
        if (c !== channel || client !== self) return;
        if (!payload.startsWith(HEARTBEAT)) handlers.message(payload);
        else if (payload === awaited?.token) awaited.heard();
      },
      onclose() {
        if (!closed && client === self) lost('the connection closed');
      },
    });
    return self;
  };
  let client = connect();
  async function start() {
    try {
      await client.unsafe(`listen ${quoted(channel)}`);
      wait = retryMs;
      live = !closed;
      if (live) handlers.listening(true);
    } catch (err) {
      if (!closed) lost(err instanceof Error ? err.message : 'LISTEN failed');
    }
  }
  async function beat() {
    if (closed || !live || awaited) return;
    const token = `${HEARTBEAT}${randomUUID()}`;
    const heard = new Promise<void>((resolve) => (awaited = { token, heard: resolve }));
    const sent = client.unsafe('select pg_notify($1, $2)', [channel, token]);
    const ok = await withTimeout(Promise.all([sent, heard]), heartbeatTimeoutMs, 'heartbeat').then(
      () => true,
      () => false,
    );
    awaited = undefined;
    if (ok || closed || !live) return;
    // Replaced, not reused: whatever the old connection still holds fails with it.
    const dead = client;
    client = connect();
    void dead.end({ timeout: 0 }).catch(() => {});
    lost(`no heartbeat within ${heartbeatTimeoutMs} ms`);
  }
  const heartbeat = setInterval(() => void beat(), heartbeatMs);
  heartbeat.unref();
  void start();
  return {
    async close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(heartbeat);
      await client.end({ timeout: 5 });
    },
  };
}

/** PGlite is one process and one connection: nothing can be missed once LISTEN has run. `channel` is a lower-case identifier. */
export function pgliteListener(client: PGlite, channel: string, handlers: NotifyHandlers): Listener {
  const unlisten = client.listen(channel, handlers.message).then(
    (off) => {
      handlers.listening(true);
      return off;
    },
    (err: unknown) => {
      handlers.listening(false, err instanceof Error ? err.message : 'LISTEN failed');
      return undefined;
    },
  );
  return {
    async close() {
      const off = await unlisten;
      if (!client.closed) await off?.().catch(() => {});
    },
  };
}
