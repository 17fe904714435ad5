import cluster from 'node:cluster';
import { runServe } from '../src/cli/serve.js';
import { loadConfigFile } from '../src/config/load.js';
const n = Number(process.env.BENCH_WORKERS ?? 2);
if (cluster.isPrimary) {
  cluster.setupPrimary({ exec: 'bin/run-ts.js', args: ['bench/cluster-try.ts', ...process.argv.slice(2)] });
  for (let i = 0; i < n; i++) cluster.fork();
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM'); setTimeout(() => process.exit(0), 3000); });
} else {
  await runServe(loadConfigFile(process.argv[process.argv.indexOf('--config') + 1]!, process.env), 'bench');
}
