/**
 * npm run bench: the broker as a separate process on the real PostgreSQL,
 * driven by wrk from another process as many agents with distinct identities
 * (each reusing its token), against ceilings measured in the same run with the
 * same load generator. See BENCHMARKS.md for what each scenario means.
 *
 * BENCH_SECONDS (10) per load run, BENCH_STEADY_SECONDS (300) for the RSS
 * run, BENCH_CONCURRENCY (64), BENCH_AGENTS (1000), BENCH_FLOOD_CONNECTIONS
 * (16, scenario 7's flooding identity), BENCH_SUSPEND_LEASES (scenario 8's
 * rounds: 1000,2000,4000,8000,16000), BENCH_PAGE_LEASES (1000000) and
 * BENCH_PAGE_RUNS (200) for scenario 9, BENCH_ONLY=1,3,3s to pick.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchIssuer, cpuPerRequest, cpuSnapshot, dropDatabase, freePort, freshDatabase, startBroker, startProcess, writeConfig, type Proc } from './setup.js';
import { HELD_POLICY, operatorPolicies } from './cedar-policies.js';
import { floodScenario } from './flood.js';
import { leasesPageScenario } from './leases-page.js';
import { completionProbe, openAgentTasks, revocationProbe } from './flows.js';
import { createSsfReceiver } from '../examples/ssf-receiver.mjs';
import { scaleScenario, sweeperScenario } from './state.js';
import { suspendScenario } from './suspend.js';
import { gatewayScenario } from './gateway.js';
import { fmtLoad, wrk, type Req } from './wrk.js';

const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 10);
const STEADY = Number(env.BENCH_STEADY_SECONDS ?? 300);
const CONNS = Number(env.BENCH_CONCURRENCY ?? 64);
const AGENTS = Number(env.BENCH_AGENTS ?? 1000);
const only = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(',')) : undefined;
const wants = (s: string) => !only || only.has(s);

// The brokers run compiled, as the container image runs them (the build copies the console's assets too).
execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
const dir = mkdtempSync(join(tmpdir(), 'tasklease-bench-'));
const issuer = await benchIssuer();
const load = (url: string, reqs: Req[], name: string, expect: number, seconds = SECONDS) => wrk(url, reqs, { connections: CONNS, seconds, expect, dir, name });
/** A load run, with where the machine's CPU went per request. */
async function measured(proc: Proc, reqs: Req[], name: string, expect: number) {
  const before = cpuSnapshot(proc.child.pid!);
  const result = await load(proc.url, reqs, name, expect);
  return { result, cpu: cpuPerRequest(before, cpuSnapshot(proc.child.pid!), result.requests) };
}
const pct = (a: number, b: number) => `${(a / b).toFixed(3)}`;
const say = (line = '') => console.log(line);

say(`tasklease bench: ${cpus().length} cores, node ${process.version}, wrk -t1 -c${CONNS}, ${SECONDS} s per run, ${AGENTS} agents; logs in ${dir}`);
const DB = 'tasklease_bench';
const dbUrl = await freshDatabase(DB);

// Ceilings: the same HTTP stack and load generator, with nothing of the broker's in it.
const ceilingPort = await freePort();
const ceiling = await startProcess(['bin/run-ts.js', 'bench/ceiling-server.ts', String(ceilingPort), dbUrl, String(CONNS)], ceilingPort, {
  dir,
  name: 'ceiling',
  ready: async (url) => (await fetch(`${url}/json`)).ok,
});
await load(ceiling.url, [{ method: 'GET', path: '/json' }], 'warm-json', 200, 2);
const { result: bare, cpu: bareCpu } = await measured(ceiling, [{ method: 'GET', path: '/json' }], 'json', 200);
const { result: insert, cpu: insertCpu } = await measured(ceiling, [{ method: 'POST', path: '/insert', body: {} }], 'insert', 201);
// Scenario 2's floor: a 50 ms wait, then a response (and then one durable INSERT), at 64 and at 8 in flight.
const waits = wants('2')
  ? {
      wait: await load(ceiling.url, [{ method: 'POST', path: '/wait', body: {} }], 'wait', 201),
      waitInsert: await load(ceiling.url, [{ method: 'POST', path: '/wait-insert', body: {} }], 'wait-insert', 201),
      wait8: await wrk(ceiling.url, [{ method: 'POST', path: '/wait', body: {} }], { connections: 8, seconds: SECONDS, expect: 201, dir, name: 'wait-8' }),
      waitInsert8: await wrk(ceiling.url, [{ method: 'POST', path: '/wait-insert', body: {} }], { connections: 8, seconds: SECONDS, expect: 201, dir, name: 'wait-insert-8' }),
    }
  : undefined;
