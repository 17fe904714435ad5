import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import type { Backend } from '../backends/types.js';
import { createBroker } from '../broker.js';
import { systemClock } from '../clock.js';
import { withTimeout } from '../concurrency.js';
import type { Config } from '../config/schema.js';
import { runMigrations } from '../db/migrate.js';
import { asyncStdout, createLogger } from '../log.js';
import { devBanner } from './banner.js';
import { instanceId, openConfiguredDatabase } from './context.js';

/** Migrates, serves, sweeps; on SIGTERM stops taking requests and claims, finishes what is in flight, exits 0. */
export async function runServe(config: Config, version: string, extra: { backends?: Map<string, Backend> } = {}): Promise<void> {
  const log = createLogger(config.log_level, asyncStdout());
  const database = await openConfiguredDatabase(config);
  await runMigrations(database);
  const broker = await createBroker({ config, database, clock: systemClock, log, instanceId: instanceId(), version, backends: extra.backends });

  const server = serve(
    {
      fetch: broker.app.fetch,
      port: config.port,
      hostname: config.host,
      // Slow clients are cut off: headers within 10 s, the whole request within 30 s, checked every 2 s.
      serverOptions: { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 2_000 },
    },
    (info) => {
    const url = `http://${info.address.includes(':') ? `[${info.address}]` : info.address}:${info.port}`;
    if (config.dev) process.stdout.write(devBanner(config, url));
    log.info({ url, database: database.kind, dev: config.dev }, 'tasklease listening');
    },
  );
  const http = server as Server;
  broker.sweeper.start();
  // The backends' permission self-check, once at start-up: missing permissions are logged now and shown by /readyz.
  void broker.checkBackends().then((result) => {
    for (const [name, check] of Object.entries(result)) if (!check.ok) log.warn({ backend: name, missing: check.missing }, 'backend permissions missing');
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    http.closeIdleConnections();
    await Promise.all([closed, broker.sweeper.stop()]);
    // The counts of repeated refusals live in memory until written: write them before the database closes.
    await withTimeout(broker.refusals.drain(), 5000, 'timed out').catch(() => log.warn('repeated refusals not audited before exit'));
    await database.close();
    log.info('stopped');
    await new Promise<void>((resolve) => log.flush(() => resolve()));
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
