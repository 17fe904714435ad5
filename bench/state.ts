import postgres from 'postgres';
import { setTimeout as sleep } from 'node:timers/promises';
import { dropDatabase, freePort, freshDatabase, startBroker, writeConfig, type benchIssuer, type Proc } from './setup.js';
import { fmtLoad, type LoadResult, type Req } from './wrk.js';

type Sql = ReturnType<typeof postgres>;
type Issuer = Awaited<ReturnType<typeof benchIssuer>>;

/** A migrated, empty database and a way to start brokers on it. */
async function brokerDatabase(dir: string, name: string, jwk: object) {
  const url = await freshDatabase(name);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  let n = 0;
  const start = async () => {
    const port = await freePort();
    const label = `${name}-${n++}`;
    return startBroker(writeConfig(dir, label, { port, databaseUrl: url, jwk }), port, dir, label);
  };
  await (await start()).stop(); // migrates
  return { url, sql, start, drop: async () => (await sql.end(), await dropDatabase(name)) };
}

const insertTask = (sql: Sql, id: string, subject: string) =>
  sql`insert into tasks (id, agent_issuer, agent_subject, roles, status, created_by, created_at, deadline)
      values (${id}, 'bench', ${subject}, '{bench,slow}', 'open', 'orchestrator:bench', now(), now() + interval '1 day')`;

/** `count` leases of task `task`, all active and already past their expiry. */
const insertExpired = (sql: Sql, table: string, task: string, count: number) =>
  sql`insert into ${sql(table)} (id, task_id, role, backend, issuer, subject, token_sha256, status, credential_ref, issued_at, expires_at, backend_expires_at)
      select gen_random_uuid(), ${task}, 'bench', 'local', 'bench', 'agent-sweep-' || (g % 1000), md5(g::text), 'active', 'jti-' || g,
             now() - interval '10 minutes', now() - interval '1 second', now() + interval '5 minutes'
      from generate_series(1, ${count}::int) g`;

async function waitUntil(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await sleep(20);
}

/** Scenario 4: time for 1 and 2 replicas to revoke `leases` expired leases, against one plain UPDATE of as many rows. */
export async function sweeperScenario(opts: { dir: string; jwk: object; leases: number }): Promise<string[]> {
  const db = await brokerDatabase(opts.dir, 'tasklease_bench_sweep', opts.jwk);
  const { sql } = db;
  const lines: string[] = [];
  try {
    await insertTask(sql, 'sweep', 'agent-sweep');
    await sql`create table sweep_copy (like leases including all)`;
    await insertExpired(sql, 'sweep_copy', 'sweep', opts.leases);
    let started = performance.now();
    await sql`update sweep_copy set status = 'expired', reason = 'expired', ended_at = now() where status = 'active' and expires_at <= now()`;
    const ceilingMs = performance.now() - started;
    lines.push(`ceiling  plain UPDATE of ${opts.leases} rows      ${ceilingMs.toFixed(0)} ms  (${((opts.leases / ceilingMs) * 1000).toFixed(0)} rows/s)`);
    for (const replicas of [1, 2]) {
      await insertExpired(sql, 'leases', 'sweep', opts.leases);
      await sql`vacuum analyze leases`;
      started = performance.now();
      const brokers: Proc[] = await Promise.all(Array.from({ length: replicas }, db.start));
      const from = started + Math.min(...brokers.map((b) => b.startupMs));
      await waitUntil(async () => (await sql`select 1 from leases where status = 'active' limit 1`).length === 0);
      const ms = performance.now() - from;
      await Promise.all(brokers.map((b) => b.stop()));
      const rate = (opts.leases / ms) * 1000;
      lines.push(`4 sweeper, ${replicas} replica${replicas > 1 ? 's' : ' '}: ${opts.leases} expired leases in ${ms.toFixed(0)} ms  ${rate.toFixed(0)} leases/s  (ratio to plain UPDATE ${(rate / ((opts.leases / ceilingMs) * 1000)).toFixed(3)})`);
      await sql`delete from leases`;
    }
  } finally {
    await db.drop();
  }
  return lines;
}