await ceiling.stop();
say(`ceiling  bare Hono JSON                 ${fmtLoad(bare)}`);
say(`  ${bareCpu}`);
say(`ceiling  1 INSERT/request, postgres.js  ${fmtLoad(insert)}`);
say(`  ${insertCpu}`);

const credentialReqs = (agents: { token: string; task: string }[], role: string): Req[] =>
  agents.map((a) => ({ method: 'POST', path: '/v1/credentials', token: a.token, body: { task: a.task, role } }));

async function withBroker<T>(name: string, entry: string[] | undefined, databaseUrl: string | undefined, fn: (broker: Proc) => Promise<T>, extra: { policy?: object; oauth?: object } = {}): Promise<T> {
  const port = await freePort();
  const config = writeConfig(dir, name, { port, databaseUrl, jwk: issuer.jwk, ...extra });
  const broker = await startBroker(config, port, dir, name, entry);
  try {
    return await fn(broker);
  } finally {
    await broker.stop();
  }
}

if (wants('1') || wants('3')) {
  await withBroker('broker-pg', undefined, dbUrl, async (broker) => {
    const agents = await openAgentTasks(broker.url, issuer, AGENTS, 'pg');
    const reqs = credentialReqs(agents, 'bench');
    await load(broker.url, reqs, 'warm-issue', 201, 3);
    if (wants('1')) {
      const { result: issued, cpu } = await measured(broker, reqs, 'issue', 201);
      say(`1 issuance, jwt, PostgreSQL             ${fmtLoad(issued)}`);
      say(`  ${cpu}`);
      say(`  ratio to bare Hono ${pct(issued.perSecond, bare.perSecond)}, to 1-INSERT ceiling ${pct(issued.perSecond, insert.perSecond)}; broker RSS ${broker.rssMb().toFixed(0)} MB`);
    }
    if (wants('3')) {
      // Scenario 1's load again, with tasks of 10 leases completed meanwhile (and their revocations swept).
      let running = true;
      const probe = revocationProbe(broker.url, dbUrl, issuer, () => running);
      const during = await load(broker.url, reqs, 'issue-during-3', 201).finally(() => (running = false));
      const revocations = await probe;
      say(`1 the same while scenario 3 runs       ${fmtLoad(during)}`);
      const sorted = revocations.sort((a, b) => a - b);
      const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!.toFixed(0) : '-');
      say(`3 completion -> 10 leases revoked        p50 ${q(0.5)} ms  p99 ${q(0.99)} ms  max ${q(1)} ms  (${sorted.length} tasks, during scenario 1's load)`);
    }
  });
}

if (wants('3s')) {
  // Scenario 3 with a relying party told by SSF: completion -> its receiver (examples/ssf-receiver.mjs, jose) has verified all 10 SETs.
  const receiverPort = await freePort();
  const oauth = { resource_servers: [{ client_id: 'bench-rp', secret_sha256: '0'.repeat(64), audiences: ['bench-api'], security_events: { delivery: 'push', endpoint_url: `http://127.0.0.1:${receiverPort}/ssf` } }] };
  await withBroker(
    'broker-pg-ssf',
    undefined,
    dbUrl,
    async (broker) => {
      const receiver = createSsfReceiver({ transmitter: broker.url, clientId: 'bench-rp' });
      await new Promise<void>((resolve) => receiver.server.listen(receiverPort, '127.0.0.1', () => resolve()));
      try {
        const reqs = credentialReqs(await openAgentTasks(broker.url, issuer, AGENTS, 'pg-ssf'), 'bench');
        await load(broker.url, reqs, 'warm-issue-ssf', 201, 3);
        let running = true;
        const probe = completionProbe(broker.url, issuer, () => running, (_task, leases) => leases.every((l) => receiver.revoked.has(l)));
        const during = await load(broker.url, reqs, 'issue-during-3s', 201).finally(() => (running = false));
        const sorted = (await probe).sort((a, b) => a - b);
        const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!.toFixed(0) : '-');
        say(`1 the same while scenario 3s runs      ${fmtLoad(during)}`);
        say(`3s completion -> 10 SETs verified       p50 ${q(0.5)} ms  p99 ${q(0.99)} ms  max ${q(1)} ms  (${sorted.length} tasks, during scenario 1's load)`);
      } finally {
        receiver.server.closeAllConnections();
        receiver.server.close();
      }
    },
    { oauth },
  );
}

