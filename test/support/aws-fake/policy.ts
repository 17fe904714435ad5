/**
 * IAM policy documents: the grammar checks PutRolePolicy and AssumeRole's
 * session Policy apply, the whitespace-free size IAM counts against a role's
 * 10,240-character inline quota, and a small evaluator for the Deny
 * statements a broker writes to revoke sessions early.
 */
import type { FakeSession } from './state.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Statement = Record<string, Json>;

const STATEMENT_KEYS = new Set(['Sid', 'Effect', 'Principal', 'NotPrincipal', 'Action', 'NotAction', 'Resource', 'NotResource', 'Condition']);

/** Every condition operator IAM accepts (base names; ForAnyValue:/ForAllValues: and IfExists wrap them). */
const OPERATORS = new Set([
  'StringEquals', 'StringNotEquals', 'StringEqualsIgnoreCase', 'StringNotEqualsIgnoreCase', 'StringLike', 'StringNotLike',
  'NumericEquals', 'NumericNotEquals', 'NumericLessThan', 'NumericLessThanEquals', 'NumericGreaterThan', 'NumericGreaterThanEquals',
  'DateEquals', 'DateNotEquals', 'DateLessThan', 'DateLessThanEquals', 'DateGreaterThan', 'DateGreaterThanEquals',
  'Bool', 'BinaryEquals', 'IpAddress', 'NotIpAddress', 'ArnEquals', 'ArnLike', 'ArnNotEquals', 'ArnNotLike', 'Null',
]);

const asList = (v: Json | undefined): Json[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const isObject = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

function splitOperator(op: string): { set?: 'ForAnyValue' | 'ForAllValues'; base: string; ifExists: boolean } {
  let set: 'ForAnyValue' | 'ForAllValues' | undefined;
  let rest = op;
  const m = /^(ForAnyValue|ForAllValues):(.*)$/.exec(op);
  if (m) {
    set = m[1] as 'ForAnyValue' | 'ForAllValues';
    rest = m[2]!;
  }
  const ifExists = rest.endsWith('IfExists') && rest !== 'IfExists';
  const base = ifExists ? rest.slice(0, -'IfExists'.length) : rest;
  return set ? { set, base, ifExists } : { base, ifExists };
}

/**
 * The grammar errors IAM reports as MalformedPolicyDocument. Returns the
 * message, or undefined for a document IAM would accept. Identity policies
 * (inline role policies, session policies) may not name a Principal.
 */
export function policyGrammarError(text: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return 'Syntax errors in policy.';
  }
  if (!isObject(doc)) return 'Syntax errors in policy.';
  for (const key of Object.keys(doc)) {
    if (!['Version', 'Id', 'Statement'].includes(key)) return 'Syntax errors in policy.';
  }
  if (doc.Version !== undefined && doc.Version !== '2012-10-17' && doc.Version !== '2008-10-17') {
    return 'The policy failed legacy parsing';
  }
  const statements = asList(doc.Statement);
  if (statements.length === 0) return 'Syntax errors in policy.';
  for (const s of statements) {
    if (!isObject(s)) return 'Syntax errors in policy.';
    for (const key of Object.keys(s)) if (!STATEMENT_KEYS.has(key)) return 'Syntax errors in policy.';
    if (s.Effect === undefined) return 'Missing required field Effect';
    if (s.Effect !== 'Allow' && s.Effect !== 'Deny') return 'Syntax errors in policy.';
    if (s.Principal !== undefined || s.NotPrincipal !== undefined) return 'Policy document should not specify a principal.';
    if (s.Action === undefined && s.NotAction === undefined) return 'Policy statement must contain actions.';
    if (s.Action !== undefined && s.NotAction !== undefined) return 'Syntax errors in policy.';
    if (s.Resource === undefined && s.NotResource === undefined) return 'Policy statement must contain resources.';
    if (s.Resource !== undefined && s.NotResource !== undefined) return 'Syntax errors in policy.';
    for (const a of asList(s.Action ?? s.NotAction)) {
      if (typeof a !== 'string') return 'Syntax errors in policy.';
      if (a !== '*' && !/^[a-zA-Z0-9-]+:[\w*?-]+$/.test(a)) {
        return 'Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.';
      }
    }
    for (const r of asList(s.Resource ?? s.NotResource)) if (typeof r !== 'string') return 'Syntax errors in policy.';
    if (s.Condition !== undefined) {
      if (!isObject(s.Condition)) return 'Syntax errors in policy.';
      for (const [op, block] of Object.entries(s.Condition)) {
        if (!OPERATORS.has(splitOperator(op).base)) return `Invalid Condition type : ${op}`;
        if (!isObject(block)) return 'Syntax errors in policy.';
        for (const [key, values] of Object.entries(block)) {
          if (!/^[a-zA-Z0-9-]+:/.test(key)) return 'Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.';
          for (const v of asList(values)) if (isObject(v) || Array.isArray(v)) return 'Syntax errors in policy.';
        }
      }
    }
  }
  return undefined;
}

