import type postgres from 'postgres';

type Sql = ReturnType<typeof postgres>;

/** The skewed populations a long-running broker's lease table holds (scenario 9, test/leases/list-plans.test.ts). */
export const SEED = { subjects: 50, roles: 20, leasesPerTask: 10, issuer: 'k8s-prod' } as const;
export const seedSubject = (i: number) => `system:serviceaccount:agents:worker-${i}`;
export const seedRole = (i: number) => `role-${i}`;

/** A uniform number in [0, 1) from a hash of `x`: the seed is the same every time. */
const u = (x: string, salt: string) => `(('x' || substr(md5('${salt}' || (${x})::text), 1, 8))::bit(32)::bigint / 4294967296::float8)`;

/**
 * Inserts `count` leases (and a task per 10) into a migrated, empty database,
 * in one statement each, as a table that has run for 90 days holds them:
 * ids UUIDv7 in issue order; the newest 0.5% active (issued in the last 14
 * minutes), 0.01% revoking, 0.02% revoke_failed (old, still retried), the
 * rest 40% revoked and 60% expired. Subjects (50, one per task) and roles
 * (20) are skewed: the commonest subject holds about 14% of the leases, the
 * rarest 1%; roles 22% to 2.5%, and role-19 is retired: only the oldest 10%
 * hold it. Roles 0-11 are on the `local` backend (77% of leases), 12-17 on
 * `aws` (17%), 18-19 on `vault` (5%). Agents are named after subjects; one
 * subject in ten has none. Deterministic (hashes of the row number), so a test can name what exists.
 */
export async function seedLeases(sql: Sql, count: number): Promise<void> {
  const tasks = Math.ceil(count / SEED.leasesPerTask);
  const active = Math.max(1, Math.floor(count / 200));
  await sql.unsafe(
    `insert into tasks (id, agent_issuer, agent_subject, roles, status, created_by, created_at, deadline, completed_at)
     select 'task-' || t, '${SEED.issuer}', 'system:serviceaccount:agents:worker-' || floor(${SEED.subjects} * ${u('t', 's')} ^ 2)::int,
            '{}', case when t >= $1 - $2 then 'open' else 'completed' end, 'orchestrator:ci',
            now() - interval '90 days', now() + interval '1 day', case when t >= $1 - $2 then null else now() end
     from generate_series(0, $1::int - 1) t`,
    [tasks, Math.ceil(active / SEED.leasesPerTask) + 20],
  );
  // Filled, then indexed (the migrations' own definitions), as a restore does: several times faster than row by row.
  const indexes = await sql<{ name: string; def: string }[]>`
    select indexname as name, indexdef as def from pg_indexes
    where schemaname = current_schema() and tablename = 'leases' and indexname <> 'leases_pkey'`;
  for (const { name } of indexes) await sql`drop index ${sql(name)}`;
  await sql.unsafe(
    `with g as materialized (
       select g, g / ${SEED.leasesPerTask} as t, least(floor(${SEED.roles} * ${u('g', 'r')} ^ 2)::int, case when g < $1 / 10 then 19 else 18 end) as r,
              case when g >= $1 - $2 then 'active'
                   when g >= $1 - $2 - greatest(1, $1 / 10000) then 'revoking'
                   when g % 5000 = 17 then 'revoke_failed'
                   when ${u('g', 'e')} < 0.4 then 'revoked' else 'expired' end as status,
              case when g >= $1 - $2 then now() - interval '14 minutes' * ($1 - g) / $2
                   else now() - interval '90 days' + (interval '90 days' - interval '1 hour') * g / $1 end as at
       from generate_series(0, $1::int - 1) g
     ), l as materialized (
       select g.*, floor(${SEED.subjects} * ${u('t', 's')} ^ 2)::int as s,
              lpad(to_hex((extract(epoch from at) * 1000)::bigint), 12, '0') as ms, md5(g::text) as h
       from g
     )
     insert into leases (id, task_id, role, backend, issuer, subject, token_sha256, status, reason, credential_ref,
                         issued_at, expires_at, backend_expires_at, revoke_requested_at, ended_at, attempts, next_attempt_at, last_error, agent, agent_owner)
     select (ms || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid, 'task-' || t, 'role-' || r,
            case when r < 12 then 'local' when r < 18 then 'aws' else 'vault' end,
            '${SEED.issuer}', 'system:serviceaccount:agents:worker-' || s, h, status,
            case status when 'active' then null when 'expired' then 'expired' when 'revoked' then 'task_completed' else 'admin' end,
            'ref-' || g, at, at + interval '15 minutes', at + interval '15 minutes',
            case when status in ('revoked', 'revoking', 'revoke_failed') then at + interval '5 minutes' end,
            case when status in ('revoked', 'expired') then at + interval '5 minutes' end,
            case status when 'revoke_failed' then 12 when 'revoking' then 1 else 0 end,
            case when status in ('revoking', 'revoke_failed') then now() + interval '10 minutes' end,
            case when status in ('revoking', 'revoke_failed') then 'backend unavailable' end,
            case when s % 10 = 9 then null else 'worker-' || s end, case when s % 10 = 9 then null else 'team-' || (s % 5) end
     from l`,
    [count, active],
  );
  for (const { def } of indexes) await sql.unsafe(def);
}
