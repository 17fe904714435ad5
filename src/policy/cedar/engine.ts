import { createHash } from 'node:crypto';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { CEDAR_SCHEMA } from './schema.js';
import { lineAt, type PolicySource } from './compile.js';

/**
 * One policy set, parsed, validated against the schema and cached in the
 * wasm module once; every decision is a lookup of that cached set.
 *
 * Invariants (test/policy/cedar.test.ts):
 * - a set that does not parse or validate is refused whole, with each
 *   problem's origin (file and line) and Cedar's reason;
 * - a forbid beats every permit, and no permit means deny;
 * - a policy that errors while it is evaluated (a missing tag) fails the
 *   request closed if it is a forbid: Cedar skips it otherwise;
 * - `@approval("name")` on a forbid: forbidden unless an approver decides;
 *   on a permit: it grants only through an approver. The first gate in load
 *   order names the approval, and the approver's decision is weighed with
 *   `context.approved` true;
 * - `@conflict("name")` on a forbid: its refusal is a conflict (what is
 *   held), reported only when the request would be permitted without the
 *   conflicts, so that a request no permit matches stays "no permit"
 *   (test/policy/cedar-equivalence.test.ts).
 */
export type Verdict =
  | { decision: 'allow'; policies: string[] }
  | { decision: 'approval'; requiredBy: string; policies: string[] }
  /**
   * `policies`: the forbids that fired; none when no permit matched. `error`: a policy failed to evaluate.
   * `conflict`: only `@conflict` forbids refused it (the first one's name), and without them it is permitted.
   */
  | { decision: 'deny'; policies: string[]; error?: string; conflict?: string };

/** What one decision is asked about, as Cedar takes it (policy/cedar/request.ts builds it). */
export interface CedarRequest {
  principal: cedar.EntityUid;
  action: cedar.EntityUid;
  resource: cedar.EntityUid;
  context: cedar.Context;
  entities: cedar.Entities;
}

