import { sql, type SQL } from 'drizzle-orm';
import { CHAIN_RESULT, chainCtes, chainRow, EVENT_COLUMNS, type AuditInput } from '../audit/append.js';
import { leaseJson, type LeaseRow } from './insert.js';

/** A lease to record, its audit event, and the event that replaces it if its task closed meanwhile. */
export interface IssuedItem {
  row: LeaseRow;
  event: AuditInput;
  refusedEvent: AuditInput;
}

/** What the statement reports: the leases it recorded as `revoking` (their task was not open), and the counts. */
export interface RecordResult {
  refused: string | null;
  inserted: number;
  appended: number;
  moved: number;
}

/**
 * One statement, one round trip, atomic on its own (it needs no BEGIN, and
 * a lost connection cannot split it): records leases of roles no limit
 * applies to, with the batch's audit events, in this order on the server:
 *
 * 1. the batch's tasks, read FOR SHARE (a completion waits for this
 *    transaction, or this one sees the task closed);
 * 2. the leases: `active` where the task is open; where it is not,
 *    `revoking` (reason task_closed), so the sweeper revokes the credential,
 *    which is never released;
 * 3. the audit events, appended to the chain, whose head is locked last:
 *    `credential.issued`, or for a lease refused in 2 its `refusedEvent`.
 *
 * `events` are the batch's other events (denials), in order after the
 * leases' own. The statement's text does not vary with the batch.
 */
export function recordIssued(items: IssuedItem[], events: AuditInput[]): SQL {
  const leases = items.map(({ row }) => leaseJson(row));
  const chained = [
    ...items.map((i) => {
      const alt = chainRow(i.refusedEvent);
      return { ...chainRow(i.event), task_id: i.row.taskId, alt_action: alt.action, alt_decision: alt.decision, alt_reason: alt.reason, alt_details: alt.details, alt_body: alt.body };
    }),
    ...events.map(chainRow),
  ];
  const pick = (column: string) => sql.raw(`case when e.refused then e.alt_${column} else e.${column} end`);
  return sql`with recursive
    req as (select * from jsonb_to_recordset(${JSON.stringify(leases)}::jsonb) as r(id uuid, task_id text, role text, backend text, issuer text,
      subject text, token_sha256 text, credential_ref text, issued_at timestamptz, expires_at timestamptz, backend_expires_at timestamptz, revocable boolean)),
    t as (select id, status from tasks where id = any(array(select distinct task_id from req)) for share),
    locked as (select count(*) as n from t),
    ins as (insert into leases (id, task_id, role, backend, issuer, subject, token_sha256, status, reason, credential_ref,
        issued_at, expires_at, backend_expires_at, revocable, revoke_requested_at, next_attempt_at)
      select r.id, r.task_id, r.role, r.backend, r.issuer, r.subject, r.token_sha256,
        case when r.open then 'active' else 'revoking' end, case when r.open then null else 'task_closed' end, r.credential_ref,
        r.issued_at, r.expires_at, r.backend_expires_at, r.revocable,
        case when r.open then null else r.issued_at end, case when r.open then null else r.issued_at end
      from (select req.*, coalesce(t.status = 'open', false) as open from req left join t on t.id = req.task_id) r
      returning id, status),
    evin as (select * from rows from (jsonb_to_recordset(${JSON.stringify(chained)}::jsonb)
        as (${EVENT_COLUMNS}, task_id text, alt_action text, alt_decision text, alt_reason text, alt_details jsonb, alt_body text))
      with ordinality as r(at, actor, action, target, decision, reason, details, request_id, body, task_id, alt_action, alt_decision, alt_reason, alt_details, alt_body, n)),
    ev as (select e.at, e.actor, ${pick('action')} as action, e.target, ${pick('decision')} as decision, ${pick('reason')} as reason,
        ${pick('details')} as details, e.request_id, ${pick('body')} as body, e.n
      from (select evin.*, evin.task_id is not null and coalesce(t.status, '') <> 'open' as refused from evin left join t on t.id = evin.task_id) e),
    ${chainCtes(sql`(select n from locked) >= 0`)}
    select (select string_agg(id::text, ',') from ins where status = 'revoking') as refused, (select count(*) from ins)::int as inserted, ${CHAIN_RESULT}`;
}
