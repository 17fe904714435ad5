import { sql, type SQL } from 'drizzle-orm';
import { CHAIN_RESULT, chainBodies, chainCtes, eventsCte, type AuditInput } from '../audit/append.js';
import { leaseJson, type LeaseRow } from './insert.js';

/**
 * What the statement reports: how many of the batch's tasks were not open, and whether the registry's
 * generation differs from one a decision was made on (either way it wrote nothing); and the counts.
 */
export interface RecordResult {
  closed: number;
  stale: boolean;
  inserted: number;
  appended: number;
  moved: number;
}

/**
 * One statement, one round trip, atomic on its own (it needs no BEGIN, and
 * a lost connection cannot split it): records leases of roles no limit
 * applies to, with their audit events and the batch's other events
 * (denials), in this order on the server:
 *
 * 1. the batch's tasks, read FOR SHARE (a completion waits for this
 *    statement, or this statement sees the task closed), then the agent
 *    registry's generation, FOR SHARE (a suspension waits, or this statement
 *    sees the new generation);
 * 2. if every task is open and every decision was made on that generation, the leases;
 * 3. and the events, appended to the chain, whose head is locked last.
 *
 * If a task closed while its credential was minted, or the registry changed
 * since a decision, it writes nothing and says so (`closed`, `stale`): the
 * writer then commits the batch the long way, which decides again and records
 * a refused lease as `revoking` with its denial. The statement's text does
 * not vary with the batch.
 */
export function recordIssued(leases: { row: LeaseRow; event: AuditInput; who: { generation: number } }[], events: AuditInput[]): SQL {
  const rows = leases.map(({ row }) => leaseJson(row));
  const generations = leases.map(({ who }) => who.generation);
  // Any generation will do for a batch with no lease (then nothing is compared).
  const [low, high] = generations.length > 0 ? [Math.min(...generations), Math.max(...generations)] : [0, 0];
  const bodies = chainBodies([...leases.map(({ event }) => event), ...events]);
  return sql`with recursive
    req as (select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(id uuid, task_id text, role text, backend text, issuer text,
      subject text, token_sha256 text, credential_ref text, issued_at timestamptz, expires_at timestamptz, backend_expires_at timestamptz, revocable boolean,
      agent text, agent_owner text)),
    ids as (select distinct task_id as id from req),
    t as (select id, status from tasks where id = any(array(select id from ids)) for share),
    -- Every task row is locked by this count, then the registry's row, before the leases are written and the chain's head is locked.
    closed as materialized (select (select count(*) from ids) - (select count(*) from t where status = 'open') as n),
    reg as materialized (select generation from registry_state where id = 1 and (select n from closed) >= 0 for share),
    stale as materialized (select not exists (select from reg where generation = ${low}::bigint and generation = ${high}::bigint) as s),
    ok as materialized (select (select n from closed) = 0 and not (select s from stale) as go),
    ins as (insert into leases (id, task_id, role, backend, issuer, subject, token_sha256, status, credential_ref,
        issued_at, expires_at, backend_expires_at, revocable, agent, agent_owner)
      select id, task_id, role, backend, issuer, subject, token_sha256, 'active', credential_ref, issued_at, expires_at, backend_expires_at, revocable,
        agent, agent_owner
      from req where (select go from ok)
      returning 1),
    ${eventsCte(bodies)},
    ${chainCtes(sql`(select go from ok)`)}
    select (select n from closed)::int as closed, (select s from stale) as stale, (select count(*) from ins)::int as inserted, ${CHAIN_RESULT}`;
}
