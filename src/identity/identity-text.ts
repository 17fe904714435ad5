/**
 * What may name an identity: the `sub` of a verified token, and the agent a
 * task is bound to at POST /v1/tasks. One rule for both, so a task can only be
 * bound to a subject some token could carry.
 *
 * Ill-formed UTF-16 (a lone surrogate) is refused because both database
 * drivers send it as U+FFFD: `agent-\ud800` would otherwise read and release
 * `agent-\ufffd`'s leases. Control, format (zero-width, bidi) and separator
 * characters are refused because they make two identities look alike in
 * logs, audit rows and consoles, or split a log line. Proved by
 * test/identity/hostile-tokens.test.ts and test/tasks/binding.test.ts.
 */

export const MAX_SUBJECT_LENGTH = 1024;

// Cc: controls (NUL, newline, C1); Cf: format (zero-width, bidi overrides and isolates, BOM); Zl, Zp: U+2028, U+2029.
const INVISIBLE_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/** Why `value` cannot name an identity (a short phrase safe to show), or undefined when it can. */
export function subjectProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return 'must be a non-empty string';
  if (value.length > MAX_SUBJECT_LENGTH) return `must be at most ${MAX_SUBJECT_LENGTH} characters`;
  if (!value.isWellFormed()) return 'must be well-formed Unicode (it holds a lone surrogate)';
  if (INVISIBLE_OR_CONTROL.test(value)) return 'must not contain control, zero-width, bidi or line-separator characters';
  return undefined;
}

/**
 * True when every string in a decoded JSON value, object keys included, is
 * well-formed Unicode. Walks with an explicit stack: a token's payload may nest
 * thousands of levels deep within its size limit.
 */
export function wellFormedThroughout(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === 'string') {
      if (!node.isWellFormed()) return false;
    } else if (Array.isArray(node)) {
      stack.push(...node);
    } else if (node !== null && typeof node === 'object') {
      for (const [key, child] of Object.entries(node)) {
        if (!key.isWellFormed()) return false;
        stack.push(child);
      }
    }
  }
  return true;
}
