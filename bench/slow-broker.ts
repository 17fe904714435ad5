/**
 * `tasklease serve` with one extra backend, `slow`, whose mint takes
 * BENCH_BACKEND_DELAY_MS (50 ms): scenario 2 measures what the broker adds.
 * Usage: slow-broker.ts --config <file>
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../src/backends/types.js';

// The compiled broker, as the container image runs it (npm run bench builds dist/ first).
const { runServe } = (await import('../dist/cli/serve.js' as string)) as typeof import('../src/cli/serve.js');
const { loadConfigFile } = (await import('../dist/config/load.js' as string)) as typeof import('../src/config/load.js');

const delayMs = Number(process.env.BENCH_BACKEND_DELAY_MS ?? 50);
const slow: Backend = {
  name: 'slow',
  type: 'bench-slow',
  async mint({ leaseId, ttlSeconds, now }) {
    await sleep(delayMs);
    return { ref: `slow:${leaseId}`, credentials: { token: randomBytes(24).toString('base64url') }, expiresAt: new Date(now.getTime() + ttlSeconds * 1000) };
  },
  async revoke() {},
};

await runServe(loadConfigFile(process.argv[process.argv.indexOf('--config') + 1]!, process.env), 'bench', { backends: new Map([['slow', slow]]) });
