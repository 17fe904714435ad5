/**
 * npm run bench:commit: what one issuance commit costs on this machine's
 * PostgreSQL, against one plain INSERT on the same connection pool, with no
 * HTTP in the way. Each statement runs back to back ("hot") and after 50 ms
 * of idleness ("after idle": what scenario 2's commit meets, since every
 * request first waits 50 ms for its backend). The issuance record is the
 * statement the broker sends alone for a batch of 1 or 8 leases of
 * unconstrained roles (leases/writer.ts's short way, record.ts): the task and
 * the registry read FOR SHARE, the lease rows, their audit events chained
 * under the head lock, one durable commit.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type SQL } from 'drizzle-orm';
import { openDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import type { AuditInput } from '../src/audit/append.js';
import type { LeaseRow } from '../src/leases/insert.js';
import { recordIssued } from '../src/leases/record.js';
import { dropDatabase, freshDatabase } from './setup.js';

const DB = 'tasklease_bench_commit';
const RUNS = Number(process.env.BENCH_COMMIT_RUNS ?? 300);
const database = await openDatabase({ url: await freshDatabase(DB), dataDir: '', poolSize: 4 });
const { db } = database;
await runMigrations(database);
await db.execute(sql`insert into tasks (id, agent_subject, roles, status, created_by, created_at, deadline)
  values ('bench-task', 'agent-1', '{bench}', 'open', 'bench', now(), now() + interval '1 day')`);
await db.execute(sql`create table bench_plain (id uuid primary key, subject text not null, at timestamptz not null)`);

/** A lease and its audit event as the issuer builds them. */
function issued(): { row: LeaseRow; event: AuditInput; who: { generation: number } } {
  const now = new Date();
  const id = randomUUID();
  const end = new Date(now.getTime() + 600_000);
  const token = 'a'.repeat(64);
  return {
    row: { id, taskId: 'bench-task', role: 'bench', backend: 'jwt', issuer: 'https://issuer.invalid', subject: 'agent-1', tokenSha256: token, status: 'active', credentialRef: id, issuedAt: now, expiresAt: end, backendExpiresAt: end, revocable: true },
    who: { generation: 0 },
    event: { at: now, actor: 'oidc:issuer.invalid/agent-1', action: 'credential.issued', target: `lease:${id}`, decision: 'allow', details: { task: 'bench-task', role: 'bench', backend: 'jwt', ttl_seconds: 600, credential_ref: id, token_sha256: token }, requestId: id },
  };
}

const record = (statement: () => SQL) => () => database.writes.alone(statement());
const statements: [string, () => Promise<unknown>][] = [
  ['1 plain INSERT', () => db.execute(sql`insert into bench_plain (id, subject, at) values (${randomUUID()}, ${'agent-1'}, now())`)],
  ['issuance record, 1 lease', record(() => { const one = issued(); return recordIssued([one], [one.event], true); })],
  ['issuance record, 8 leases', record(() => { const eight = Array.from({ length: 8 }, issued); return recordIssued(eight, eight.map((i) => i.event), true); })],
];

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
console.log(`tasklease bench:commit: ${RUNS} commits each, one at a time, on ${DB}`);
for (const [idleMs, label] of [[0, 'hot'], [50, 'after idle']] as const) {
  const p50s = new Map<string, number>();
  for (const [name, statement] of statements) {
    const ms: number[] = [];
    const runs = idleMs ? Math.ceil(RUNS / 4) : RUNS;
    for (let i = 0; i < runs + 10; i++) {
      if (idleMs) await sleep(idleMs);
      const started = performance.now();
      await statement();
      if (i >= 10) ms.push(performance.now() - started); // the first ones prepare the statement
    }
    ms.sort((a, b) => a - b);
    p50s.set(name, quantile(ms, 0.5));
    const ratio = name === statements[0]![0] ? '' : `  (${(quantile(ms, 0.5) / p50s.get(statements[0]![0])!).toFixed(2)} x the plain INSERT)`;
    console.log(`${label.padEnd(10)} ${name.padEnd(26)} p50 ${quantile(ms, 0.5).toFixed(2)} ms  p90 ${quantile(ms, 0.9).toFixed(2)} ms${ratio}`);
  }
}
await database.close();
await dropDatabase(DB);
