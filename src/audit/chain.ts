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
  if (value === null || typeof value !== 'object' || value instanceof Date) return JSON.stringify(value ?? null);
  // Loops rather than map/join: every audit event is rendered on the issuance path.
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  let out = '{';
  // The default sort compares UTF-16 code units, as the verifier always has.
  for (const key of Object.keys(object).sort()) {
    const v = object[key];
    if (v === undefined) continue;
    out += `${out.length === 1 ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
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
