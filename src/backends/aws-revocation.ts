/**
 * The deny policy that makes STS sessions revocable. STS has no API to revoke
 * a session, but IAM evaluates the role's policies on every call the session
 * makes, so a Deny on the session's SourceIdentity (which the broker sets to
 * the lease id, and which survives role chaining) cuts it off.
 *
 * Entries are grouped in statements by the hour their sessions expire
 * (`Sid: TaskleaseUntil<epoch>`), so pruning what has expired anyway is
 * dropping whole statements. When the role's policy budget would overflow,
 * the fallback is a cut-off on `aws:TokenIssueTime`: every session of the role
 * issued before now is denied, which covers every entry, and the explicit
 * entries are dropped. The cut-off itself is kept until every session it
 * covers has expired.
 */

interface Statement {
  Sid: string;
  Effect: 'Deny';
  Action: '*';
  Resource: '*';
  Condition: Record<string, Record<string, string | string[]>>;
}
export interface PolicyDocument {
  Version: '2012-10-17';
  Statement: Statement[];
}

export interface RevocationEntry {
  sourceIdentity: string;
  /** When AWS itself ends the session; the entry is useless after that. */
  expiresAt: Date;
}

export interface MergeResult {
  /** Undefined when nothing is left: the policy can be deleted. */
  document: PolicyDocument | undefined;
  /** True when the budget forced a cut-off that also denies sessions that were not revoked. */
  cutoffApplied: boolean;
}

const UNTIL = /^TaskleaseUntil(\d+)$/;
const CUTOFF = /^TaskleaseCutoffUntil(\d+)$/;
const HOUR = 3600;

/** Size as IAM counts it: characters excluding whitespace (JSON.stringify emits none outside strings). */
export const policySize = (doc: PolicyDocument) => JSON.stringify(doc).length;

export function parsePolicy(json: string | undefined): PolicyDocument {
  if (!json) return { Version: '2012-10-17', Statement: [] };
  const doc = JSON.parse(json) as PolicyDocument;
  return { Version: '2012-10-17', Statement: Array.isArray(doc.Statement) ? doc.Statement : [] };
}

const denyStatement = (Sid: string, Condition: Statement['Condition']): Statement => ({ Sid, Effect: 'Deny', Action: '*', Resource: '*', Condition });

/**
 * Adds `entries`, drops what has expired, and falls back to a cut-off when the
 * result would exceed `budget`. Pure: the caller reads and writes the policy.
 */
export function mergeRevocations(current: PolicyDocument, entries: RevocationEntry[], now: Date, budget: number, maxSessionSeconds: number): MergeResult {
  const nowS = Math.floor(now.getTime() / 1000);
  const buckets = new Map<number, Set<string>>();
  const cutoffs: Statement[] = [];
  for (const st of current.Statement) {
    const until = UNTIL.exec(st.Sid ?? '');
    if (until) {
      if (Number(until[1]) <= nowS) continue;
      const ids = st.Condition?.StringEquals?.['aws:SourceIdentity'];
      buckets.set(Number(until[1]), new Set(Array.isArray(ids) ? ids : ids ? [ids] : []));
      continue;
    }
    const cutoff = CUTOFF.exec(st.Sid ?? '');
    if (cutoff && Number(cutoff[1]) > nowS) cutoffs.push(st);
  }
  for (const entry of entries) {
    const expiresS = Math.ceil(entry.expiresAt.getTime() / 1000);
    if (expiresS <= nowS) continue;
    const until = Math.ceil(expiresS / HOUR) * HOUR;
    if (!buckets.has(until)) buckets.set(until, new Set());
    buckets.get(until)!.add(entry.sourceIdentity);
  }
  const build = (withBuckets: boolean, extraCutoff?: Statement): PolicyDocument => ({
    Version: '2012-10-17',
    Statement: [
      ...(withBuckets
        ? [...buckets.entries()]
            .sort(([a], [b]) => a - b)
            .map(([until, ids]) => denyStatement(`TaskleaseUntil${until}`, { StringEquals: { 'aws:SourceIdentity': [...ids].sort() } }))
        : []),
      ...cutoffs,
      ...(extraCutoff ? [extraCutoff] : []),
    ],
  });
  const full = build(true);
  if (policySize(full) <= budget) return { document: full.Statement.length ? full : undefined, cutoffApplied: false };
  // Every revoked session was issued before now, so one cut-off at now covers them all.
  // Rounded up to the next second: a session issued earlier in this same second must be covered too.
  const cutoffAt = new Date((nowS + 1) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  // It must outlive every entry it replaces, and every session of the role issued before it.
  const lastBucket = Math.max(0, ...buckets.keys());
  const cutoff = denyStatement(`TaskleaseCutoffUntil${Math.max(lastBucket, nowS + 1 + maxSessionSeconds)}`, { DateLessThan: { 'aws:TokenIssueTime': cutoffAt } });
  return { document: build(false, cutoff), cutoffApplied: true };
}

/** Every SourceIdentity the document denies by name (for checks and tests). */
export function deniedIdentities(doc: PolicyDocument): Set<string> {
  const out = new Set<string>();
  for (const st of doc.Statement) {
    const ids = st.Condition?.StringEquals?.['aws:SourceIdentity'];
    for (const id of Array.isArray(ids) ? ids : ids ? [ids] : []) out.add(id);
  }
  return out;
}
