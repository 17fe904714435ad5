import { sql as dsql } from 'drizzle-orm';
import postgres from 'postgres';
import { openDatabase } from '../src/db/client.js';
import { runMigrations } from '../src/db/migrate.js';
import { createLeaseService, type LeaseFilter } from '../src/leases/service.js';
import { seedLeases, seedRole, seedSubject } from './lease-seed.js';
import { dropDatabase, freshDatabase } from './setup.js';

const DB = 'tasklease_bench_leases';

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

/**
 * Scenario 9: the Leases page's queries (and GET /v1/leases', the same
 * service) over `leases` leases seeded as bench/lease-seed.ts describes,
 * timed through the lease service as the page calls it (statement, rows and
 * their mapping; warm cache), `runs` times each, the cases interleaved.
 * Ceilings, same run and connection pool: `select 1`, and one lease read by
 * its primary key (`leases.get`), the cheapest read of a lease there is.
 */
export async function leasesPageScenario(opts: { leases: number; runs: number }): Promise<string[]> {
  const url = await freshDatabase(DB);
  const database = await openDatabase({ url, dataDir: '', poolSize: 4 });
  const seedSql = postgres(url, { max: 1, onnotice: () => {} });
  const lines: string[] = [];
  try {
    await runMigrations(database);
    let started = performance.now();
    await seedLeases(seedSql, opts.leases);
    const seedMs = performance.now() - started;
    started = performance.now();
    await seedSql`vacuum analyze`;
    lines.push(`9 leases page: ${opts.leases} leases seeded in ${(seedMs / 1000).toFixed(1)} s (vacuum analyze ${((performance.now() - started) / 1000).toFixed(1)} s); ${opts.runs} runs a query`);

    const leases = createLeaseService({ db: database.db, clock: { now: () => new Date() }, onRevokeRequested: () => {} });
    const idAt = async (offset: number) => (await seedSql<{ id: string }[]>`select id from leases order by id desc offset ${offset} limit 1`)[0]!.id;
    const [newest, middle] = [await idAt(0), await idAt(Math.floor(opts.leases / 2))];
    const page = (filter: LeaseFilter, cursor?: string, limit = 50) => () => leases.list(filter, cursor, limit);
    const cases: [string, () => Promise<unknown>][] = [
      ['ceiling: select 1', () => database.db.execute(dsql`select 1`)],
      ['ceiling: one lease by id', () => leases.get(newest)],
      ['first page', page({})],
      ['deep page (cursor mid-table)', page({}, middle)],
      ['status active', page({ status: 'active' })],
      ['status revoked', page({ status: 'revoked' })],
      ['status revoked, deep', page({ status: 'revoked' }, middle)],
      ['task', page({ task: `task-${Math.floor(opts.leases / 20)}` })],
      ['subject, 14% of leases', page({ subject: seedSubject(0) })],
      ['subject, 1%, deep', page({ subject: seedSubject(49) }, middle)],
      ['role, 22%', page({ role: seedRole(0) })],
      ['role retired (oldest 10% only)', page({ role: seedRole(19) })],
      ['backend local, 77%', page({ backend: 'local' })],
      ['backend vault, 5%, deep', page({ backend: 'vault' }, middle)],
      ['backend none', page({ backend: 'none' })],
      ['agent', page({ agent: 'worker-3' })],
      ['status active + subject', page({ status: 'active', subject: seedSubject(0) })],
      ['subject + role', page({ subject: seedSubject(3), role: seedRole(5) })],
      ['role + another backend (empty)', page({ role: seedRole(0), backend: 'vault' })],
      ['revoke_failed list (100)', page({ status: 'revoke_failed' }, undefined, 100)],
      ['countActive subject', () => leases.countActive({ subject: seedSubject(0) })],
      ['countActive role', () => leases.countActive({ role: seedRole(0) })],
      ['countActive agent', () => leases.countActive({ agent: 'worker-0' })],
      ['confirmation sample, role', page({ role: seedRole(0), status: 'active' }, undefined, 20)],
    ];
    const times = cases.map(() => [] as number[]);
    for (let run = -5; run < opts.runs; run++) {
      for (const [i, [, call]] of cases.entries()) {
        const t = performance.now();
        await call();
        if (run >= 0) times[i]!.push(performance.now() - t);
      }
    }
    const pk = q(times[1]!, 0.5);
    for (const [i, [name]] of cases.entries()) {
      const ms = times[i]!;
      const ratio = i < 2 ? '' : `  (${(q(ms, 0.5) / pk).toFixed(1)} x one lease by id)`;
      lines.push(`  ${name.padEnd(32)} p50 ${q(ms, 0.5).toFixed(2)} ms  p99 ${q(ms, 0.99).toFixed(2)} ms${ratio}`);
    }
  } finally {
    await seedSql.end();
    await database.close();
    await dropDatabase(DB);
  }
  return lines;
}
