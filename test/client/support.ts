import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { afterAll, beforeAll } from 'vitest';
import { startTestBroker, type TestBroker, type TestBrokerOptions } from '../support/broker.js';
import { openTestDatabase, type Driver, type TestDatabase } from '../support/db.js';

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

/**
 * Registers the hooks of a test file whose clients reach the broker over HTTP: a fresh database on
 * `driver`, a test broker over it served on a loopback port, dropped after; `get` reads them in a test.
 */
export function useServedBroker(driver: Driver, options?: TestBrokerOptions) {
  let database: TestDatabase | undefined;
  const served = {} as { t: TestBroker; url: string };
  let close: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    database = await openTestDatabase(driver);
    served.t = await startTestBroker(database, options);
    const http = await serveBroker(served.t);
    served.url = http.url;
    close = http.close;
  });
  afterAll(async () => {
    await close?.();
    await database?.drop();
  });
  return served;
}
