/**
 * The session policy template: `{{task}}`, `{{lease}}` and `{{agent}}` filled
 * in per credential, each value kept literal.
 *
 * Invariant: no substituted value can widen the policy. IAM reads `*` and `?`
 * as wildcards and `${...}` as a policy variable in the places that take
 * variables (Resource, NotResource, and the values of String and Arn
 * condition operators, in a policy whose Version is 2012-10-17); there every
 * `*`, `?` and `$` of a value is written as IAM's escape `${*}`, `${?}`,
 * `${$}`. A placeholder anywhere else (Action, a Date or Numeric condition,
 * any policy of another Version, where IAM reads no escape) is refused when
 * the config loads. Proved by test/backends/aws-session-policy.test.ts and the
 * `agent-*` test in test/backends/aws-sts.test.ts.
 */

export interface TemplateValues {
  task: string;
  lease: string;
  agent: string;
}

const PLACEHOLDER = /\{\{(task|lease|agent)\}\}/g;
/** The Version in which IAM resolves policy variables, and so the escapes (earlier ones read `${*}` as text). */
export const VARIABLES_VERSION = '2012-10-17';
/** Condition operators whose values take policy variables: String* and Arn*, with set and IfExists forms. */
const VARIABLE_OPERATOR = /^(ForAnyValue:|ForAllValues:)?(String|Arn)[A-Za-z]*$/;

/** `*` → `${*}`, `?` → `${?}`, `$` → `${$}`: the value matches itself only. */
export const escapeIamValue = (value: string) => value.replace(/[*?$]/g, (c) => `\${${c}}`);

type Visit = (text: string, path: string, takesVariables: boolean) => string;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Rebuilds `node`, passing every string to `visit` with whether IAM would resolve policy variables there. */
function walk(node: unknown, path: string, takesVariables: boolean, visit: Visit): unknown {
  if (typeof node === 'string') return visit(node, path, takesVariables);
  if (Array.isArray(node)) return node.map((v, i) => walk(v, `${path}[${i}]`, takesVariables, visit));
  if (isObject(node)) return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v, `${path}.${k}`, takesVariables, visit)]));
  return node;
}

function walkStatement(statement: unknown, path: string, variables: boolean, visit: Visit): unknown {
  if (!isObject(statement)) return walk(statement, path, false, visit);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(statement)) {
    const at = `${path}.${key}`;
    if (key === 'Resource' || key === 'NotResource') out[key] = walk(value, at, variables, visit);
    else if (key === 'Condition' && isObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([op, block]) => [op, walk(block, `${at}.${op}`, variables && VARIABLE_OPERATOR.test(op), visit)]));
    } else out[key] = walk(value, at, false, visit);
  }
  return out;
}

function walkPolicy(template: Record<string, unknown>, visit: Visit): Record<string, unknown> {
  const variables = template.Version === VARIABLES_VERSION;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(template)) {
    if (key !== 'Statement') out[key] = walk(value, key, false, visit);
    else if (Array.isArray(value)) out[key] = value.map((s, i) => walkStatement(s, `Statement[${i}]`, variables, visit));
    else out[key] = walkStatement(value, 'Statement', variables, visit);
  }
  return out;
}

/** Where a template puts a placeholder IAM could not keep literal: one message per place (empty when none). */
export function misplacedPlaceholders(template: Record<string, unknown>): string[] {
  const problems: string[] = [];
  walkPolicy(template, (text, path, takesVariables) => {
    if (!takesVariables && new RegExp(PLACEHOLDER.source).test(text)) problems.push(path);
    return text;
  });
  if (problems.length === 0) return [];
  const versionHint = template.Version === VARIABLES_VERSION ? '' : ` and the policy must say Version: "${VARIABLES_VERSION}"`;
  return [
    `{{task}}, {{lease}} and {{agent}} may appear only in Resource, NotResource and String or Arn condition values${versionHint}, where IAM's escapes \${*}, \${?} and \${$} keep a value literal; found at ${problems.join(', ')}`,
  ];
}

/** The policy for one credential: placeholders filled in, each value escaped. The template must pass misplacedPlaceholders. */
export function renderSessionPolicy(template: Record<string, unknown>, values: TemplateValues): Record<string, unknown> {
  return walkPolicy(template, (text, path, takesVariables) =>
    text.replace(PLACEHOLDER, (_, key: keyof TemplateValues) => {
      // Config loading refuses this; a template that skipped it must not render a value IAM could read as syntax.
      if (!takesVariables) throw new Error(`session policy placeholder at ${path} is where IAM reads no escape`);
      return escapeIamValue(values[key]);
    }),
  );
}

/** Whole seconds, as IAM's Date operators read them. */
const isoSeconds = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The statement that ends a session at AWS once `until` has passed, whatever its DurationSeconds (at least 900). Kept small: STS packs it with the tags. */
export const boundStatement = (until: Date) => ({ Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateGreaterThan: { 'aws:CurrentTime': isoSeconds(until) } } });

/** Characters the bound adds to a session policy (the statement and its comma). */
export const BOUND_CHARS = JSON.stringify(boundStatement(new Date(0))).length + 1;

/**
 * The session policy that bounds a session to its lease: `policy` (a rendered
 * template) with the bound appended; without one, what the role allows
 * (`Allow * on *`, intersected with the role's own policies by AWS) and the
 * bound, or the bound alone when managed session policies (`policy_arns`)
 * already say what is allowed: AWS unions the allows of all session
 * policies, so an `Allow *` beside them would undo their limit. An explicit
 * Deny in any session policy holds whatever allows.
 */
export function boundedSessionPolicy(policy: Record<string, unknown> | undefined, until: Date, hasManagedPolicies: boolean): Record<string, unknown> {
  const bound = boundStatement(until);
  if (!policy) return { Version: VARIABLES_VERSION, Statement: hasManagedPolicies ? [bound] : [{ Effect: 'Allow', Action: '*', Resource: '*' }, bound] };
  const statements = Array.isArray(policy.Statement) ? policy.Statement : policy.Statement === undefined ? [] : [policy.Statement];
  return { ...policy, Statement: [...statements, bound] };
}
