import postgres from 'postgres';
import { call } from './flows.js';
import { benchIssuer, cpuSnapshot, dropDatabase, freePort, freshDatabase, startBroker, writeConfig } from './setup.js';
import { fmtLoad, wrk, type Req } from './wrk.js';

type Issuer = Awaited<ReturnType<typeof benchIssuer>>;

export interface FloodOptions {
  dir: string;
  issuer: Issuer;
  agents: number;
  connections: number;
  /** Connections of the identity that floods refusals. */
  floodConnections: number;
  seconds: number;
}

const DB = 'tasklease_bench_flood';
/** The documented example: 10 requests a second per agent, bursts of 20. */
const RATE_LIMIT = { per_agent_per_second: 10, burst: 20 };

/**
 * Scenario 7: legitimate agents issuing while one identity that matches no
 * role floods POST /v1/credentials (issue 14, 3.2). The same legitimate load
 * runs alone, then beside the flood, on one broker with the rate limit on;
 * the flood's refusals are rate-limited and aggregated, so they should cost
 * the others CPU only, never a turn at the audit chain's head.
 */
export async function floodScenario(opts: FloodOptions): Promise<string[]> {
  const dbUrl = await freshDatabase(DB);
  const port = await freePort();
  const config = writeConfig(opts.dir, 'broker-flood', { port, databaseUrl: dbUrl, jwk: opts.issuer.jwk, policy: { rate_limit: RATE_LIMIT } });
  const broker = await startBroker(config, port, opts.dir, 'broker-flood');
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const orchestrator = await opts.issuer.token('orchestrator');
    // Tasks get the ids the server gives them.
    const open = async (subject: string) => {
      const { task } = (await call(broker.url, '/v1/tasks', orchestrator, { agent: { subject }, roles: ['bench'], ttl_seconds: 7200 }, 201)) as { task: { id: string } };
      return { token: await opts.issuer.token(subject), task: task.id };
    };
    const agents: { token: string; task: string }[] = [];
    for (let start = 0; start < opts.agents; start += 32) {
      agents.push(...(await Promise.all(Array.from({ length: Math.min(32, opts.agents - start) }, (_, j) => open(`agent-flood-${start + j}`)))));
    }
    // Bound to a task, but matching no role's rules: role_denied, then rate_limited.
    const intruder = await open('intruder');
    const legit: Req[] = agents.map((a) => ({ method: 'POST', path: '/v1/credentials', token: a.token, body: { task: a.task, role: 'bench' } }));
    const flood: Req[] = [{ method: 'POST', path: '/v1/credentials', token: intruder.token, body: { task: intruder.task, role: 'bench' } }];
    const run = (reqs: Req[], name: string, expect: number, connections: number, seconds = opts.seconds) =>
      wrk(broker.url, reqs, { connections, seconds, expect, dir: opts.dir, name });
    const auditRows = async () => (await sql<{ n: number }[]>`select count(*)::int as n from audit_events where actor = 'bench/intruder'`)[0]!.n;

    await run(legit, 'warm-flood', 201, opts.connections, 3);
    const pid = broker.child.pid!;
    const cpu0 = cpuSnapshot(pid);
    const quiet = await run(legit, 'flood-quiet', 201, opts.connections);
    const cpu1 = cpuSnapshot(pid);
    const rowsBefore = await auditRows();
    const [during, refusals] = await Promise.all([run(legit, 'flood-legit', 201, opts.connections), run(flood, 'flood', 429, opts.floodConnections)]);
    const cpu2 = cpuSnapshot(pid);
    const rowsDuring = (await auditRows()) - rowsBefore;
    // Where the broker's CPU went: a credential costs what it cost alone; the rest is the refusals'.
    const perCredential = (cpu1.broker - cpu0.broker) / quiet.requests;
    const perRefusal = (cpu2.broker - cpu1.broker - perCredential * during.requests) / refusals.requests;
    const pgPer = (a: typeof cpu0, b: typeof cpu0, n: number) => (((b.postgres - a.postgres) / n) * 1e6).toFixed(0);
    return [
      `7 legitimate issuance, no flood          ${fmtLoad(quiet)}`,
      `7 the same, one identity flooding        ${fmtLoad(during)}`,
      `  ratio to no flood: throughput ${(during.perSecond / quiet.perSecond).toFixed(3)}, p99 ${(during.p99 / quiet.p99).toFixed(2)}x`,
      `  broker CPU: ${(perCredential * 1e6).toFixed(0)} us per credential, about ${(perRefusal * 1e6).toFixed(0)} us per refusal; PostgreSQL per credential ${pgPer(cpu0, cpu1, quiet.requests)} us alone, ${pgPer(cpu1, cpu2, during.requests)} us (all its CPU over the credentials) during the flood`,
      `  the flood (${opts.floodConnections} connections, rate limit ${RATE_LIMIT.per_agent_per_second}/s burst ${RATE_LIMIT.burst}): ${refusals.requests} refusals, ${(refusals.requests / refusals.seconds).toFixed(0)}/s, p50 ${refusals.p50.toFixed(2)} ms, ${refusals.requests - refusals.wrong} answered 429; audit rows it wrote meanwhile: ${rowsDuring}`,
    ];
  } finally {
    await sql.end();
    await broker.stop();
    await dropDatabase(DB);
  }
}
