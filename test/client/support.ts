import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import type { TestBroker } from '../support/broker.js';

/** Serves a test broker's app on a real loopback port, as `tasklease serve` would; `close` ends it. */
export async function serveBroker(t: TestBroker) {
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: t.broker.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server)) as Server;
  });
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