/** Scenario 5: start-up time and RSS over a table of `leases` leases, then RSS through a steady issuance load. */
export async function scaleScenario(opts: {
  dir: string;
  issuer: Issuer;
  leases: number;
  steadySeconds: number;
  load: (url: string, reqs: Req[], name: string, expect: number, seconds?: number) => Promise<LoadResult>;
}): Promise<string[]> {
  const db = await brokerDatabase(opts.dir, 'tasklease_bench_scale', opts.issuer.jwk);
  const { sql } = db;
  const lines: string[] = [];
  try {
    const agents = 1000;
    await sql`insert into tasks (id, agent_issuer, agent_subject, roles, status, created_by, created_at, deadline)
              select 'scale-' || g, 'bench', 'agent-scale-' || g, '{bench,slow}', 'open', 'orchestrator:bench', now(), now() + interval '1 day'
              from generate_series(0, ${agents - 1}::int) g`;
    // One in ten still active (not yet due); the rest ended history, as a long-running broker's table holds.
    await sql`insert into leases (id, task_id, role, backend, issuer, subject, token_sha256, status, reason, credential_ref, issued_at, expires_at, backend_expires_at, ended_at)
              select gen_random_uuid(), 'scale-' || (g % ${agents}::int), 'bench', 'local', 'bench', 'agent-scale-' || (g % ${agents}::int), md5(g::text),
                     case when g % 10 = 0 then 'active' else 'expired' end, case when g % 10 = 0 then null else 'expired' end, 'jti-' || g,
                     now() - interval '1 day', case when g % 10 = 0 then now() + interval '1 hour' else now() - interval '23 hours' end,
                     now() + interval '1 hour', case when g % 10 = 0 then null else now() - interval '23 hours' end
              from generate_series(1, ${opts.leases}::int) g`;
    await sql`insert into audit_events (at, actor, action, target, decision, details, prev_hash, hash)
              select now() - interval '1 day', 'bench:agent-scale-' || (g % 1000), 'credential.issued', 'lease:' || g, 'allow', '{}', md5((g - 1)::text), md5(g::text)
              from generate_series(1, ${opts.leases}::int) g`;
    await sql`vacuum analyze`;
    const broker = await db.start();
    lines.push(`5 start-up with ${opts.leases} leases (and as many audit events): ready in ${broker.startupMs.toFixed(0)} ms, RSS ${broker.rssMb().toFixed(0)} MB`);
    try {
      await sleep(3000);
      lines.push(`  RSS 3 s after ready (first sweep done) ${broker.rssMb().toFixed(0)} MB`);
      const reqs: Req[] = await Promise.all(
        Array.from({ length: agents }, async (_, i) => ({
          method: 'POST' as const,
          path: '/v1/credentials',
          token: await opts.issuer.token(`agent-scale-${i}`),
          body: { task: `scale-${i}`, role: 'bench' },
        })),
      );
      const samples: number[] = [];
      const timer = setInterval(() => samples.push(broker.rssMb()), 10_000);
      const steady = await opts.load(broker.url, reqs, 'steady', 201, opts.steadySeconds).finally(() => clearInterval(timer));
      samples.push(broker.rssMb());
      const third = Math.max(1, Math.floor(samples.length / 3));
      const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      lines.push(`5 steady load ${opts.steadySeconds} s: ${fmtLoad(steady)}`);
      lines.push(`  RSS every 10 s (MB): ${samples.map((s) => s.toFixed(0)).join(' ')}`);
      lines.push(`  RSS first third avg ${avg(samples.slice(0, third)).toFixed(0)} MB, last third avg ${avg(samples.slice(-third)).toFixed(0)} MB, max ${Math.max(...samples).toFixed(0)} MB`);
    } finally {
      await broker.stop();
    }
  } finally {
    await db.drop();
  }
  return lines;
}
