import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { sendAll, sendOne } from '../db/send.js';
import { chainHash, type AuditFields } from './chain.js';

/** Locks the head of the chain until the transaction ends, and reads it (see lockChain). */
export const LOCK_HEAD = sql`select hash from audit_head where id = 1 for update`;

export type AuditInput = Omit<AuditFields, 'reason' | 'details' | 'requestId' | 'decision'> & {
  decision?: AuditFields['decision'];
  reason?: string | null;
  details?: Record<string, unknown>;
  requestId?: string | null;
};

/**
 * Locks the head of the chain until the transaction ends, and reads it, in one
 * statement: the row is read at its newest version once the lock is granted,
 * so an append that committed meanwhile is never missed. Sending other
 * statements of the transaction alongside it is safe in any order.
 */
export async function lockChain(tx: Db): Promise<string> {
  return headOf(await sendOne(tx, LOCK_HEAD));
}

/** The head's hash from the rows LOCK_HEAD returned. */
export function headOf(rows: unknown[]): string {
  const [head] = rows as { hash: string }[];
  if (!head) throw new Error('audit_head is missing: run the migrations');
  return head.hash;
}

/** Inserts events chained after `head`, which lockChain returned in this transaction, and moves the head. */
export async function insertChained(tx: Db, head: string, events: AuditInput[]): Promise<void> {
  const statement = chainedInsert(head, events);
  if (statement) await sendAll(tx, [statement]);
}

/**
 * The statement that inserts events chained after `head` and moves the head
 * (none for no events). Send it in the transaction that locked the head.
 */
export function chainedInsert(head: string, events: AuditInput[]): SQL | undefined {
  if (events.length === 0) return undefined;
  let prevHash = head;
  const rows = events.map((event) => {
    const fields: AuditFields = {
      at: event.at,
      actor: event.actor,
      action: event.action,
      target: event.target,
      decision: event.decision ?? 'info',
      reason: event.reason ?? null,
      details: event.details ?? {},
      requestId: event.requestId ?? null,
    };
    const hash = chainHash(prevHash, fields);
    const row = { at: fields.at.toISOString(), actor: fields.actor, action: fields.action, target: fields.target, decision: fields.decision, reason: fields.reason, details: fields.details, request_id: fields.requestId, prev_hash: prevHash, hash };
    prevHash = hash;
    return row;
  });
  // One JSON parameter, so the statement text never varies with the batch size: prepared once per connection.
  return sql`with appended as (insert into audit_events (at, actor, action, target, decision, reason, details, request_id, prev_hash, hash)
    select at, actor, action, target, decision, reason, details, request_id, prev_hash, hash
    from rows from (jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      as (at timestamptz, actor text, action text, target text, decision text, reason text, details jsonb, request_id text, prev_hash text, hash text))
      with ordinality as r(at, actor, action, target, decision, reason, details, request_id, prev_hash, hash, n)
    order by n)
    update audit_head set hash = ${prevHash} where id = 1`;
}

/**
 * Appends events to the audit chain inside the caller's transaction, so an
 * event commits or rolls back with the state change it records. Call it last
 * in the transaction: the chain lock is held until commit.
 */
export async function appendAudit(tx: Db, events: AuditInput[]): Promise<void> {
  if (events.length === 0) return;
  await insertChained(tx, await lockChain(tx), events);
}
