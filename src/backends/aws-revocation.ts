/**
 * The deny policy that makes STS sessions revocable. STS has no API to revoke
 * a session, but IAM evaluates the role's policies on every call the session
 * makes, so a Deny on the session's SourceIdentity (which the broker sets to
 * the lease id, and which survives role chaining) cuts it off.
 *
 * The policy is rendered whole from what PostgreSQL holds (aws_revocations,
 * aws_revocation_cutoffs): never read back from IAM. Entries are grouped in
 * statements by the hour their sessions expire. When the role's budget would
 * overflow, the heaviest agents' entries are collapsed first, each into a
 * cut-off that matches only that agent's sessions (the session tag
 * `tasklease:agent-id`, which the broker sets, transitive, on every session,
 * with StringEquals, AND `aws:TokenIssueTime` before the cut-off), so one
 * agent's churn revokes only its own older sessions. An entry whose session
 * may lack the tag (`untagged`: issued before this version) is never
 * collapsed that way, as such a cut-off would not match it. Only when that is
 * not enough does a role-wide cut-off replace everything. Cut-offs are kept
 * until every session they cover has expired.
 *
 * Invariants: every live entry is denied, by name or by a cut-off that covers
 * it (its session was issued before the entry was recorded, and so before a
 * cut-off decided at or after that; an agent's cut-off covers only its tagged
 * entries); a session without the tag and another agent's sessions are
 * denied only by a role-wide cut-off, which the caller reports as such. Proved by
 * test/backends/aws-revocation.test.ts and test/backends/aws-shared-role.test.ts.
 */
import { sha256Hex } from '../ids.js';

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
  /** `issuer/subject` of the agent the session was issued to. */
  agent: string;
  /** When AWS itself ends the session; the entry is useless after that. */
  expiresAt: Date;
  /** When the revocation was recorded: the session was issued before this. */
  createdAt: Date;
  /** The session may lack the agent tag (issued before this version): no per-agent cut-off matches it. */
  untagged: boolean;
}

export interface Cutoff {
  /** `issuer/subject`, or ROLE_WIDE. */
  agent: string;
  /** Sessions issued before this are denied. */
  cutoffAt: Date;
  /** When every session the cut-off covers has expired at AWS. */
  expiresAt: Date;
}

export interface PlannedCutoff extends Cutoff {
  /** The agents whose entries it replaced, heaviest first (one for a per-agent cut-off). */
  agents: string[];
  /** How many named entries it replaced. */
  entries: number;
}

export interface Plan {
  /** Undefined when nothing is left: the policy can be deleted. */
  document: PolicyDocument | undefined;
  /** Cut-offs decided now, to be recorded (and announced) before the document is written. */
  added: PlannedCutoff[];
}

export const ROLE_WIDE = '*';
/** The session tag that names the agent in a form IAM can compare: a digest of `issuer/subject` (which has no `/` in issuer names, so it is unambiguous). */
export const AGENT_TAG = 'tasklease:agent-id';
export const agentTagValue = (agent: string) => sha256Hex(agent).slice(0, 32);

const HOUR = 3600;
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);
const iso = (s: number) => new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Size as IAM counts it: characters excluding whitespace (JSON.stringify emits none outside strings). */
export const policySize = (doc: PolicyDocument) => JSON.stringify(doc).length;

const deny = (Sid: string, Condition: Statement['Condition']): Statement => ({ Sid, Effect: 'Deny', Action: '*', Resource: '*', Condition });

function cutoffStatement(c: Cutoff): Statement {
  const before = { DateLessThan: { 'aws:TokenIssueTime': iso(seconds(c.cutoffAt)) } };
  if (c.agent === ROLE_WIDE) return deny('TaskleaseCutoff', before);
  const tag = agentTagValue(c.agent);
  // StringEquals: a session without the tag (not the broker's, or issued before this version) is never touched;
  // the planner replaces only tagged entries with it, and the tag is transitive, so chained sessions keep it.
  return deny(`TaskleaseAgent${tag}`, { StringEquals: { [`aws:PrincipalTag/${AGENT_TAG}`]: tag }, ...before });
}

/**
 * The whole deny policy for one role from its live entries and cut-offs,
 * adding cut-offs while it exceeds `budget`. Pure: the caller records the
 * added cut-offs, then writes the document.
 */
