/**
 * Two brokers (replicas, each with its own pool, caches and sweeper) behind
 * one port, as node:cluster shares it: how much a second core adds.
 * Usage: replicas.ts --config <file>; BENCH_WORKERS (2) sets how many.
 */
import cluster from 'node:cluster';

const n = Number(process.env.BENCH_WORKERS ?? 2);
if (cluster.isPrimary) {
  cluster.setupPrimary({ exec: 'bin/run-ts.js', args: ['bench/replicas.ts', ...process.argv.slice(2)] });
  for (let i = 0; i < n; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    cluster.on('exit', () => Object.keys(cluster.workers ?? {}).length === 0 && process.exit(0));
  });
} else {
  // The compiled broker, as the container image runs it (npm run bench builds dist/ first).
  const { runServe } = (await import('../dist/cli/serve.js' as string)) as typeof import('../src/cli/serve.js');
  const { loadConfigFile } = (await import('../dist/config/load.js' as string)) as typeof import('../src/config/load.js');
  await runServe(loadConfigFile(process.argv[process.argv.indexOf('--config') + 1]!, process.env), 'bench');
}
