import { sql } from 'drizzle-orm';
import { execRows, type Db } from '../db/client.js';
import { chainHash, GENESIS_HASH, type AuditFields } from './chain.js';

/** Transaction-scoped advisory lock that orders appends to the hash chain. */
const AUDIT_LOCK_KEY = 7_263_115_001;
const LOCK = sql`select pg_advisory_xact_lock(${sql.raw(String(AUDIT_LOCK_KEY))})`;
const HEAD = sql`select hash from audit_events order by seq desc limit 1`;

export type AuditInput = Omit<AuditFields, 'reason' | 'details' | 'requestId' | 'decision'> & {
  decision?: AuditFields['decision'];
  reason?: string | null;
  details?: Record<string, unknown>;
  requestId?: string | null;
};

/** Takes the chain lock, held until the transaction ends: appends are serialized by it. */
export async function takeChainLock(tx: Db): Promise<void> {
  await tx.execute(LOCK);
}

/**
 * The head of the chain. Read it only once takeChainLock has returned: a
 * statement sees what was committed when it started, so a head read sent
 * before the lock was granted could miss an append and fork the chain.
 */
export async function chainHead(tx: Db): Promise<string> {
  const [last] = await execRows<{ hash: string }>(tx, HEAD);
  return last?.hash ?? GENESIS_HASH;
}

/** Inserts events chained after `head`, read by chainHead under the chain lock in this transaction. */
export async function insertChained(tx: Db, head: string, events: AuditInput[]): Promise<void> {
  if (events.length === 0) return;
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
  await tx.execute(sql`insert into audit_events (at, actor, action, target, decision, reason, details, request_id, prev_hash, hash)
    select at, actor, action, target, decision, reason, details, request_id, prev_hash, hash
    from rows from (jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      as (at timestamptz, actor text, action text, target text, decision text, reason text, details jsonb, request_id text, prev_hash text, hash text))
      with ordinality as r(at, actor, action, target, decision, reason, details, request_id, prev_hash, hash, n)
    order by n`);
}

/**
 * Appends events to the audit chain inside the caller's transaction, so an
 * event commits or rolls back with the state change it records. Call it last
 * in the transaction: the chain lock is held until commit.
 */
export async function appendAudit(tx: Db, events: AuditInput[]): Promise<void> {
  if (events.length === 0) return;
  await takeChainLock(tx);
  await insertChained(tx, await chainHead(tx), events);
}
