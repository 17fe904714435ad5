import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import type { Backend } from '../backends/types.js';
import { createBroker } from '../broker.js';
import { systemClock } from '../clock.js';
import { withTimeout } from '../concurrency.js';
import type { Config } from '../config/schema.js';
import { runMigrations } from '../db/migrate.js';
import { asyncStdout, createLogger, type Logger } from '../log.js';
import { devBanner } from './banner.js';
import { instanceId, openConfiguredDatabase } from './context.js';

const urlOf = (address: string, port: number) => `http://${address.includes(':') ? `[${address}]` : address}:${port}`;

/**
 * The metrics listener (config `metrics.listen`), apart from the API. It is
 * bound before the API listener, so a port it cannot take stops the broker
 * before it has served anything (and a second broker on one host says why).
 */
async function serveMetrics(config: Config, fetch: (request: Request) => Response | Promise<Response>, log: Logger): Promise<Server | undefined> {
  const listen = config.metrics.listen;
  if (!listen) return undefined;
  return new Promise((resolve, reject) => {
    const starting = (err: NodeJS.ErrnoException) => {
      log.fatal({ err: err.code, listen: `${listen.host}:${listen.port}` }, 'the metrics listener could not start (set metrics.listen or METRICS_LISTEN, or off)');
      reject(err);
    };
    const server = serve({ fetch, port: listen.port, hostname: listen.host }, (info) => {
      server.off('error', starting);
      // Once it listens, an error of the listener (EMFILE on accept, ...) is the process's, as it would be on the API's.
      server.on('error', (err: NodeJS.ErrnoException) => {
        log.fatal({ err: err.code }, 'the metrics listener failed');
        log.flush(() => process.exit(1));
      });
      log.info({ url: `${urlOf(info.address, info.port)}/metrics`, bearer_required: config.metrics.token_sha256 !== undefined }, 'metrics listening');
      resolve(server);
    }) as Server;
    server.once('error', starting);
  });
}

/** Migrates, serves, sweeps; on SIGTERM stops taking requests and claims, finishes what is in flight, exits 0. */
export async function runServe(config: Config, version: string, extra: { backends?: Map<string, Backend> } = {}): Promise<void> {
  const log = createLogger(config.log_level, asyncStdout());
  const database = await openConfiguredDatabase(config);
  await runMigrations(database);
  const broker = await createBroker({ config, database, clock: systemClock, log, instanceId: instanceId(), version, backends: extra.backends });
  let metricsServer: Server | undefined;
  try {
    metricsServer = await serveMetrics(config, broker.metricsApp.fetch, log);
  } catch {
    await database.close();
    await new Promise<void>((resolve) => log.flush(() => resolve()));
    process.exit(1);
  }

  const server = serve(
    {
      fetch: broker.app.fetch,
      port: config.port,
      hostname: config.host,
      // Slow clients are cut off: headers within 10 s, the whole request within 30 s, checked every 2 s.
      serverOptions: { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 2_000 },
    },
    (info) => {
      const url = urlOf(info.address, info.port);
      if (config.dev) process.stdout.write(devBanner(config, url));
      log.info({ url, database: database.kind, dev: config.dev }, 'tasklease listening');
    },
  );
  const http = server as Server;
  if (!config.agents.require_registration) {
    log.warn({ agents: config.agents.register.length }, 'agents.require_registration is off: an identity no registered agent matches may get credentials its roles allow');
  }
  broker.sweeper.start();
  broker.notifier.start();
  broker.transmitter.start();
  // The backends' permission self-check, once at start-up: missing permissions are logged now and shown by /readyz.
  void broker.checkBackends().then((result) => {
    for (const [name, check] of Object.entries(result)) if (!check.ok) log.warn({ backend: name, missing: check.missing }, 'backend permissions missing');
  });

  // The operator's Cedar files: reloaded on SIGHUP and when one changes; a set that does not load leaves the old one.
  const stopWatching = broker.policyReloader.watch();
  process.on('SIGHUP', () => void broker.policyReloader.reload('SIGHUP'));

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    stopWatching();
    log.info({ signal }, 'draining');
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    http.closeIdleConnections();
    metricsServer?.close();
    await Promise.all([closed, broker.sweeper.stop(), broker.notifier.stop(), broker.transmitter.stop()]);
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
