import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./wrk/requests.lua', import.meta.url));

export interface Req {
  method: 'GET' | 'POST';
  path: string;
  token?: string;
  body?: unknown;
}

export interface LoadResult {
  /** Responses with the expected status, per second. */
  perSecond: number;
  requests: number;
  wrong: number;
  socketErrors: number;
  p50: number;
  p99: number;
  max: number;
  seconds: number;
}

/**
 * Drives `base` with wrk from a separate process: one thread, `connections`
 * keep-alive connections, cycling through `reqs` (each one agent with its own
 * token). Latencies are in milliseconds.
 */
export function wrk(base: string, reqs: Req[], opts: { connections: number; seconds: number; expect: number; dir: string; name: string }): Promise<LoadResult> {
  const file = join(opts.dir, `${opts.name}.reqs`);
  writeFileSync(file, reqs.map((r) => [r.method, r.path, r.token ?? '-', r.body === undefined ? '-' : JSON.stringify(r.body)].join('\t')).join('\n') + '\n');
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--timeout', '10s', '-s', SCRIPT, base, '--', file, String(opts.expect)];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'wrk is not installed (apt-get install wrk)' : stderr || err.message}`));
      const line = stdout.split('\n').find((l) => l.startsWith('WRK '));
      if (!line) return reject(new Error(`wrk printed no summary:\n${stdout}${stderr}`));
      const s = JSON.parse(line.slice(4)) as Record<string, number>;
      const seconds = s.duration_us! / 1e6;
      const good = s.requests! - s.wrong_status!;
      resolve({
        perSecond: good / seconds,
        requests: s.requests!,
        wrong: s.wrong_status!,
        socketErrors: s.socket_errors!,
        p50: s.p50_us! / 1000,
        p99: s.p99_us! / 1000,
        max: s.max_us! / 1000,
        seconds,
      });
    });
  });
}

export const fmtLoad = (r: LoadResult) =>
  `${r.perSecond.toFixed(0)}/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  (${r.requests} requests in ${r.seconds.toFixed(1)} s, ${r.wrong} wrong status, ${r.socketErrors} socket errors)`;
