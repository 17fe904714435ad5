import { sql, type SQL } from 'drizzle-orm';
import { TransactionLost } from '../db/errors.js';
import type { Lease, leases } from '../db/schema.js';

export type LeaseRow = typeof leases.$inferInsert;

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

/** The lease as stored: the columns the insert statements write (leaseJson), and the defaults of those they do not. */
export function stored(row: LeaseRow): Lease {
  return {
    reason: row.reason ?? null,
    revocable: row.revocable ?? true,
    revokeRequestedAt: row.revokeRequestedAt ?? null,
    nextAttemptAt: row.nextAttemptAt ?? null,
    endedAt: null,
    attempts: 0,
    lastError: null,
    claimedBy: null,
    claimUntil: null,
    id: row.id,
    taskId: row.taskId,
    role: row.role,
    backend: row.backend,
    issuer: row.issuer,
    subject: row.subject,
    tokenSha256: row.tokenSha256,
    status: row.status,
    credentialRef: row.credentialRef,
    issuedAt: row.issuedAt,
    expiresAt: row.expiresAt,
    backendExpiresAt: row.backendExpiresAt,
    agent: row.agent ?? null,
    agentOwner: row.agentOwner ?? null,
  };
}

/**
 * The statement that inserts new leases (the issuance path; none for no
 * rows); pass its rows to `inserted`. It writes only in transaction `txid`
 * (the one that locked the batch's tasks), nothing in a session
 * a lost connection was replaced with. Its text does not vary with the batch
 * size, so it is prepared once per connection: the rows travel as one JSON
 * parameter.
 */
export function leaseInsert(rows: LeaseRow[], txid: string): SQL | undefined {
  if (rows.length === 0) return undefined;
  const json = rows.map(leaseJson);
  return sql`with locker as (select 1 where txid_current()::text = ${txid}),
    ins as (insert into leases (id, task_id, role, backend, issuer, subject, token_sha256, status, reason, credential_ref,
        issued_at, expires_at, backend_expires_at, revocable, revoke_requested_at, next_attempt_at, agent, agent_owner)
      select * from jsonb_to_recordset(${JSON.stringify(json)}::jsonb) as r(id uuid, task_id text, role text, backend text, issuer text, subject text,
        token_sha256 text, status text, reason text, credential_ref text, issued_at timestamptz, expires_at timestamptz,
        backend_expires_at timestamptz, revocable boolean, revoke_requested_at timestamptz, next_attempt_at timestamptz, agent text, agent_owner text)
      where exists (select from locker)
      returning 1)
    select count(*)::int as inserted from ins`;
}

/** A lease as the insert statements take it (jsonb_to_recordset). */
export function leaseJson(r: LeaseRow) {
  return {
    id: r.id,
    task_id: r.taskId,
    role: r.role,
    backend: r.backend,
    issuer: r.issuer,
    subject: r.subject,
    token_sha256: r.tokenSha256,
    status: r.status,
    reason: r.reason ?? null,
    credential_ref: r.credentialRef,
    issued_at: iso(r.issuedAt),
    expires_at: iso(r.expiresAt),
    backend_expires_at: iso(r.backendExpiresAt),
    revocable: r.revocable ?? true,
    revoke_requested_at: iso(r.revokeRequestedAt),
    next_attempt_at: iso(r.nextAttemptAt),
    agent: r.agent ?? null,
    agent_owner: r.agentOwner ?? null,
  };
}

/** Checks the rows of leaseInsert: every lease was written. */
export function inserted(rows: unknown[], expected: number): void {
  if ((rows as { inserted: number }[])[0]?.inserted !== expected) throw new TransactionLost();
}

export interface TaskState {
  id: string;
  status: string;
  maxLeases: number | null;
}

/**
 * The statement that reads the tasks of a batch FOR SHARE: this orders the batch's inserts
 * against a concurrent completion of a task (either the completion sees the
 * lease and revokes it, or the batch sees the task closed).
 */
export function tasksForShare(ids: string[]): SQL {
  // = any(array(...)), not in (select ...): a prepared statement's generic plan guesses 100 rows for the
  // set-returning function and hash-joins the whole table; an array comparison is an index scan.
  return sql`select id, status, max_leases from tasks where id = any(array(select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))) for share`;
}

/**
 * The registry's generation, read FOR SHARE: a change to agents or
 * suspensions (which updates this row) waits for the commit that reads it,
 * or the commit sees the new generation and decides again.
 */
export const REGISTRY_FOR_SHARE = sql`select generation from registry_state where id = 1 for share`;

/** The generation REGISTRY_FOR_SHARE returned. */
export const generationOf = (rows: unknown[]) => Number((rows as { generation: string | number }[])[0]?.generation ?? 0);

/** The rows tasksForShare returned, by id. */
export function taskStates(rows: unknown[]): Map<string, TaskState> {
  return new Map((rows as { id: string; status: string; max_leases: number | null }[]).map((t) => [t.id, { id: t.id, status: t.status, maxLeases: t.max_leases }]));
}
