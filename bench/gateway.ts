import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startProcess, type Proc } from './setup.js';
import type { LoadResult, Req } from './wrk.js';
import { fmtLoad } from './wrk.js';

type Load = (url: string, reqs: Req[], name: string, expect: number, seconds?: number, connections?: number) => Promise<LoadResult>;

/**
 * Scenario g: the gateway's cost. A local upstream called directly, through
 * the least proxy node:http allows (the ceiling, bench/proxy-ceiling.ts), and
 * through a sidecar gateway (`node dist/main.js gateway`, its own process,
 * holding the task's jwt and attaching it), each twice in turn, with 1 agent
 * (what one call adds) and with 64 (throughput).
 */
export async function gatewayScenario(deps: { dir: string; broker: Proc; agent: { token: string; task: string }; load: Load }): Promise<string[]> {
  const upstreamPort = await freePort();
  const upstream = await startProcess(['bin/run-ts.js', 'bench/upstream.ts', String(upstreamPort)], upstreamPort, { dir: deps.dir, name: 'upstream', ready: async (url) => (await fetch(`${url}/`)).ok });
  const ceilingPort = await freePort();
  const ceiling = await startProcess(['bin/run-ts.js', 'bench/proxy-ceiling.ts', String(ceilingPort), String(upstreamPort)], ceilingPort, { dir: deps.dir, name: 'proxy-ceiling', ready: async (url) => (await fetch(`${url}/up/`)).ok });
  const gatewayPort = await freePort();
  const routes = join(deps.dir, 'gateway.yaml');
  writeFileSync(routes, JSON.stringify({ gateway: { listen: `127.0.0.1:${gatewayPort}`, routes: [{ name: 'up', upstream: upstream.url, role: 'bench', allow: [{ method: 'GET', path: '/**' }] }] } }));
  const gateway = await startProcess(['dist/main.js', 'gateway', '--routes', routes, '--task', deps.agent.task, '--url', deps.broker.url], gatewayPort, {
    dir: deps.dir,
    name: 'gateway',
    env: { TASKLEASE_TOKEN: deps.agent.token },
    ready: async (url) => (await fetch(`${url}/up/ready`)).ok,
  });
  try {
    const direct = [{ method: 'GET' as const, path: '/json' }];
    const via = [{ method: 'GET' as const, path: '/up/json' }];
    await deps.load(upstream.url, direct, 'warm-direct', 200, 2);
    await deps.load(gateway.url, via, 'warm-gateway', 200, 2);
    const lines: string[] = [];
    const mean = (a: LoadResult, b: LoadResult, f: (r: LoadResult) => number) => (f(a) + f(b)) / 2;
    for (const connections of [1, 64]) {
      const runs = { direct: [] as LoadResult[], ceiling: [] as LoadResult[], gateway: [] as LoadResult[] };
      for (const round of ['a', 'b']) {
        runs.direct.push(await deps.load(upstream.url, direct, `direct-${connections}-${round}`, 200, undefined, connections));
        runs.ceiling.push(await deps.load(ceiling.url, via, `proxy-ceiling-${connections}-${round}`, 200, undefined, connections));
        runs.gateway.push(await deps.load(gateway.url, via, `gateway-${connections}-${round}`, 200, undefined, connections));
      }
      const [d, c, g] = [runs.direct, runs.ceiling, runs.gateway] as [LoadResult[], LoadResult[], LoadResult[]];
      const p50 = (r: LoadResult[]) => mean(r[0]!, r[1]!, (x) => x.p50);
      const p99 = (r: LoadResult[]) => mean(r[0]!, r[1]!, (x) => x.p99);
      const rate = (r: LoadResult[]) => mean(r[0]!, r[1]!, (x) => x.perSecond);
      lines.push(`g  upstream direct, ${String(connections).padStart(2)} agents         ${fmtLoad(d[0]!)}`);
      lines.push(`g  least node proxy, ${String(connections).padStart(2)} agents        ${fmtLoad(c[0]!)}`);
      lines.push(`g  through the gateway, ${String(connections).padStart(2)} agents     ${fmtLoad(g[0]!)}`);
      lines.push(
        `   means of two rounds: added to direct p50 ${(p50(g) - p50(d)).toFixed(2)} ms, p99 ${(p99(g) - p99(d)).toFixed(2)} ms (the least proxy adds p50 ${(p50(c) - p50(d)).toFixed(2)} ms); ` +
          `throughput ${(rate(g) / rate(d)).toFixed(3)} of direct, ${(rate(g) / rate(c)).toFixed(3)} of the least proxy`,
      );
    }
    lines.push(`   gateway RSS ${gateway.rssMb().toFixed(0)} MB`);
    return lines;
  } finally {
    await gateway.stop();
    await ceiling.stop();
    await upstream.stop();
  }
}
