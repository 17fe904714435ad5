import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { call } from './flows.js';
import { benchIssuer, dropDatabase, freePort, freshDatabase, startBroker, writeConfig, type Proc } from './setup.js';

type Issuer = Awaited<ReturnType<typeof benchIssuer>>;

export interface SuspendOptions {
  dir: string;
  issuer: Issuer;
  /** Requests in flight, half through each replica. */
  connections: number;
  /** The issuance window before the first suspension, whose latencies are the ceiling. */
  seconds: number;
  /** One round per entry: the agent is suspended once it has received this many credentials since it was last resumed. */
  leases: number[];
}

const DB = 'tasklease_bench_suspend';
const AGENT = 'agent-suspend';
/** The agent of the ceiling's window, then a bystander beside every suspension. */
const OTHER = 'agent-other';
const BYSTANDER_LOOPS = 4;

interface Shot {
  subject: string;
  replica: number;
  sentAt: number;
  answeredAt: number;
  status: number;
  code?: string;
  leaseId?: string;
  /** The suspend call's answer. */
  suspension?: string;
  revoking?: number;
}

/** One POST on a keep-alive connection; the status, and the error code or lease id of the body. */
function post(agent: Agent, base: string, path: string, token: string, body: string): Promise<Omit<Shot, 'subject' | 'replica' | 'sentAt' | 'answeredAt'>> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        const json = JSON.parse(text) as { code?: string; lease?: { id: string }; suspension?: { id: string }; revoking?: number };
        resolve({ status: res.statusCode ?? 0, ...(json.code ? { code: json.code } : {}), ...(json.lease ? { leaseId: json.lease.id } : {}), ...(json.suspension ? { suspension: json.suspension.id, revoking: json.revoking } : {}) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A replica's config: the bench's, on a shared data dir, with the agent registered (as every replica's config file would be). */
async function replicaConfig(opts: SuspendOptions, name: string, databaseUrl: string): Promise<{ file: string; port: number }> {
  const port = await freePort();
  const file = writeConfig(opts.dir, name, { port, databaseUrl, jwk: opts.issuer.jwk });
  const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  config.data_dir = join(opts.dir, 'broker-suspend-data');
  config.agents = {
    require_registration: true,
    register: [AGENT, OTHER].map((name) => ({ name, match: { issuer: 'bench', subject: name }, owner: { name: 'bench', contact: 'bench@example.com' }, purpose: 'scenario 8', roles: ['bench'] })),
  };
  writeFileSync(file, JSON.stringify(config, null, 2));
  return { file, port };
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
};
const ms = (x: number) => `${x.toFixed(1)} ms`;

/**
 * Scenario 8: one agent asks for credentials through two replicas (separate
 * processes on one database, `connections` requests in flight, half through
 * each) and is suspended through the first, once per entry of `leases`, when
 * it has received that many credentials since it was resumed; another agent
 * asks beside it throughout. What the suspension promises: no credential
 * committed after it, every request sent after its answer refused, on either
 * replica. What it measures: the suspend call's latency, the time from its
 * answer to the last credential the agent received (one committed before the
 * suspension and still on its way) and to all its leases revoked, and what
 * the other agent waited meanwhile; beside the latency of the same load
 * before any suspension, which bounds the second.
 */
export async function suspendScenario(opts: SuspendOptions): Promise<string[]> {
  const dbUrl = await freshDatabase(DB);
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const brokers: Proc[] = [];
  const pools = [0, 1].map(() => new Agent({ keepAlive: true, maxSockets: opts.connections }));
  let running = true;
  let loops: Promise<void[]> | undefined;
  try {
    // One after the other: the first creates the keys in the shared data dir.
    for (const name of ['broker-suspend-a', 'broker-suspend-b']) {
      const { file, port } = await replicaConfig(opts, name, dbUrl);
      brokers.push(await startBroker(file, port, opts.dir, name));
    }
    const [a] = brokers as [Proc, Proc];
    const admin = await opts.issuer.token('admin');
    const orchestrator = await opts.issuer.token('orchestrator');
    const requestOf = async (subject: string) => {
      const { task } = (await call(a.url, '/v1/tasks', orchestrator, { agent: { subject }, roles: ['bench'], ttl_seconds: 7200 }, 201)) as { task: { id: string } };
      return { subject, token: await opts.issuer.token(subject), body: JSON.stringify({ task: task.id, role: 'bench' }) };
    };
    const suspended = await requestOf(AGENT);
    const other = await requestOf(OTHER);

    const shots: Shot[] = [];
    const issued = new Map<string, number>();
    let failures = 0;
    // The main load asks as the other agent for the ceiling's window, then as the agent to suspend.
    let main = other;
    const loop = async (replica: number, who: () => typeof other) => {
      while (running) {
        const { subject, token, body } = who();
        const sentAt = performance.now();
        try {
          const res = await post(pools[replica]!, brokers[replica]!.url, '/v1/credentials', token, body);
          shots.push({ subject, replica, sentAt, answeredAt: performance.now(), ...res });
          if (res.status === 201) issued.set(subject, (issued.get(subject) ?? 0) + 1);
        } catch {
          failures++;
          await sleep(10);
        }
      }
    };
    loops = Promise.all([
      ...Array.from({ length: opts.connections }, (_, i) => loop(i % 2, () => main)),
      ...Array.from({ length: BYSTANDER_LOOPS }, (_, i) => loop(i % 2, () => other)),
    ]);
    /** Did replica `r` answer the agent 201 to a request sent after `after`? Shots are in the order answered: read from the newest. */
    const issuedOn = (r: number, after: number) => {
      for (let i = shots.length - 1; i >= 0 && shots[i]!.answeredAt > after; i--) {
        const s = shots[i]!;
        if (s.subject === AGENT && s.replica === r && s.sentAt > after && s.status === 201) return true;
      }
      return false;
    };

    await sleep(2000);
    const windowStart = performance.now();
    await sleep(opts.seconds * 1000);
    const windowEnd = performance.now();
    const before = shots.filter((s) => s.status === 201 && s.sentAt >= windowStart && s.answeredAt <= windowEnd);
    const latencies = before.map((s) => s.answeredAt - s.sentAt);
    main = suspended;

    const lines: string[] = [];
    let broken = 0;
    for (const target of opts.leases) {
      const from = issued.get(AGENT) ?? 0;
      while ((issued.get(AGENT) ?? 0) - from < target) await sleep(2);
      const sent = performance.now();
      const answer = await post(pools[0]!, a.url, `/v1/agents/${AGENT}/suspend`, admin, JSON.stringify({ reason: 'scenario 8' }));
      const answered = performance.now();
      // An answer that is not 200 (a timeout) may still commit: the suspension is then read from the database.
      let id = answer.suspension;
      while (!id) {
        [{ id } = { id: undefined }] = await sql<{ id: string }[]>`select id::text from agent_suspensions where agent = ${AGENT} and resumed_at is null`;
        if (!id) await sleep(50);
      }
      // Every lease of the agent revoked (the sweepers, nudged by the suspension).
      for (;;) {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from leases where agent = ${AGENT} and status <> 'revoked'`;
        if (row!.n === 0) break;
        await sleep(5);
      }
      const revoked = performance.now() - answered;
      await sleep(Math.max(0, 1000 - revoked));
      const resumeSent = performance.now();
      await call(a.url, `/v1/agents/${AGENT}/resume`, admin, { reason: 'scenario 8' }, 200);
      const resumed = performance.now();

      const during = shots.filter((s) => s.subject === AGENT && s.answeredAt > sent && s.answeredAt < resumeSent);
      const oks = during.filter((s) => s.status === 201);
      const late = oks.filter((s) => s.answeredAt > answered);
      const after = during.filter((s) => s.sentAt > answered);
      const others = during.filter((s) => s.status !== 201 && s.code !== 'agent_suspended').length;
      const bystander = shots.filter((s) => s.subject === OTHER && s.answeredAt > sent && s.sentAt < answered);
      const [mark] = await sql<{ seq: number }[]>`select seq::int from audit_events where action = 'agent.suspended' and details->>'suspension' = ${id}`;
      const [end] = await sql<{ seq: number }[]>`select seq::int from audit_events where action = 'agent.resumed' and details->>'suspension' = ${id}`;
      const [inside] = await sql<{ n: number }[]>`
        select count(*)::int as n from audit_events where action = 'credential.issued' and details->>'agent' = ${AGENT} and seq > ${mark!.seq} and seq < ${end!.seq}`;
      const targets = late.map((s) => `lease:${s.leaseId}`);
      const lateSeqs = targets.length ? await sql<{ seq: number }[]>`select seq::int from audit_events where action = 'credential.issued' and target = any(${targets})` : [];
      const lateBefore = lateSeqs.length === late.length && lateSeqs.every((e) => e.seq < mark!.seq);
      const wrongAfter = after.filter((s) => s.status !== 403 || s.code !== 'agent_suspended').length;
      broken += inside!.n + wrongAfter + (lateBefore ? 0 : 1);
      const lastOk = oks.length ? Math.max(...oks.map((s) => s.answeredAt)) - answered : NaN;
      lines.push(
        `8 ${String(answer.revoking ?? '?').padStart(6)} leases: suspend call ${ms(answered - sent)}${answer.status === 200 ? '' : ` answered ${answer.status} ${answer.code}`}, ` +
          `answer -> last 201 ${ms(lastOk)}, -> all revoked ${ms(revoked)}; 201s after the answer ${late.length}${late.length ? ` (committed before agent.suspended: ${lateBefore ? 'yes' : 'NO'})` : ''}, ` +
          `requests sent after it ${after.length} (not 403 agent_suspended: ${wrongAfter}); agent's other errors during the call ${others}; ` +
          `the other agent meanwhile: max ${ms(Math.max(0, ...bystander.map((s) => s.answeredAt - s.sentAt)))}, ${bystander.filter((s) => s.status !== 201).length} not 201`,
      );
      // Back to issuing through both replicas before the next round (the second hears of the resumption by NOTIFY).
      while (!(issuedOn(0, resumed) && issuedOn(1, resumed))) await sleep(5);
    }
    running = false;
    await loops;

    return [
      `8 suspend under load: 1 agent, 2 replicas, ${opts.connections} requests in flight (half through each), ${BYSTANDER_LOOPS} more from another agent; suspended through one replica (answer -> last 201 < 0: the last came before the answer)`,
      `8 issuance before any suspension        ${(before.length / ((windowEnd - windowStart) / 1000)).toFixed(0)}/s  p50 ${ms(q(latencies, 0.5))}  p99 ${ms(q(latencies, 0.99))}  (${before.length} credentials in ${((windowEnd - windowStart) / 1000).toFixed(1)} s): the ceiling of answer -> last 201`,
      ...lines,
      `  credentials committed after a suspension, or a request after its answer not refused: ${broken}; connection failures: ${failures}`,
    ];
  } finally {
    running = false;
    await loops?.catch(() => {});
    for (const pool of pools) pool.destroy();
    await sql.end();
    for (const broker of brokers) await broker.stop();
    await dropDatabase(DB);
  }
}
