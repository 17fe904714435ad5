import { sql, type SQL } from 'drizzle-orm';
import { CHAIN_RESULT, chainBodies, chainCtes, eventsCte, type AuditInput } from '../audit/append.js';
import { leaseJson, type LeaseRow } from './insert.js';

/** What the statement reports: how many of the batch's tasks were not open (then it wrote nothing), and the counts. */
export interface RecordResult {
  closed: number;
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
 *    statement, or this statement sees the task closed);
 * 2. if every one of them is open, the leases;
 * 3. and the events, appended to the chain, whose head is locked last.
 *
 * If a task closed while its credential was minted, it writes nothing and
 * says so (`closed`): the writer then commits the batch the long way, which
 * records that lease as `revoking` with its denial. The statement's text does
 * not vary with the batch.
 */
export function recordIssued(leases: { row: LeaseRow; event: AuditInput }[], events: AuditInput[]): SQL {
  const rows = leases.map(({ row }) => leaseJson(row));
  const bodies = chainBodies([...leases.map(({ event }) => event), ...events]);
  return sql`with recursive
    req as (select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(id uuid, task_id text, role text, backend text, issuer text,
      subject text, token_sha256 text, credential_ref text, issued_at timestamptz, expires_at timestamptz, backend_expires_at timestamptz, revocable boolean)),
    ids as (select distinct task_id as id from req),
    t as (select id, status from tasks where id = any(array(select id from ids)) for share),
    -- Every task row is locked by this count, before the leases are written and the chain's head is locked.
    closed as materialized (select (select count(*) from ids) - (select count(*) from t where status = 'open') as n),
    ins as (insert into leases (id, task_id, role, backend, issuer, subject, token_sha256, status, credential_ref,
        issued_at, expires_at, backend_expires_at, revocable)
      select id, task_id, role, backend, issuer, subject, token_sha256, 'active', credential_ref, issued_at, expires_at, backend_expires_at, revocable
      from req where (select n from closed) = 0
      returning 1),
    ${eventsCte(bodies)},
    ${chainCtes(sql`(select n from closed) = 0`)}
    select (select n from closed)::int as closed, (select count(*) from ins)::int as inserted, ${CHAIN_RESULT}`;
}