/** IAM counts policy size "excluding whitespace". */
export function policySize(text: string): number {
  return text.replace(/\s/g, '').length;
}

/** The escapes IAM resolves, in a policy whose Version is 2012-10-17, wherever it resolves policy variables. */
const ESCAPES: Record<string, string> = { '${*}': '*', '${?}': '?', '${$}': '$' };

/**
 * IAM's wildcard match: `*` any run, `?` one character; with `variables`
 * (Version 2012-10-17), `${*}`, `${?}` and `${$}` stand for the literal
 * character, and any other `${...}` is a variable the fake cannot resolve
 * (the pattern matches nothing, as IAM's does when a variable has no value).
 * Without `variables`, `${...}` is plain text.
 */
function globMatch(pattern: string, value: string, ignoreCase: boolean, variables = false, wildcards = true): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const escape = variables ? /^\$\{[^}]*\}/.exec(pattern.slice(i))?.[0] : undefined;
    if (escape !== undefined) {
      const literal = ESCAPES[escape];
      if (literal === undefined) return false;
      re += literal.replace(/[*?$]/g, '\\$&');
      i += escape.length - 1;
      continue;
    }
    const c = pattern[i]!;
    if (wildcards && c === '*') re += '.*';
    else if (wildcards && c === '?') re += '.';
    else re += c.replace(/[.*?+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, ignoreCase ? 'is' : 's').test(value);
}

