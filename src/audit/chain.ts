import { createHash } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

/** The fields of an audit row that its hash covers. */
export interface AuditFields {
  at: Date;
  actor: string;
  action: string;
  target: string;
  decision: 'allow' | 'deny' | 'info';
  reason: string | null;
  details: Record<string, unknown>;
  requestId: string | null;
}

/** JSON with object keys sorted at every depth, so jsonb's key reordering does not change the hash. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** What a row's hash covers after the previous hash: its fields as canonical JSON. */
export function chainBody(fields: AuditFields): string {
  return canonicalJson({
    at: fields.at.toISOString(),
    actor: fields.actor,
    action: fields.action,
    target: fields.target,
    decision: fields.decision,
    reason: fields.reason,
    details: fields.details,
    request_id: fields.requestId,
  });
}

/**
 * hash = SHA-256(prev_hash, "\n", canonical fields): each row seals the one
 * before it. The append statement (append.ts) computes the same in SQL.
 */
export function chainHash(prevHash: string, fields: AuditFields): string {
  return createHash('sha256').update(prevHash).update('\n').update(chainBody(fields)).digest('hex');
}