export class PolicyLoadError extends Error {
  constructor(readonly problems: string[]) {
    super(`the policies do not load:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

export interface CedarEngine {
  /** SHA-256 of the set's ids and texts, in order: replicas that agree run the same policies. */
  readonly hash: string;
  readonly ids: string[];
  /**
   * The decision on the request `build` makes. `key` must name everything the request holds (request.ts's
   * requestKey): the same key within the set's life is the same question, answered from memory.
   */
  decide(key: string, build: () => CedarRequest): Verdict;
  /** The decision on one request, not remembered: the actions that are not credential requests. */
  authorize(request: CedarRequest): Verdict;
}

interface Loaded {
  id: string;
  effect: 'permit' | 'forbid';
  approval?: string;
  conflict?: string;
}

const MEMO_SIZE = 10_000;

/**
 * Loads a policy set. Every decision's answer depends only on the request,
 * so answers are remembered (at most MEMO_SIZE, oldest out first): an agent
 * asking again for the same role on the same task in the same minute costs
 * a lookup, not a trip through the wasm module (200-1,000 us, bench:cedar).
 */
export function loadCedar(sources: PolicySource[]): CedarEngine {
  const problems: string[] = [];
  const seen = new Map<string, PolicySource>();
  for (const s of sources) {
    const before = seen.get(s.id);
    if (before) problems.push(`${s.origin}: policy id ${s.id} is also used by ${before.origin}`);
    seen.set(s.id, s);
  }
  const loaded: Loaded[] = [];
  for (const s of sources) {
    const json = cedar.policyToJson(s.text);
    if (json.type === 'failure') {
      problems.push(...json.errors.map((e) => `${where(s, e)}: ${e.message}`));
      continue;
    }
    const { approval, conflict } = json.json.annotations ?? {};
    loaded.push({ id: s.id, effect: json.json.effect, ...(approval !== undefined ? { approval } : {}), ...(conflict !== undefined ? { conflict } : {}) });
  }
  if (problems.length > 0) throw new PolicyLoadError(problems);
  const texts = Object.fromEntries(sources.map((s) => [s.id, s.text]));
  const validation = cedar.validate({ schema: CEDAR_SCHEMA, policies: { staticPolicies: texts }, validationSettings: { mode: 'strict' } });
  if (validation.type === 'failure') throw new PolicyLoadError(validation.errors.map((e) => e.message));
  for (const v of validation.validationErrors) problems.push(`${where(seen.get(v.policyId)!, v.error)}: ${v.error.message}${v.error.help ? ` (${v.error.help})` : ''}`);
  if (problems.length > 0) throw new PolicyLoadError(problems);

  const hash = createHash('sha256')
    .update(sources.map((s) => `${s.id}\n${s.text}`).join('\n\0'))
    .digest('hex');
  // The wasm module's cache is the process's, and keeps what it is given, with no way to drop a set: sets are
  // named by their content, so loading the same policies again (a reload that changed nothing, a second
  // engine) reuses them, and only a set never seen before adds its few kilobytes. Requests are not checked
  // against the schema each time: the policies were, and the broker builds every request to it (request.ts).
  const name = hash;
  const prepare = (id: string, policies: Record<string, string>) => {
    const parsed = cedar.preparsePolicySet(id, { staticPolicies: policies });
    if (parsed.type === 'failure') throw new PolicyLoadError(parsed.errors.map((e) => e.message));
  };
  const byId = new Map(loaded.map((p, i) => [p.id, { ...p, order: i }]));
  const forbids = (key: 'approval' | 'conflict') => new Set(loaded.filter((p) => p.effect === 'forbid' && p[key] !== undefined).map((p) => p.id));
  const gates = forbids('approval');
  const conflicts = forbids('conflict');
  // Each set under a name: all; without the gates (what an approver's decision would leave); and the same
  // two without the conflicts (what the request would be if nothing were held).
  const prepareWithout = (set: string, left: Set<string>) => {
    const kept = Object.fromEntries(Object.entries(texts).filter(([id]) => !left.has(id)));
    prepare(set, kept);
    if (gates.size > 0) prepare(`${set}:approved`, Object.fromEntries(Object.entries(kept).filter(([id]) => !gates.has(id))));
  };
  prepareWithout(`${name}:all`, new Set());
  if (conflicts.size > 0) prepareWithout(`${name}:unheld`, conflicts);
  const first = (ids: string[]) => ids.map((id) => byId.get(id)!).sort((a, b) => a.order - b.order)[0]!;
  const inOrder = (ids: string[]) => [...ids].sort((a, b) => byId.get(a)!.order - byId.get(b)!.order);

  const authorize = (set: string, request: CedarRequest) => {
    const answer = cedar.statefulIsAuthorized({ ...request, validateRequest: false, preparsedPolicySetId: set });
    if (answer.type === 'failure') return { error: answer.errors.map((e) => e.message).join('; ') };
    const failedForbid = answer.response.diagnostics.errors.find((e) => byId.get(e.policyId)?.effect === 'forbid');
    if (failedForbid) return { error: `forbid ${failedForbid.policyId} could not be evaluated: ${failedForbid.error.message}`, policies: [failedForbid.policyId] };
    return { allow: answer.response.decision === 'allow', reasons: inOrder(answer.response.diagnostics.reason) };
  };

  const permitted = (reasons: string[]): Verdict => {
    const plain = reasons.filter((id) => byId.get(id)!.approval === undefined);
    if (plain.length > 0) return { decision: 'allow', policies: reasons };
    return { decision: 'approval', requiredBy: first(reasons).approval!, policies: reasons };
  };

  function evaluateIn(set: string, request: CedarRequest): Verdict {
    const all = authorize(set, request);
    if ('error' in all) return { decision: 'deny', policies: all.policies ?? [], error: all.error };
    if (all.allow) return permitted(all.reasons);
    if (all.reasons.length === 0 || !all.reasons.every((id) => gates.has(id))) return { decision: 'deny', policies: all.reasons };
    // Only gates forbid it: what would an approver's decision allow?
    const approved = authorize(`${set}:approved`, { ...request, context: { ...request.context, approved: true } });
    if ('error' in approved) return { decision: 'deny', policies: approved.policies ?? [], error: approved.error };
    if (!approved.allow) return { decision: 'deny', policies: approved.reasons };
    return { decision: 'approval', requiredBy: first(all.reasons).approval!, policies: [...all.reasons, ...approved.reasons] };
  }

  function evaluate(request: CedarRequest): Verdict {
    const verdict = evaluateIn(`${name}:all`, request);
    if (verdict.decision !== 'deny' || verdict.error) return verdict;
    const fired = verdict.policies.filter((id) => conflicts.has(id));
    if (fired.length === 0 || !verdict.policies.every((id) => conflicts.has(id) || gates.has(id))) return verdict;
    // Only conflicts (and gates) forbid it: refused for what is held only if it would be permitted otherwise.
    const otherwise = evaluateIn(`${name}:unheld`, request);
    if (otherwise.decision === 'deny') return otherwise;
    return { decision: 'deny', policies: fired, conflict: first(fired).conflict! };
  }

  const memo = new Map<string, Verdict>();
  return {
    hash,
    ids: sources.map((s) => s.id),
    authorize: evaluate,
    decide(key, build) {
      const known = memo.get(key);
      if (known) return known;
      const verdict = evaluate(build());
      if (memo.size >= MEMO_SIZE) memo.delete(memo.keys().next().value!);
      memo.set(key, verdict);
      return verdict;
    },
  };
}

/** Where a problem is: `file:line` for a policy read from a file (from Cedar's offset into its text), else its origin. */
export function where(source: PolicySource, error?: cedar.DetailedError): string {
  if (!source.file) return source.origin;
  const at = error?.sourceLocations?.[0]?.start ?? 0;
  return `${source.file.path}:${source.file.line + lineAt(source.text, at) - 1}`;
}