/** Scenario 1 again on a broker of its own, deciding with `policy` besides the bench's config. */
async function policyScenario(id: string, label: string, policy: object) {
  await withBroker(
    `broker-pg-${id}`,
    undefined,
    dbUrl,
    async (broker) => {
      const reqs = credentialReqs(await openAgentTasks(broker.url, issuer, AGENTS, `pg-${id}`), 'bench');
      await load(broker.url, reqs, `warm-issue-${id}`, 201, 3);
      const { result, cpu } = await measured(broker, reqs, `issue-${id}`, 201);
      say(`${label.padEnd(39)}${fmtLoad(result)}`);
      say(`  ${cpu}`);
      say(`  ratio to 1-INSERT ceiling ${pct(result.perSecond, insert.perSecond)}`);
    },
    { policy },
  );
}

const CEDAR_POLICIES = Number(env.BENCH_CEDAR_POLICIES ?? 200);
if (wants('1') && CEDAR_POLICIES > 0) {
  // The broker deciding with the operator's policies besides the YAML's (bench/cedar-policies.ts).
  const file = join(dir, 'operator.cedar');
  writeFileSync(file, operatorPolicies(CEDAR_POLICIES));
  await policyScenario('cedar', `1c the same, ${CEDAR_POLICIES} operator policies`, { cedar: { files: [file] } });
}
// What is held, read for every request, which then takes the commit's locked way:
// 1h, one operator policy on it (the toxic pair of examples/policies/); 1k, a YAML conflict on the bench's role.
if (wants('1h')) {
  const file = join(dir, 'held.cedar');
  writeFileSync(file, HELD_POLICY);
  await policyScenario('held', '1h the same, a policy on what is held', { cedar: { files: [file] } });
}
if (wants('1k')) await policyScenario('conflict', '1k the same, a YAML conflict', { conflicts: [{ name: 'bench-slow', roles: ['bench', 'slow'], scope: 'agent' }] });

if (wants('1b')) {
  // Not in the default run's order of business: the same load on two replicas sharing the port (node:cluster).
  await withBroker('broker-2-replicas', ['bin/run-ts.js', 'bench/replicas.ts'], dbUrl, async (broker) => {
    const agents = await openAgentTasks(broker.url, issuer, AGENTS, 'two');
    const reqs = credentialReqs(agents, 'bench');
    await load(broker.url, reqs, 'warm-two', 201, 3);
    const before = cpuSnapshot(broker.child.pid!);
    const two = await load(broker.url, reqs, 'two', 201);
    const after = cpuSnapshot(broker.child.pid!);
    say(`1b issuance, 2 replicas behind one port ${fmtLoad(two)}`);
    say(`  ratio to bare Hono ${pct(two.perSecond, bare.perSecond)}, to 1-INSERT ceiling ${pct(two.perSecond, insert.perSecond)}`);
    say(`  machine busy ${(after.machine - before.machine).toFixed(1)} CPU-s, PostgreSQL ${((((after.postgres - before.postgres) / two.requests) * 1e6).toFixed(0))} us per request`);
  });
}

