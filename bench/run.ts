/**
 * npm run bench: issuance throughput of the jwt backend over real HTTP on the
 * real PostgreSQL, against the ceiling of bare Hono measured in the same run
 * with the same load generator. Preliminary: the load runs in this process
 * (issue 8 moves it to a separate one and adds the other scenarios).
 */
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { startTestBroker } from '../test/support/broker.js';
import { openTestDatabase } from '../test/support/db.js';
import { runLoad } from './load.js';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);

function listen(fetch: (req: Request) => Response | Promise<Response>): Promise<{ url: string; close: () => void }> {
  return new Promise((resolve) => {
    const server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
      resolve({ url: `http://127.0.0.1:${info.port}`, close: () => server.close() }),
    );
  });
}

const fmt = (r: Awaited<ReturnType<typeof runLoad>>) =>
  `${r.perSecond.toFixed(0)}/s  p50 ${r.p50.toFixed(1)} ms  p99 ${r.p99.toFixed(1)} ms  (${r.requests} requests, ${r.errors} errors)`;

const bare = new Hono().get('/', (c) => c.json({ ok: true }));
const bareServer = await listen(bare.fetch);
const ceiling = await runLoad({ concurrency: CONCURRENCY, seconds: SECONDS, request: async () => (await fetch(bareServer.url)).ok });
bareServer.close();

const database = await openTestDatabase('postgres');
const t = await startTestBroker(database, { config: { log_level: 'silent' } });
const server = await listen(t.broker.app.fetch);
const agents = await Promise.all(
  Array.from({ length: CONCURRENCY }, async (_, i) => {
    const subject = `agent-bench-${i}`;
    const task = `bench-${process.pid}-${i}`;
    await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { id: task, agent: { subject }, roles: ['demo'], ttl_seconds: 3600 });
    return { task, token: await t.tokenFor(subject) };
  }),
);
const issuance = await runLoad({
  concurrency: CONCURRENCY,
  seconds: SECONDS,
  request: async (worker) => {
    const agent = agents[worker]!;
    const res = await fetch(`${server.url}/v1/credentials`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ task: agent.task, role: 'demo' }),
    });
    await res.arrayBuffer();
    return res.status === 201;
  },
});
server.close();
await database.drop();

console.log(`concurrency ${CONCURRENCY}, ${SECONDS} s each, load generator in-process (fetch)`);
console.log(`ceiling  bare Hono JSON      ${fmt(ceiling)}`);
console.log(`scenario issuance, jwt, pg   ${fmt(issuance)}`);
console.log(`ratio    issuance / bare Hono = ${(issuance.perSecond / ceiling.perSecond).toFixed(3)}`);
process.exit(0);