function dateOf(v: Json): number | undefined {
  if (typeof v === 'number') return v * 1000;
  if (typeof v !== 'string') return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

/** The request context keys the fake knows for a session; others are absent. */
function contextValue(session: FakeSession, key: string, now: Date, roleId: string): string[] | undefined {
  const k = key.toLowerCase();
  if (k === 'aws:sourceidentity') return session.sourceIdentity === undefined ? undefined : [session.sourceIdentity];
  if (k === 'aws:tokenissuetime') return [session.issuedAt.toISOString()];
  if (k === 'aws:currenttime') return [now.toISOString()];
  if (k === 'aws:userid') return [`${roleId}:${session.sessionName}`];
  if (k.startsWith('aws:principaltag/')) {
    const want = k.slice('aws:principaltag/'.length);
    const hit = Object.entries(session.tags).find(([t]) => t.toLowerCase() === want);
    return hit ? [hit[1]] : undefined;
  }
  return undefined;
}

function compare(base: string, actual: string, wanted: Json, variables: boolean): boolean | undefined {
  const w = typeof wanted === 'string' ? wanted : String(wanted);
  switch (base) {
    case 'StringEquals':
      return globMatch(w, actual, false, variables, false);
    case 'StringEqualsIgnoreCase':
      return globMatch(w, actual, true, variables, false);
    case 'StringLike':
      return globMatch(w, actual, false, variables);
    case 'DateEquals':
    case 'DateLessThan':
    case 'DateLessThanEquals':
    case 'DateGreaterThan':
    case 'DateGreaterThanEquals': {
      const a = dateOf(actual);
      const b = dateOf(wanted);
      if (a === undefined || b === undefined) return false;
      if (base === 'DateEquals') return a === b;
      if (base === 'DateLessThan') return a < b;
      if (base === 'DateLessThanEquals') return a <= b;
      if (base === 'DateGreaterThan') return a > b;
      return a >= b;
    }
    default:
      return undefined;
  }
}

const NEGATED: Record<string, string> = {
  StringNotEquals: 'StringEquals',
  StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
  StringNotLike: 'StringLike',
  DateNotEquals: 'DateEquals',
};

/** One operator block: every key in it must hold (AND); any listed value matches (OR). */
function operatorHolds(op: string, block: Record<string, Json>, session: FakeSession, now: Date, roleId: string, variables: boolean): boolean {
  const { set, base, ifExists } = splitOperator(op);
  for (const [key, wantedRaw] of Object.entries(block)) {
    const wanted = asList(wantedRaw);
    const actual = contextValue(session, key, now, roleId);
    if (base === 'Null') {
      const wantAbsent = wanted.some((w) => String(w) === 'true');
      if ((actual === undefined) !== wantAbsent) return false;
      continue;
    }
    if (actual === undefined) {
      // Missing key: IfExists and negated operators hold, ForAllValues holds vacuously, the rest fail.
      if (ifExists || NEGATED[base] !== undefined || set === 'ForAllValues') continue;
      return false;
    }
    const positive = NEGATED[base] ?? base;
    const one = (a: string) => {
      const hit = wanted.some((w) => compare(positive, a, w, variables) === true);
      return NEGATED[base] !== undefined ? !hit : hit;
    };
    if (compare(positive, actual[0]!, wanted[0] ?? '', variables) === undefined) return false; // operator the fake does not evaluate
    const holds = set === 'ForAllValues' ? actual.every(one) : actual.some(one);
    if (!holds) return false;
  }
  return true;
}

function actionMatches(statement: Statement, action: string | undefined): boolean {
  if (action === undefined) return true;
  if (statement.Action !== undefined) return asList(statement.Action).some((p) => typeof p === 'string' && globMatch(p, action, true));
  if (statement.NotAction !== undefined) return !asList(statement.NotAction).some((p) => typeof p === 'string' && globMatch(p, action, true));
  return false;
}

/**
 * Does any Deny statement in these documents apply to the session? Resource
 * elements are not evaluated (revocation statements use "*"); Allow
 * statements are ignored, so everything not denied is allowed.
 */
export function deniedBy(documents: Iterable<[string, string]>, session: FakeSession, now: Date, roleId: string, action?: string): string | undefined {
  for (const [name, text] of documents) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      continue;
    }
    if (!isObject(doc)) continue;
    for (const s of asList(doc.Statement)) {
      if (!isObject(s) || s.Effect !== 'Deny' || !actionMatches(s, action)) continue;
      const condition = s.Condition;
      if (condition !== undefined && !isObject(condition)) continue;
      const variables = doc.Version === '2012-10-17';
      const holds = Object.entries(condition ?? {}).every(([op, block]) => isObject(block) && operatorHolds(op, block, session, now, roleId, variables));
      if (holds) return name;
    }
  }
  return undefined;
}

/**
 * Does the session's own session policy let it perform `action` on
 * `resource`? No session policy: yes (it then adds no limit). Otherwise a
 * matching Deny refuses, and a matching Allow (Action, Resource with IAM's
 * wildcards and, under Version 2012-10-17, its escapes; conditions as
 * `deniedBy` evaluates them) is needed, or a managed session policy, whose
 * text the fake does not know.
 */
export function sessionPolicyAllows(session: FakeSession, now: Date, roleId: string, action: string, resource: string): boolean {
  if (session.policy === undefined) return true;
  const doc = JSON.parse(session.policy) as Record<string, Json>;
  const variables = doc.Version === '2012-10-17';
  const applies = (s: Statement) => {
    if (!actionMatches(s, action)) return false;
    const resources = s.Resource !== undefined ? asList(s.Resource) : asList(s.NotResource);
    const hit = resources.some((r) => typeof r === 'string' && globMatch(r, resource, false, variables));
    if (s.Resource !== undefined ? !hit : hit) return false;
    const condition = s.Condition;
    return condition === undefined || (isObject(condition) && Object.entries(condition).every(([op, block]) => isObject(block) && operatorHolds(op, block, session, now, roleId, variables)));
  };
  const statements = asList(doc.Statement).filter(isObject);
  if (statements.some((s) => s.Effect === 'Deny' && applies(s))) return false;
  // Session policies' allows are united (inline and managed); the fake does not know a managed policy's text, so it allows.
  return session.policyArns.length > 0 || statements.some((s) => s.Effect === 'Allow' && applies(s));
}