if (wants('2')) {
  await withBroker('broker-slow', ['bin/run-ts.js', 'bench/slow-broker.ts'], dbUrl, async (broker) => {
    const agents = await openAgentTasks(broker.url, issuer, AGENTS, 'slow');
    const reqs = credentialReqs(agents, 'slow');
    await load(broker.url, reqs, 'warm-slow', 201, 2);
    const slow = await load(broker.url, reqs, 'slow', 201);
    say(`2 issuance, 50 ms backend               ${fmtLoad(slow)}`);
    say(`  ratio to the most a 50 ms backend allows at ${CONNS} agents (${((CONNS / 50) * 1000).toFixed(0)}/s): ${pct(slow.perSecond, (CONNS / 50) * 1000)}`);
    say(`  overhead (latency - 50 ms): p50 ${(slow.p50 - 50).toFixed(2)} ms  p99 ${(slow.p99 - 50).toFixed(2)} ms`);
    say(`  ceilings, same run: bare Hono after a 50 ms wait adds p50 ${(waits!.wait.p50 - 50).toFixed(2)} ms; with one INSERT after it, p50 ${(waits!.waitInsert.p50 - 50).toFixed(2)} ms`);
    // The same with few agents: what one request costs when nothing queues.
    const light = await wrk(broker.url, reqs, { connections: 8, seconds: SECONDS, expect: 201, dir, name: 'slow-8' });
    say(`2 the same with 8 agents                 ${fmtLoad(light)}`);
    say(`  overhead (latency - 50 ms): p50 ${(light.p50 - 50).toFixed(2)} ms  p99 ${(light.p99 - 50).toFixed(2)} ms`);
    say(`  ceilings, same run: bare Hono after a 50 ms wait adds p50 ${(waits!.wait8.p50 - 50).toFixed(2)} ms; with one INSERT after it, p50 ${(waits!.waitInsert8.p50 - 50).toFixed(2)} ms`);
  });
}
if (wants('g')) {
  // The gateway's cost against a local upstream, called directly and through it (bench/gateway.ts).
  await withBroker('broker-gw', undefined, dbUrl, async (broker) => {
    const [agent] = await openAgentTasks(broker.url, issuer, 1, 'gw');
    const loadAt = (url: string, reqs: Req[], name: string, expect: number, seconds = SECONDS, connections = CONNS) => wrk(url, reqs, { connections, seconds, expect, dir, name });
    for (const line of await gatewayScenario({ dir, broker, agent: agent!, load: loadAt })) say(line);
  });
}
await dropDatabase(DB);

if (wants('4')) for (const line of await sweeperScenario({ dir, jwk: issuer.jwk, leases: Number(env.BENCH_SWEEP_LEASES ?? 100_000) })) say(line);

if (wants('5')) {
  for (const line of await scaleScenario({ dir, issuer, leases: Number(env.BENCH_SCALE_LEASES ?? 1_000_000), steadySeconds: STEADY, load })) say(line);
}

if (wants('6')) {
  await withBroker('broker-pglite', undefined, undefined, async (broker) => {
    say(`6 PGlite broker ready in ${(broker.startupMs / 1000).toFixed(1)} s`);
    const agents = await openAgentTasks(broker.url, issuer, Math.min(AGENTS, 200), 'pglite');
    const reqs = credentialReqs(agents, 'bench');
    await load(broker.url, reqs, 'warm-pglite', 201, 2);
    const embedded = await load(broker.url, reqs, 'pglite', 201);
    say(`6 issuance, jwt, PGlite                 ${fmtLoad(embedded)}`);
    say(`  ratio to bare Hono ${pct(embedded.perSecond, bare.perSecond)}, to 1-INSERT ceiling (PostgreSQL) ${pct(embedded.perSecond, insert.perSecond)}`);
  });
}
if (wants('7')) {
  const floodConnections = Number(env.BENCH_FLOOD_CONNECTIONS ?? 16);
  for (const line of await floodScenario({ dir, issuer, agents: AGENTS, connections: CONNS, floodConnections, seconds: SECONDS })) say(line);
}
if (wants('8')) {
  for (const line of await suspendScenario({ dir, issuer, connections: CONNS, seconds: SECONDS, leases: (env.BENCH_SUSPEND_LEASES ?? '1000,2000,4000,8000,16000').split(',').map(Number) })) say(line);
}
if (wants('9')) {
  for (const line of await leasesPageScenario({ leases: Number(env.BENCH_PAGE_LEASES ?? 1_000_000), runs: Number(env.BENCH_PAGE_RUNS ?? 200) })) say(line);
}
process.exit(0);
