import { sql, type SQL } from 'drizzle-orm';
import { rowsOf } from '../db/rows.js';
import type { Db } from '../db/types.js';
import { chainBody, type AuditFields } from './chain.js';

/** The request an event came from: the broker's id for it, and the caller's own X-Request-Id (kept in details). */
export interface RequestRef {
  requestId?: string | null;
  clientRequestId?: string | null;
}

/** Only a request's ids, from anything that carries them (a caller, a service's input). */
export const requestRef = (from: RequestRef): RequestRef => ({ requestId: from.requestId, clientRequestId: from.clientRequestId });

export type AuditInput = Omit<AuditFields, 'reason' | 'details' | 'requestId' | 'decision'> &
  RequestRef & {
    decision?: AuditFields['decision'];
    reason?: string | null;
    details?: Record<string, unknown>;
  };

/**
 * The statement that appends events to the hash chain (none for no events);
 * pass its rows to `appended`. One statement does it all on the server: it
 * locks the chain's head (held until the transaction ends) and reads it at its
 * newest version, hashes the events after it in order (SHA-256 of the previous
 * hash, a newline and each event's canonical JSON, which this process renders:
 * chain.ts computes the same), inserts them and moves the head. No round trip
 * to this process happens while the head is locked, so appends from many
 * transactions queue on the head only for the time the server takes to write
 * them and commit.
 */
export function chainAppend(events: AuditInput[]): SQL | undefined {
  if (events.length === 0) return undefined;
  // One text parameter, so the statement text never varies with the batch size: prepared once per connection.
  return sql`with recursive ${eventsCte(chainBodies(events))}, ${chainCtes(sql`true`)} select ${CHAIN_RESULT}`;
}

/** The fields of an event, as its hash covers them. */
const fieldsOf = (event: AuditInput): AuditFields => ({
  at: event.at,
  actor: event.actor,
  action: event.action,
  target: event.target,
  decision: event.decision ?? 'info',
  reason: event.reason ?? null,
  details: event.clientRequestId ? { ...event.details, client_request_id: event.clientRequestId } : (event.details ?? {}),
  requestId: event.requestId ?? null,
});

/**
 * Events as the append statements take them: each one's canonical JSON, the
 * very text its hash covers, one per line (canonical JSON has no raw line
 * break). The statement reads the columns back out of it, so each event is
 * rendered once.
 */
export function chainBodies(events: AuditInput[]): string {
  return events.map((e) => chainBody(fieldsOf(e))).join('\n');
}

/** `ev`: the events of chainBodies, in order `n`, each with its body and its columns. */
export function eventsCte(bodies: string): SQL {
  return sql`ev as (select r.n, r.body, (j->>'at')::timestamptz as at, j->>'actor' as actor, j->>'action' as action, j->>'target' as target,
        j->>'decision' as decision, j->>'reason' as reason, j->'details' as details, j->>'request_id' as request_id
      from string_to_table(${bodies}::text, E'\\n') with ordinality as r(body, n) cross join lateral (select r.body::jsonb as j) as parsed)`;
}

/**
 * The common table expressions that append `ev` (eventsCte: the columns, the
 * body and the order `n` of each event) to the chain, once `when` holds: lock the head and read it
 * at its newest version, hash each event after the one before it, insert
 * them, move the head. Select CHAIN_RESULT from them, and check it with
 * `appended`. Whatever `when` refers to is evaluated before the head is
 * locked (the lock order: rows first, the chain's head last).
 */
export function chainCtes(when: SQL): SQL {
  return sql`head as (select hash from audit_head where id = 1 and ${when} for update),
    bodies as materialized (select array_agg(body order by n) as b from ev),
    chain (n, prev_hash, hash) as (
      select 0::bigint, null::text, hash from head
      union all
      -- One array of the bodies: each step reads the next, instead of scanning every event.
      select chain.n + 1, chain.hash, encode(sha256(convert_to(chain.hash || E'\n' || bodies.b[(chain.n + 1)::int], 'UTF8')), 'hex')
      from chain cross join bodies where chain.n < cardinality(bodies.b)),
    appended as (insert into audit_events (at, actor, action, target, decision, reason, details, request_id, prev_hash, hash)
      select ev.at, ev.actor, ev.action, ev.target, ev.decision, ev.reason, ev.details, ev.request_id, chain.prev_hash, chain.hash
      from ev join chain on chain.n = ev.n
      order by ev.n
      returning 1),
    moved as (update audit_head set hash = (select hash from chain order by n desc limit 1) where id = 1 and exists (select from head) returning 1)`;
}

export const CHAIN_RESULT = sql`(select count(*) from appended)::int as appended, (select count(*) from moved)::int as moved`;

/** Checks the rows of chainAppend: all `count` events were written and the head moved. */
export function appended(rows: unknown[], count: number): void {
  const [r] = rows as { appended: number; moved: number }[];
  // Otherwise audit_head is missing (migrations not run), and nothing was written.
  if (r?.moved !== 1 || r.appended !== count) throw new Error(`the audit chain took ${r?.appended ?? 0} of ${count} events`);
}

/**
 * The most events one append statement hashes. The chain is computed by a
 * recursive step that reads the next body out of one array, and reading
 * element i of an array of text walks the i before it: a statement's cost
 * grows with the square of its events (8,000 took 2 s, 1,000 44 ms, measured
 * by bench scenario 8's suspensions). Chunks of this size keep it linear.
 */
export const MAX_EVENTS_PER_APPEND = 256;

/**
 * Appends events to the audit chain inside the caller's transaction, so an
 * event commits or rolls back with the state change it records. Call it last
 * in the transaction: the chain's head stays locked until commit. Many events
 * go in chunks of MAX_EVENTS_PER_APPEND, one statement each, in order: the
 * first locks the head, and each reads it as the one before left it.
 */
export async function appendAudit(tx: Db, events: AuditInput[]): Promise<void> {
  for (let i = 0; i < events.length; i += MAX_EVENTS_PER_APPEND) {
    const chunk = events.slice(i, i + MAX_EVENTS_PER_APPEND);
    appended(rowsOf(await tx.execute(chainAppend(chunk)!)), chunk.length);
  }
}
