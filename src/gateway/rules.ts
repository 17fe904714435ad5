import type { Route, Rule } from './config.js';

/**
 * The path a call names, made safe to match: the gateway refuses what could
 * mean one path to its rules and another to the upstream (an encoded slash,
 * backslash or dot, double encoding, a NUL, `.` and `..` segments, empty
 * segments, characters outside RFC 3986's path characters), then matches the
 * once-decoded path, which is what the upstream will read. The path is
 * forwarded as the agent sent it. Proved by test/gateway/hostile.test.ts.
 */
export function safePath(raw: string): { decoded: string } | { refused: string } {
  if (!/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/.test(raw)) return { refused: 'the path has characters a path may not carry' };
  if (/%(2f|5c|2e|25|00)/i.test(raw)) return { refused: 'the path encodes a slash, backslash, dot, percent sign or NUL' };
  if (/%(?![0-9a-f]{2})/i.test(raw)) return { refused: 'the path has a malformed percent-encoding' };
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return { refused: 'the path does not decode' };
  }
  const segments = decoded.split('/').slice(1);
  if (segments.some((s, i) => s === '.' || s === '..' || (s === '' && i < segments.length - 1))) return { refused: 'the path has empty, . or .. segments' };
  return { decoded };
}

const compiled = new WeakMap<Rule, RegExp>();

/** `**` any number of whole segments (a trailing `/**` matches the prefix itself too), `*` within one segment. */
function patternOf(rule: Rule): RegExp {
  let re = compiled.get(rule);
  if (!re) {
    const body = rule.path
      .split(/(\/\*\*(?=\/|$)|\*)/)
      .map((part) => (part === '/**' ? '(?:/.*)?' : part === '*' ? '[^/]*' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
      .join('');
    re = new RegExp(`^${body}$`);
    compiled.set(rule, re);
  }
  return re;
}

const matches = (rule: Rule, method: string, path: string) => (rule.method === '*' || rule.method === method) && patternOf(rule).test(path);
const describe = (kind: string, rule: Rule) => `${kind} ${rule.method} ${rule.path}`;

/** A route's decision on a call: the first deny rule that matches refuses it; otherwise it needs an allow rule. */
export function decideCall(route: Route, method: string, path: string): { allow: true; rule: string } | { allow: false; rule: string } {
  const denied = route.deny.find((r) => matches(r, method, path));
  if (denied) return { allow: false, rule: describe('deny', denied) };
  const allowed = route.allow.find((r) => matches(r, method, path));
  return allowed ? { allow: true, rule: describe('allow', allowed) } : { allow: false, rule: 'no allow rule matches' };
}