export function planRevocationPolicy(entries: RevocationEntry[], cutoffs: Cutoff[], now: Date, budget: number, maxSessionSeconds: number): Plan {
  const nowS = seconds(now);
  const live = <T extends { expiresAt: Date }>(xs: T[]) => xs.filter((x) => seconds(x.expiresAt) > nowS);
  const agentCuts = new Map(live(cutoffs).filter((c) => c.agent !== ROLE_WIDE).map((c) => [c.agent, c] as const));
  let roleCut = live(cutoffs).find((c) => c.agent === ROLE_WIDE);
  const added: PlannedCutoff[] = [];
  const covered = (e: RevocationEntry) => {
    const cut = agentCuts.get(e.agent);
    return (roleCut !== undefined && e.createdAt < roleCut.cutoffAt) || (cut !== undefined && !e.untagged && e.createdAt < cut.cutoffAt);
  };
  const build = (): PolicyDocument => {
    const buckets = new Map<number, Set<string>>();
    for (const e of live(entries)) {
      if (covered(e)) continue;
      const until = Math.ceil(Math.ceil(e.expiresAt.getTime() / 1000) / HOUR) * HOUR;
      if (!buckets.has(until)) buckets.set(until, new Set());
      buckets.get(until)!.add(e.sourceIdentity);
    }
    const named = [...buckets.entries()]
      .sort(([a], [b]) => a - b)
      .map(([until, ids]) => deny(`TaskleaseUntil${until}`, { StringEquals: { 'aws:SourceIdentity': [...ids].sort() } }));
    // An agent's cut-off older than the role's adds nothing: the role's covers every session it does.
    const agents = [...agentCuts.values()].filter((c) => !roleCut || c.cutoffAt > roleCut.cutoffAt).sort((a, b) => (a.agent < b.agent ? -1 : 1));
    return { Version: '2012-10-17', Statement: [...named, ...agents.map(cutoffStatement), ...(roleCut ? [cutoffStatement(roleCut)] : [])] };
  };
  // A cut-off decided now covers every session issued up to now: rounded up to the next second, as TokenIssueTime has whole seconds.
  const cutoffAt = new Date((nowS + 1) * 1000);
  const cutoffFor = (agent: string, covering: RevocationEntry[]): Cutoff => ({
    agent,
    cutoffAt,
    // It must outlive every session it covers: those issued before it, of at most the role's longest session.
    expiresAt: new Date(Math.max(seconds(cutoffAt) + maxSessionSeconds, ...covering.map((e) => seconds(e.expiresAt))) * 1000),
  });

  for (let doc = build(); ; doc = build()) {
    const size = policySize(doc);
    if (size <= budget) return { document: doc.Statement.length ? doc : undefined, added };
    const byAgent = new Map<string, RevocationEntry[]>();
    // Only tagged entries can be replaced by their agent's cut-off.
    for (const e of live(entries)) if (!covered(e) && !e.untagged) byAgent.set(e.agent, [...(byAgent.get(e.agent) ?? []), e]);
    const [agent, theirs] = [...byAgent.entries()].sort(([a, x], [b, y]) => y.length - x.length || (a < b ? -1 : 1))[0] ?? [];
    if (agent !== undefined && theirs !== undefined) {
      const previous = agentCuts.get(agent);
      const cut = cutoffFor(agent, theirs);
      if (previous) cut.expiresAt = new Date(Math.max(cut.expiresAt.getTime(), previous.expiresAt.getTime()));
      agentCuts.set(agent, cut);
      // Worth it only if the policy shrinks; otherwise one agent's cut-off cannot help, and the role's is the fallback.
      if (policySize(build()) < size) {
        added.push({ ...cut, agents: [agent], entries: theirs.length });
        continue;
      }
      if (previous) agentCuts.set(agent, previous);
      else agentCuts.delete(agent);
    }
    const all = live(entries).filter((e) => !covered(e));
    const superseded = [...agentCuts.values(), ...(roleCut ? [roleCut] : [])];
    roleCut = cutoffFor(ROLE_WIDE, all);
    roleCut.expiresAt = new Date(Math.max(roleCut.expiresAt.getTime(), ...superseded.map((c) => c.expiresAt.getTime())));
    // Every agent whose sessions it ends, heaviest first (untagged entries' agents too).
    const counts = new Map<string, number>();
    for (const e of all) counts.set(e.agent, (counts.get(e.agent) ?? 0) + 1);
    const heavyFirst = [...counts.entries()].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1)).map(([a]) => a);
    const named = [...heavyFirst, ...[...agentCuts.keys()].filter((a) => !counts.has(a))];
    added.push({ ...roleCut, agents: named, entries: all.length });
    return { document: build(), added };
  }
}
