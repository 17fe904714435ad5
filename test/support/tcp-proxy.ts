import { createServer, connect, type Socket } from 'node:net';
import { listenLocal } from './listen.js';

/**
 * A TCP proxy in front of PostgreSQL that a test can cut: `down()` closes
 * every open connection and refuses new ones until `up()`, like a database
 * that went away and came back. `stall()` drops every byte and closes
 * nothing, like a network path that died silently, until `unstall()`.
 * `sent()` counts the chunks clients have written towards PostgreSQL (each
 * round trip writes at least one), so a test can say that nothing was asked.
 */
export async function startTcpProxy(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  let refusing = false;
  let stalled = false;
  let sent = 0;
  const server = createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (d) => void (sent++, stalled || upstream.write(d)));
    upstream.on('data', (d) => void (stalled || client.write(d)));
  });
  const port = await listenLocal(server);
  return {
    port,
    sent: () => sent,
    down() {
      refusing = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    up() {
      refusing = false;
    },
    stall() {
      stalled = true;
    },
    unstall() {
      stalled = false;
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
