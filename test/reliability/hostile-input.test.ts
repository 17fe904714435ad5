/**
 * Hostile input, property-based. fast-check drives every endpoint (the paths
 * of the live /openapi.json, the public routes and some unknown paths) with
 * generated methods, path parameters, query strings, headers, tokens and
 * bodies, against a broker over a real PostgreSQL database. For every
 * generated request:
 *
 * - no 5xx other than 503 (a dependency outage; none is expected here);
 * - every 4xx is application/problem+json with a string `code` (and the
 *   matching `status`), and echoes no secret: neither the bearer token sent
 *   nor any token or credential the test has seen;
 * - the app keeps answering /healthz;
 * - a rejected request changes no row: a 4xx leaves tasks, leases,
 *   approvals, agents, suspensions and the registry's generation exactly as
 *   they were (counts and contents) and adds audit rows only of the actions
 *   audited by design (`credential.denied`, `admin.revoke`,
 *   `policy.evaluated`); a 400, 401, 413 or 415 adds none;
 * - a /v1 request without valid credentials is refused (401, or 413 for a
 *   body over the limit, which is checked first) and nothing succeeds
 *   without credentials except the public routes.
 *
 * The agent registry's routes get, besides, a fixed table of hostile bodies
 * and names, each answered with the one status and code it pins; and an
 * agent's ceiling is held against role names that differ from its roles in
 * case, whitespace or look-alike letters, and against roles outside it.
 *
 * Then the real HTTP layer, served like `tasklease serve` serves it: a client
 * sending its headers slower than the header timeout is cut off, so is a
 * client trickling its body past the request timeout, and a 70 KiB body is
 * 413 problem+json with or without a Content-Length.
 *
 * Last, the console (HTML for people, not in /openapi.json), on a broker in
 * dev mode with signed-in people: its actions get malformed form bodies,
 * missing, forged and borrowed CSRF tokens, cross-site headers, and odd
 * path parameters (`:id`, `:name`), fixed and generated. None gets a 5xx or
 * changes a row; a forged action is 403, an odd path parameter 404.
 */
import { once } from 'node:events';
import { request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { serve } from '@hono/node-server';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { execRows } from '../../src/db/client.js';
import { outbox } from '../../src/db/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { startAwsFake, type AwsFake } from '../support/aws-fake.js';
import { ADMIN_STATIC_TOKEN, HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { consoleClient, consoleTables, devConsoleConfig } from '../console/support.js';

// ---------------------------------------------------------------------------
// The request model: plain data, so a shrunk counterexample reads as a request.

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'] as const;
type Method = (typeof METHODS)[number];

const PRINCIPALS = ['agent-1', 'agent-2', 'agent-special', 'agent-ceiling', 'orchestrator', 'orchestrator-2', 'admin', 'static-admin'] as const;
type Who = (typeof PRINCIPALS)[number];

type Auth =
  /** A valid token of `who`, with a scheme spelled `scheme` and trailing spaces. */
  | { kind: 'valid'; who: Who; scheme: string; trail: string }
  /** A valid JWT sent raw, without a scheme (what AWS SDKs do on the container-credentials route). */
  | { kind: 'raw'; who: Who }
  /** A valid token with one character changed. */
  | { kind: 'tampered'; who: Who; at: number }
  | { kind: 'none' }
  /** Any other Authorization header value. */
  | { kind: 'header'; value: string };

type Body = { kind: 'text'; text: string } | { kind: 'bytes'; before: string; bytes: number[]; after: string };

interface Req {
  /** The route template the request was made from (or 'unknown'). */
  route: string;
  method: Method;
  /** Path and query, as sent. */
  target: string;
  auth: Auth;
  /** null: no Content-Type header. */
  contentType: string | null;
  requestId: string | null;
  headers: [string, string][];
  body: Body | null;
}

/** A JSON fragment written as is (-0, 1e309, escaped lone surrogates, huge or deep literals). */
class Raw {
  constructor(readonly text: string) {}
  toJSON() {
    return `<raw ${this.text.length > 60 ? `${this.text.slice(0, 60)}… (${this.text.length} chars)` : this.text}>`;
  }
}

function toJson(v: unknown): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

function toForm(v: unknown): string {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Raw) return `value=${enc(typeof v === 'string' ? v : toJson(v))}`;
  return Object.entries(v)
    .map(([k, x]) => `${enc(k)}=${enc(typeof x === 'string' ? x : toJson(x))}`)
    .join('&');
}

/** encodeURIComponent, which throws on lone surrogates: those go raw. */
function enc(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return s;
  }
}

const DEEP_ARRAY = '['.repeat(10_000) + ']'.repeat(10_000);
const DEEP_OBJECT = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000);
const OVER_LIMIT = 70 * 1024;

// ---------------------------------------------------------------------------
// Arbitraries

/** Values no field should accept, or should accept only with care. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    new Raw('-0'),
    new Raw('1e308'),
    new Raw('-1e308'),
    new Raw('1e309'),
    new Raw('-1e309'),
    new Raw('1e-400'),
    new Raw('123456789012345678901234567890'),
    new Raw('9007199254740993'),
    new Raw('0.5'),
    new Raw('1.0'),
    new Raw('"\\u0000"'),
    new Raw('"a\\u0000b"'),
    new Raw('"\\ud800"'),
    new Raw('"x\\udfff"'),
    new Raw('"\\udc00\\ud800"'),
    new Raw('{"__proto__":{"admin":true}}'),
    new Raw('{"constructor":{"prototype":{"admin":true}}}'),
    new Raw('{"a":1,"a":2}'),
  ),
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    0,
    -1,
    1.5,
    2 ** 31,
    Number.MAX_SAFE_INTEGER + 2,
    -Number.MAX_VALUE,
    Number.MIN_VALUE,
    '',
    ' ',
    'a\u0000b',
    '\u0000',
    '\uD800',
    'x\uDC00y',
    '\u202e\u200b',
    '\r\n',
    '\u0085',
    '😀'.repeat(300),
    'a'.repeat(129),
    'a'.repeat(600),
    'a'.repeat(20_000),
    '../../etc/passwd',
    "'; drop table tasks; --",
    '%00',
    [],
    {},
    [[]],
    ['demo'],
    { subject: 'agent-1' },
  ),
  fc.constantFrom(
    new Raw(`[${'0,'.repeat(20_000)}0]`),
    new Raw(`[${'"demo",'.repeat(5_000)}"demo"]`),
    new Raw(`[${'0,'.repeat(40_000)}0]`),
    new Raw(DEEP_ARRAY.slice(0, 2_000) + DEEP_ARRAY.slice(-2_000)),
    new Raw(DEEP_ARRAY),
  ),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 3 }),
);

type Op =
  | { op: 'set'; at: number; value: unknown }
  | { op: 'drop'; at: number }
  | { op: 'extra'; at: number; key: string; value: unknown }
  | { op: 'wrap' }
  | { op: 'replace'; value: unknown };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: hostileValue }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('drop' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('extra' as const),
      at: fc.nat(),
      key: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'admin', 'status', 'id', 'lease', 'subject', ''), fc.string({ unit: 'binary', maxLength: 12 })),
      value: hostileValue,
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: 'wrap' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('replace' as const), value: hostileValue }) },
);

/** The paths of the objects (not arrays) inside `v`, root first. */
function objectPaths(v: unknown, path: string[] = []): string[][] {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Raw) return [];
  return [path, ...Object.entries(v).flatMap(([k, x]) => objectPaths(x, [...path, k]))];
}
function fieldPaths(v: unknown, path: string[] = []): string[][] {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Raw) return path.length ? [path] : [];
  return [...(path.length ? [path] : []), ...Object.entries(v).flatMap(([k, x]) => fieldPaths(x, [...path, k]))];
}
/** A copy of `v` with `fn` applied to the object at `path`. */
function at(v: unknown, path: string[], fn: (o: Record<string, unknown>) => void): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Raw) return v;
  const copy: Record<string, unknown> = { ...(v as Record<string, unknown>) };
  if (path.length === 0) fn(copy);
  else copy[path[0]!] = at(copy[path[0]!], path.slice(1), fn);
  return copy;
}

function mutate(base: unknown, ops: Op[]): unknown {
  let v = base;
  for (const o of ops) {
    if (o.op === 'wrap') v = [v];
    else if (o.op === 'replace') v = o.value;
    else if (o.op === 'extra') {
      const objs = objectPaths(v);
      if (objs.length) v = at(v, objs[o.at % objs.length]!, (obj) => Object.defineProperty(obj, o.key, { value: o.value, enumerable: true, writable: true, configurable: true }));
    } else {
      const fields = fieldPaths(v);
      if (!fields.length) continue;
      const p = fields[o.at % fields.length]!;
      const last = p[p.length - 1]!;
      v = at(v, p.slice(0, -1), (obj) => {
        if (o.op === 'drop') delete obj[last];
        else obj[last] = o.value;
      });
    }
  }
  return v;
}

/** Timestamps, valid and not, for issued_before / since. */
const timestamp = fc.oneof(
  fc.date({ noInvalidDate: true, min: new Date('1970-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z') }).map((d) => d.toISOString()),
  fc.constantFrom(
    '2024-02-30T00:00:00Z',
    '2023-02-29T00:00:00Z',
    '2024-02-29T00:00:00Z',
    '2024-13-01T00:00:00Z',
    '2024-01-01T24:00:00Z',
    '2024-01-01T23:59:60Z',
    '0000-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999999999+14:00',
    '1969-12-31T23:59:59-23:59',
    '+275760-09-13T00:00:00.000Z',
    '-271821-04-20T00:00:00.000Z',
    '2024-01-01',
    'now',
  ),
);

interface Fixtures {
  /** The last is agent-ceiling's: it lists roles outside that agent's ceiling (opened before it was registered). */
  tasks: string[];
  leases: string[];
  approvals: string[];
  /** A jwt credential issued to agent-1, for introspection. */
  credential: string;
  /** Agents a path may name: `target` (from the config, owned by orchestrator-2) and `ceiling` (through the API). */
  agents: string[];
  /** A suspension by rule of a subject nobody uses. */
  suspensions: string[];
}

/** Role names that look like `demo` (agent-ceiling's whole ceiling) and are not it: case, whitespace, other scripts, invisible marks. */
const LOOK_ALIKES = ['Demo', 'DEMO', ' demo', 'demo ', 'demo\t', 'de mo', 'd\u0435mo', '\u0501emo', '\uff44\uff45\uff4d\uff4f', 'demo\u200b', '\u200ddemo', 'de\u0301mo', 'demo\u0000', 'demo\ud800', ''];
/** Roles outside agent-ceiling's ceiling: configured ones, and one that is not. */
const OUTSIDE_CEILING = ['flaky', 'gated', 'special', 'reports', 'reports-gated', 'nope'];

const ROLE_NAMES = ['demo', 'flaky', 'special', 'gated', 'reports', 'reports-gated', 'nope', 'Demo', ' demo', 'd\u0435mo'];
/** Subjects the registry's generated bodies may name: none is a fixture's, so a generated agent or suspension disturbs no other request. */
const SPARE_SUBJECTS = ['agent-spare-1', 'agent-spare-2'];

/** Well-formed bodies (usually valid) per route, before mutation. */
function bodySamples(f: Fixtures): Record<string, fc.Arbitrary<unknown>> {
  const task = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...f.tasks) }, { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}$/) });
  const role = fc.constantFrom(...ROLE_NAMES);
  const reason = fc.oneof(fc.constantFrom('hostile input test', 'x'), fc.string({ minLength: 1, maxLength: 20 }));
  const someId = fc.oneof(fc.constantFrom(...f.approvals, ...f.leases), fc.uuid());
  const decide = fc.record({ reason });
  return {
    'POST /v1/credentials': fc.record({ task, role, ttl_seconds: fc.integer({ min: 1, max: 7200 }), approval: someId }, { requiredKeys: ['task', 'role'] }),
    'POST /v1/leases/{id}/renew': fc.record({ increment_seconds: fc.integer({ min: 1, max: 43_200 }) }, { requiredKeys: [] }),
    'POST /v1/tasks': fc.record(
      {
        external_id: fc.stringMatching(/^hostile-[a-z0-9]{1,12}$/),
        agent: fc.record({ issuer: fc.constant('test'), subject: fc.constantFrom('agent-1', 'agent-2', 'agent-x', 'agent-ceiling') }, { requiredKeys: ['subject'] }),
        roles: fc.array(role, { minLength: 1, maxLength: 3 }),
        ttl_seconds: fc.integer({ min: 1, max: 86_400 }),
        labels: fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ minLength: 1, maxLength: 8 }), { maxKeys: 3 }),
        max_leases: fc.integer({ min: 1, max: 100 }),
      },
      { requiredKeys: ['agent', 'roles', 'ttl_seconds'] },
    ),
    'POST /v1/tasks/{id}/complete': fc.record({ outcome: fc.constantFrom('success', 'failure', 'cancelled') }),
    'POST /v1/leases/{id}/revoke': fc.record({ reason }),
    'POST /v1/revocations': fc.record(
      { task, subject: fc.constantFrom('agent-1', 'agent-2', 'nobody'), role, issued_before: timestamp, reason },
      { requiredKeys: ['reason'] },
    ),
    'POST /v1/approvals/{id}/approve': decide,
    'POST /v1/approvals/{id}/deny': decide,
    'POST /v1/policy/evaluate': fc.record(
      {
        identity: fc.record(
          {
            issuer: fc.constantFrom('test', 'other'),
            subject: fc.constantFrom('agent-1', 'agent-2', 'someone'),
            claims: fc.oneof(
              fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
              fc.constant({ deep: new Raw(DEEP_ARRAY) }),
            ),
          },
          { requiredKeys: ['issuer', 'subject'] },
        ),
        task,
        role,
        ttl_seconds: fc.integer({ min: 1, max: 7200 }),
      },
      { requiredKeys: ['identity', 'task', 'role'] },
    ),
    'POST /v1/agents': fc.record(
      {
        name: fc.constantFrom('spare-1', 'spare-2', 'target', 'Spare', 'a'.repeat(64)),
        match: fc.oneof(
          fc.record({ issuer: fc.constantFrom('test', 'other'), subject: fc.constantFrom(...SPARE_SUBJECTS, 'agent-target') }),
          fc.record({ issuer: fc.constant('test'), subject_pattern: fc.constantFrom('agent-spare-.*', '(', '[', '*', 'a{2,1}', '\\', '(?<x') }),
        ),
        owner: fc.record(
          { name: fc.constantFrom('team-h', ''), contact: fc.constant('team-h@example.com'), principals: fc.constantFrom([], [{ issuer: 'test', subject: 'orchestrator-2' }], [{ issuer: 'nope', subject: 'x' }]) },
          { requiredKeys: ['name', 'contact'] },
        ),
        purpose: reason,
        roles: fc.array(role, { minLength: 1, maxLength: 3 }),
        labels: fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ minLength: 1, maxLength: 8 }), { maxKeys: 3 }),
      },
      { requiredKeys: ['name', 'match', 'owner', 'purpose', 'roles'] },
    ),
    'POST /v1/agents/{name}/suspend': fc.record({ reason }),
    'POST /v1/agents/{name}/resume': fc.record({ reason }),
    'POST /v1/suspensions': fc.record({
      match: fc.oneof(
        fc.record({ issuer: fc.constantFrom('test', 'other'), subject: fc.constantFrom(...SPARE_SUBJECTS) }),
        fc.record({ issuer: fc.constant('test'), subject_pattern: fc.constantFrom('agent-spare-.*', '(', '[', '*', 'a{2,1}', '\\', '(?<x') }),
        fc.record({ issuer: fc.constant('test'), claims: fc.constant({ x: 'y' }) }),
      ),
      reason,
    }),
    'POST /v1/suspensions/{id}/lift': fc.record({ reason }),
    'POST /v1/introspect': fc.record(
      {
        token: fc.oneof(fc.constant(f.credential), fc.string({ minLength: 1, maxLength: 40 })),
        token_type_hint: fc.constantFrom('access_token', 'refresh_token', ''),
      },
      { requiredKeys: ['token'] },
    ),
  };
}

/** Query values, valid and hostile, for the query parameters a route declares. */
function queryValue(f: Fixtures): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom('active', 'revoking', 'revoked', 'pending', 'approved', 'redeemed', 'demo', 'reports', 'agent-1', 'test/agent-1'),
    fc.constantFrom('1', '0', '-1', '100', '500', '501', '1e308', '9007199254740993', 'NaN', 'Infinity', '0x10', '1.5', ' 5', '', 'true', '[]'),
    fc.constantFrom(...f.tasks, ...f.leases, ...f.approvals),
    timestamp,
    fc.uuid(),
    fc.string({ unit: 'binary', maxLength: 30 }),
    fc.constantFrom('%00', '%zz', '%', '%ff', '\u0000', '\uD800', 'a'.repeat(700), 'x'.repeat(5_000)),
  );
}

/** Well-formed query strings (usually valid) per route, before mutation. */
function querySampleArbs(f: Fixtures): Record<string, fc.Arbitrary<Partial<Record<string, string>>>> {
  const limit = fc.integer({ min: 1, max: 500 }).map(String);
  const cursor = fc.oneof(fc.constantFrom(...f.leases, ...f.approvals), fc.uuid());
  return {
    'GET /v1/aws/container-credentials': fc.record(
      { task: fc.constantFrom(...f.tasks), role: fc.constantFrom('reports', 'reports-gated', 'demo', 'nope'), ttl_seconds: fc.integer({ min: 1, max: 7200 }).map(String) },
      { requiredKeys: ['task', 'role'] },
    ),
    'GET /v1/leases': fc.record(
      { status: fc.constantFrom('active', 'revoking', 'revoked'), task: fc.constantFrom(...f.tasks), subject: fc.constantFrom('agent-1', 'agent-2'), role: fc.constantFrom(...ROLE_NAMES), cursor, limit },
      { requiredKeys: [] },
    ),
    'GET /v1/audit': fc.record(
      { actor: fc.constantFrom('test/agent-1', 'test/admin'), action: fc.constantFrom('credential.issued', 'credential.denied'), target: fc.constantFrom(...f.tasks.map((t) => `task:${t}`)), since: timestamp, after: fc.nat().map(String), limit },
      { requiredKeys: [] },
    ),
    'GET /v1/approvals': fc.record({ status: fc.constantFrom('pending', 'approved', 'denied'), cursor, limit }, { requiredKeys: [] }),
    'GET /v1/agents': fc.record({ unused_roles: fc.constantFrom('true', 'false', 'TRUE', '1', '') }, { requiredKeys: [] }),
    // At most a second: an agent's own open task would hold the request that long.
    'GET /v1/tasks/{id}/closure': fc.record({ wait: fc.constantFrom('0', '1', '-1', '16', 'x', '') }, { requiredKeys: [] }),
  };
}

// ---------------------------------------------------------------------------
// The routes, read from the live app

interface Route {
  /** As in /openapi.json: `/v1/leases/{id}`. */
  path: string;
  method: Method;
  tags: string[];
  query: string[];
  /** The request body's media type, if the route takes one. */
  media: 'json' | 'form' | null;
  bodyKeys: string[];
  public: boolean;
}

const PUBLIC_PATHS = ['/healthz', '/readyz', '/metrics', '/.well-known/jwks.json', '/openapi.json'];
const UNKNOWN_PATHS = ['/', '/v1', '/v1/', '/v2/tasks', '/v1/unknown', '/v1/tasks/x/y/z', '//v1/tasks', '/V1/TASKS', '/healthz/', '/.env', '/admin', '/v1/leases/{id}/frobnicate', '/v1/{id}'];

async function readRoutes(t: TestBroker): Promise<Route[]> {
  const res = await t.broker.app.request('/openapi.json');
  expect(res.status).toBe(200);
  const doc = (await res.json()) as {
    paths: Record<string, Record<string, { tags?: string[]; parameters?: { name: string; in: string }[]; requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    components?: { schemas?: Record<string, unknown> };
  };
  const deref = (s: unknown): { properties?: Record<string, unknown> } => {
    const ref = (s as { $ref?: string } | undefined)?.$ref;
    return (ref ? doc.components?.schemas?.[ref.split('/').pop()!] : s) as { properties?: Record<string, unknown> };
  };
  const routes: Route[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const content = op.requestBody?.content ?? {};
      const media = content['application/json'] ? 'json' : content['application/x-www-form-urlencoded'] ? 'form' : null;
      const schema = media ? deref(Object.values(content)[0]?.schema) : undefined;
      routes.push({
        path,
        method: method.toUpperCase() as Method,
        tags: op.tags ?? [],
        query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
        media,
        bodyKeys: Object.keys(schema?.properties ?? {}),
        public: false,
      });
    }
  }
  for (const path of PUBLIC_PATHS) routes.push({ path, method: 'GET', tags: ['public'], query: [], media: null, bodyKeys: [], public: true });
  return routes;
}

/** Principals a route is meant for, from its tags. */
function intendedFor(route: Route): Who[] {
  const who = new Set<Who>();
  for (const tag of route.tags) {
    if (tag === 'agent') who.add('agent-1').add('agent-2').add('agent-ceiling');
    if (tag === 'orchestrator') who.add('orchestrator').add('orchestrator-2');
    if (tag === 'admin') who.add('admin').add('static-admin');
    if (tag === 'approver') who.add('admin').add('orchestrator');
    if (tag === 'system') who.add('agent-1').add('admin');
  }
  return who.size ? [...who] : [...PRINCIPALS];
}

// ---------------------------------------------------------------------------
// Request arbitrary

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json;charset=UTF-16',
  'application/json; charset=latin1',
  'application/json; charset="utf-8"; charset=ascii',
  'APPLICATION/JSON',
  'application/json ; foo=bar',
  'application/problem+json',
  'application/vnd.api+json',
  'application/jsonp',
  'application/json-seq',
  'text/plain',
  'text/plain; charset=utf-8',
  'text/json',
  'multipart/form-data; boundary=----hostile',
  'multipart/form-data',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'application/octet-stream',
  '*/*',
  '',
  ';',
  'application/',
];

const printable = (min: number, max: number) => fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: min, maxLength: max });
const tokenish = (min: number, max: number) => fc.stringMatching(new RegExp(`^[A-Za-z0-9._~+/=-]{${min},${max}}$`));

function authArb(route: Route, focus: boolean): fc.Arbitrary<Auth> {
  const intended = fc.constantFrom(...intendedFor(route));
  const anyone = fc.constantFrom(...PRINCIPALS);
  const scheme = fc.oneof({ weight: 6, arbitrary: fc.constant('Bearer ') }, { weight: 1, arbitrary: fc.constantFrom('bearer ', 'BEARER ', 'Bearer    ') });
  const trail = fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constant('   ') });
  if (focus) return fc.record({ kind: fc.constant('valid' as const), who: intended, scheme: fc.constant('Bearer '), trail: fc.constant('') });
  return fc.oneof(
    { weight: 12, arbitrary: fc.record({ kind: fc.constant('valid' as const), who: intended, scheme, trail }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('valid' as const), who: anyone, scheme, trail }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), who: anyone }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('tampered' as const), who: anyone, at: fc.nat() }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
    {
      weight: 3,
      arbitrary: fc
        .oneof(
          tokenish(16, 200).map((s) => `Bearer ${s}`),
          fc.tuple(tokenish(8, 40), tokenish(8, 40), tokenish(16, 60)).map(([a, b, c]) => `Bearer ${a}.${b}.${c}`),
          fc.constant(`Bearer ${'A'.repeat(20 * 1024)}`),
          fc.constant(`Bearer ${'eyJ'.padEnd(20 * 1024, 'x')}.e30.${'s'.repeat(40)}`),
          fc.constant(`Bearer ${'a'.repeat(16 * 1024)}`),
          fc.constant(`Bearer ${'a'.repeat(16 * 1024 + 1)}`),
          fc.constantFrom('Bearer', 'Bearer ', 'bearer', 'Basic dXNlcjpwYXNzd29yZA==', 'Token abcdefghijklmnop', 'Bearer a b', 'Bearer\tabcdefghijklmnopqrst', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.'),
          fc.constantFrom(
            // alg=none and HS256-with-a-guessable-key tokens naming privileged subjects
            'Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJ0ZXN0Iiwic3ViIjoiYWRtaW4ifQ.',
            'Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ0ZXN0Iiwic3ViIjoiYWRtaW4ifQ.c2lnbmF0dXJlLW5vdC12YWxpZA',
          ),
          printable(0, 300),
        )
        .map((value) => ({ kind: 'header' as const, value })),
    },
  );
}

function bodyArb(route: Route, samples: Record<string, fc.Arbitrary<unknown>>, focus: boolean): fc.Arbitrary<{ body: Body | null; natural: string | null }> {
  const sample = samples[`${route.method} ${route.path}`] ?? fc.record(Object.fromEntries(route.bodyKeys.map((k) => [k, hostileValue])), { requiredKeys: [] });
  const shaped = fc.tuple(
    sample,
    fc.oneof({ weight: 4, arbitrary: fc.constant([] as Op[]) }, { weight: focus ? 3 : 5, arbitrary: fc.array(opArb, { minLength: 1, maxLength: focus ? 1 : 3 }) }),
  );
  const natural = route.media === 'form' ? 'application/x-www-form-urlencoded' : 'application/json';
  const text = (s: string) => ({ body: { kind: 'text' as const, text: s }, natural });
  if (focus) return shaped.map(([base, ops]) => text(route.media === 'form' ? toForm(mutate(base, ops)) : toJson(mutate(base, ops))));
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant({ body: null, natural: null }) },
    { weight: 1, arbitrary: fc.constant(text('')) },
    { weight: 10, arbitrary: shaped.map(([base, ops]) => text(route.media === 'form' ? toForm(mutate(base, ops)) : toJson(mutate(base, ops)))) },
    { weight: 2, arbitrary: shaped.map(([base, ops]) => text(route.media === 'form' ? toJson(mutate(base, ops)) : toForm(mutate(base, ops)))) },
    { weight: 2, arbitrary: fc.jsonValue().map((v) => text(JSON.stringify(v))) },
    { weight: 1, arbitrary: fc.json().map(text) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map(text) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        DEEP_ARRAY,
        DEEP_OBJECT,
        `{"reason":${DEEP_ARRAY}}`,
        `{"identity":{"issuer":"test","subject":"agent-1","claims":{"x":${DEEP_ARRAY}}},"task":"t","role":"demo"}`,
        `{"reason":"${'a'.repeat(OVER_LIMIT)}"}`,
        `[${'0,'.repeat(40_000)}0]`,
        '{"reason":"x"',
        '{"reason":"x"}}',
        '{"reason":"x",}',
        "{'reason':'x'}",
        '\ufeff{"reason":"x"}',
        'null',
        '"x"',
        '1e309',
        '{"a":1}\u0000',
        `token=${'a'.repeat(OVER_LIMIT)}`,
        'token=%zz&token=%&token_type_hint=%00',
        'token=a&token=b&token=c',
        '------hostile\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc\r\n------hostile--\r\n',
        '------hostile\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc',
        '--x\r\n\r\n--x--',
      ).map(text),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom('', '{"reason":"', '{"outcome":"', '{"task":"', 'token='), fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 12 }), fc.constantFrom('', '"}', '"'))
        .map(([before, bytes, after]) => ({ body: { kind: 'bytes' as const, before, bytes, after }, natural })),
    },
  );
}

/**
 * Generated requests. `focus`: requests meant to get past authentication and
 * media-type checks (the intended principal, the route's own method and media
 * type, fixture ids, at most one change to a well-formed body), so that most
 * reach validation and the handlers.
 */
function reqArb(routes: Route[], f: Fixtures, focus = false): fc.Arbitrary<Req> {
  const samples = bodySamples(f);
  const fixtureId = fc.constantFrom(...f.tasks, ...f.leases, ...f.approvals);
  const hostileSegment = fc.oneof(
    fc.constantFrom('..', '.', '%00', '%2e%2e%2f', '%2e%2e', '%2F', '%', '%zz', '%ff', '%c0%af', '..%2f..%2fetc%2fpasswd', '', ' ', 'null', '0', '-1', '{id}', ';', '*', '😀', '\u202e', '\\..\\', '%u0000'),
    // Names that look like a registered agent's and are not it.
    fc.constantFrom('TARGET', 'target%00', 'target%20', '%20target', 't\u0430rget', 'target\u200b', 'tar%2Fget', 'a'.repeat(64), '%ed%a0%80'),
    fc.constantFrom('a'.repeat(65), 'a'.repeat(129), 'a'.repeat(10_000), `${'../'.repeat(20)}healthz`),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
  );
  /** A path parameter after `segment` (`leases`, `tasks`, `approvals`), and whether to percent-encode it. */
  const param = (segment: string) => {
    const own =
      segment === 'leases' ? f.leases : segment === 'tasks' ? f.tasks : segment === 'approvals' ? f.approvals : segment === 'agents' ? f.agents : segment === 'suspensions' ? f.suspensions : [];
    return fc.tuple(
      fc.oneof(
        { weight: own.length ? 6 : 0, arbitrary: fc.constantFrom(...own, 'none') },
        { weight: focus ? 0 : 3, arbitrary: fixtureId },
        { weight: 1, arbitrary: fc.uuid() },
        { weight: focus ? 1 : 4, arbitrary: hostileSegment },
      ),
      fc.boolean(),
    );
  };
  const qv = queryValue(f);
  const querySamples = querySampleArbs(f);

  const forRoute = (route: Route) => {
    const key = fc.oneof({ weight: 4, arbitrary: route.query.length ? fc.constantFrom(...route.query) : fc.constant('limit') }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 10 }) });
    const query = fc.oneof(
      { weight: focus ? 1 : 3, arbitrary: fc.constant('') },
      {
        weight: focus ? 12 : 6,
        arbitrary: fc
          .tuple(
            querySamples[`${route.method} ${route.path}`] ?? fc.record(Object.fromEntries(route.query.map((k) => [k, qv])), { requiredKeys: [] }),
            fc.oneof({ weight: focus ? 3 : 1, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.nat(), qv), { minLength: 1, maxLength: focus ? 1 : 2 }) }),
            fc.oneof({ weight: focus ? 3 : 1, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(key, qv), { minLength: 1, maxLength: focus ? 1 : 2 }) }),
          )
          .map(([sample, replace, extra]) => {
            const pairs = Object.entries(sample).filter((e): e is [string, string] => typeof e[1] === 'string');
            for (const [i, v] of replace) if (pairs.length) pairs[i % pairs.length] = [pairs[i % pairs.length]![0], v];
            const all = [...pairs, ...extra];
            return all.length ? `?${all.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')}` : '';
          }),
      },
      {
        weight: 3,
        arbitrary: fc
          .array(fc.tuple(key, qv, fc.boolean()), { maxLength: 8 })
          .map((pairs) => (pairs.length ? `?${pairs.map(([k, v, encoded]) => (encoded ? `${enc(k)}=${enc(v)}` : `${k}=${v}`)).join('&')}` : '')),
      },
      { weight: 1, arbitrary: fc.constantFrom(`?a=${'x'.repeat(100_000)}`, `?${'limit=1&'.repeat(5_000)}`, `?${'x&'.repeat(20_000)}`, '?%', '?=&=&', '?limit=%zz', '?status[]=active', '?status=active&status=revoked&status=nope', '?limit=1&limit=2&limit=1000', '??', '?#') },
    );
    const method = fc.oneof({ weight: 8, arbitrary: fc.constant(route.method) }, { weight: focus ? 0 : 2, arbitrary: fc.constantFrom(...METHODS) });
    const contentType = (natural: string | null) =>
      fc.oneof(
        { weight: 12, arbitrary: fc.constant(natural) },
        { weight: focus ? 0 : 1, arbitrary: fc.constant(null) },
        { weight: focus ? 0 : 3, arbitrary: fc.constantFrom(...CONTENT_TYPES) },
        { weight: focus ? 0 : 1, arbitrary: printable(0, 60) },
      );
    const requestId = fc.oneof(
      { weight: 3, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_=-]{1,40}$/) },
      { weight: 1, arbitrary: printable(0, 200) },
      { weight: 1, arbitrary: fc.constantFrom('a'.repeat(129), 'a'.repeat(128), '', ' ', '../../x', '<script>', 'x'.repeat(10_000)) },
    );
    const extraHeaders = fc.array(
      fc.oneof(
        fc.tuple(fc.constantFrom('x-forwarded-for', 'x-real-ip', 'forwarded'), fc.constantFrom('127.0.0.1', '::1', '10.0.0.1, 127.0.0.1', 'for=unknown')),
        fc.tuple(fc.constant('accept'), fc.constantFrom('*/*', 'application/xml', 'text/html', '', 'application/problem+json;q=0')),
        fc.tuple(fc.constantFrom('x-http-method-override', 'x-method-override'), fc.constantFrom(...METHODS)),
        fc.tuple(fc.constant('content-encoding'), fc.constantFrom('gzip', 'br', 'identity', 'x')),
        fc.tuple(fc.constantFrom('origin', 'cookie', 'x-tasklease-admin', 'x-original-url', 'x-rewrite-url'), fc.constantFrom('https://evil.example', 'admin=1', 'true', '/v1/leases', '/healthz')),
        fc.tuple(fc.stringMatching(/^x-[a-z0-9-]{1,20}$/), printable(0, 100)),
      ),
      { maxLength: 3 },
    );
    return fc
      .record({
        method,
        params: fc.tuple(...[...route.path.matchAll(/([^/]*)\/\{[^}]+\}/g)].map((m) => param(m[1]!))),
        query,
        auth: authArb(route, focus),
        body: bodyArb(route, samples, focus),
        requestId,
        headers: extraHeaders,
      })
      .chain((r) => contentType(r.body.natural).map((ct) => ({ ...r, contentType: ct })))
      .map((r): Req => {
        const params = [...r.params];
        const path = route.path.replace(/\{[^}]+\}/g, () => {
          const [value, encoded] = params.shift()!;
          return encoded ? enc(value) : value;
        });
        return { route: route.path, method: r.method, target: path + r.query, auth: r.auth, contentType: r.contentType, requestId: r.requestId, headers: r.headers, body: r.body.body };
      });
  };

  const unknown: Route = { path: '', method: 'GET', tags: [], query: ['limit'], media: 'json', bodyKeys: ['reason'], public: false };
  return fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...routes.filter((r) => !r.public)).chain(forRoute) },
    { weight: focus ? 0 : 2, arbitrary: fc.constantFrom(...routes.filter((r) => r.public)).chain(forRoute) },
    { weight: focus ? 0 : 1, arbitrary: fc.constantFrom(...UNKNOWN_PATHS).chain((path) => forRoute({ ...unknown, path }).map((r) => ({ ...r, route: 'unknown' }))) },
  );
}

// ---------------------------------------------------------------------------

describe('hostile input on postgres', () => {
  let database: TestDatabase;
  let aws: AwsFake;
  let t: TestBroker;
  let routes: Route[];
  let fixtures: Fixtures;
  /** Every secret the test has seen: tokens, credentials. No 4xx body or header may contain one. */
  const secrets = new Set<string>([ADMIN_STATIC_TOKEN]);
  const statuses = new Map<string, number>();
  const codes = new Map<string, number>();
  const byRoute = new Map<string, Map<number, number>>();
  const bump = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);

  const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
  const ROLE_ARN = 'arn:aws:iam::123456789012:role/tasklease-hostile';
  const OWNER = { name: 'team-h', contact: 'team-h@example.com', principals: [{ issuer: 'test', subject: 'orchestrator-2' }] };
  /** agent-ceiling's task: it lists roles outside that agent's ceiling, having been opened before the agent was registered. */
  let ceilingTask: string;

  beforeAll(async () => {
    const clock = createManualClock(new Date());
    aws = await startAwsFake({ roles: [{ arn: ROLE_ARN, maxSessionDuration: 7200 }], clock });
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, {
      clock,
      awsCredentials: aws.credentials,
      config: {
        backends: { aws: { type: 'aws-sts', region: 'us-east-1', sts_endpoint: aws.url, iam_endpoint: aws.url, revocation: {} } },
        roles: [
          ...HARNESS_ROLES,
          { name: 'gated', backend: 'local', allow: AGENTS, requires_approval: true, approvers: [{ issuer: 'test', subject: 'orchestrator' }] },
          { name: 'reports', backend: 'aws', ttl: '15m', max_ttl: '1h', allow: AGENTS, aws: { role_arn: ROLE_ARN } },
          { name: 'reports-gated', backend: 'aws', ttl: '15m', max_ttl: '1h', allow: AGENTS, aws: { role_arn: ROLE_ARN }, requires_approval: true },
        ],
        // Registration not required: the fixtures' agent-1 and agent-2 stay unregistered. `target` is there to be named in paths.
        agents: {
          require_registration: false,
          register: [{ name: 'target', match: { issuer: 'test', subject: 'agent-target' }, owner: OWNER, purpose: 'named by hostile paths', roles: ['demo'] }],
        },
      },
    });
    for (const who of PRINCIPALS) if (who !== 'static-admin') secrets.add(await t.tokenFor(who));

    // Fixtures the generated requests name: tasks of two orchestrators, leases, pending approvals.
    const ok = async (res: { status: number; json: any }, status: number) => {
      expect(res.status, JSON.stringify(res.json)).toBe(status);
      return res.json;
    };
    const tasks: string[] = [];
    for (const [by, agent] of [['orchestrator', 'agent-1'], ['orchestrator', 'agent-1'], ['orchestrator', 'agent-2'], ['orchestrator-2', 'agent-2']] as const) {
      const body = await ok(await t.call('POST', '/v1/tasks', { subject: by }, { agent: { subject: agent }, roles: ['demo', 'flaky', 'gated', 'reports', 'reports-gated'], ttl_seconds: 86_400 }), 201);
      tasks.push(body.task.id);
    }
    const leases: string[] = [];
    let credential = '';
    for (const [agent, i, role] of [['agent-1', 0, 'demo'], ['agent-1', 1, 'flaky'], ['agent-2', 2, 'demo'], ['agent-2', 3, 'reports']] as const) {
      const body = await ok(await t.call('POST', '/v1/credentials', { subject: agent }, { task: tasks[i], role }), 201);
      leases.push(body.lease.id);
      for (const v of Object.values(body.credentials as Record<string, unknown>)) if (typeof v === 'string' && v.length >= 16) secrets.add(v);
      if (role === 'demo' && !credential) credential = body.credentials.token;
    }
    const approvals: string[] = [];
    for (const [agent, i, role] of [['agent-1', 0, 'gated'], ['agent-1', 1, 'gated'], ['agent-2', 2, 'reports-gated']] as const) {
      const body = await ok(await t.call('POST', '/v1/credentials', { subject: agent }, { task: tasks[i], role }), 202);
      approvals.push(body.approval.id);
    }
    // agent-ceiling: its task is opened while it is unregistered, then it is registered with the ceiling [demo].
    ceilingTask = (await ok(await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-ceiling' }, roles: ['demo', ...OUTSIDE_CEILING.slice(0, 5)], ttl_seconds: 86_400 }), 201)).task.id;
    tasks.push(ceilingTask);
    await ok(await t.call('POST', '/v1/agents', { subject: 'admin' }, { name: 'ceiling', match: { issuer: 'test', subject: 'agent-ceiling' }, owner: OWNER, purpose: 'held to its ceiling', roles: ['demo'] }), 201);
    const rule = await ok(await t.call('POST', '/v1/suspensions', { subject: 'admin' }, { match: { issuer: 'test', subject: 'agent-ruled' }, reason: 'a fixture' }), 201);
    fixtures = { tasks, leases, approvals, credential, agents: ['target', 'ceiling'], suspensions: [rule.suspension.id] };
    routes = await readRoutes(t);
  });

  afterAll(async () => {
    await database?.drop();
    await aws?.close();
  });

  interface Snapshot {
    tasks: number;
    tasks_md5: string;
    leases: number;
    leases_md5: string;
    approvals: number;
    approvals_md5: string;
    agents: number;
    agents_md5: string;
    suspensions: number;
    suspensions_md5: string;
    registry_generation: string;
    audit_seq: string;
  }
  const snapshot = async (): Promise<Snapshot> =>
    (
      await execRows<Snapshot>(
        database.db,
        sql`select
          (select count(*)::int from tasks) as tasks,
          (select md5(coalesce(string_agg(x::text, '|' order by x.id), '')) from tasks x) as tasks_md5,
          (select count(*)::int from leases) as leases,
          (select md5(coalesce(string_agg(x::text, '|' order by x.id), '')) from leases x) as leases_md5,
          (select count(*)::int from approvals) as approvals,
          (select md5(coalesce(string_agg(x::text, '|' order by x.id), '')) from approvals x) as approvals_md5,
          (select count(*)::int from agents) as agents,
          (select md5(coalesce(string_agg(x::text, '|' order by x.name), '')) from agents x) as agents_md5,
          (select count(*)::int from agent_suspensions) as suspensions,
          (select md5(coalesce(string_agg(x::text, '|' order by x.id), '')) from agent_suspensions x) as suspensions_md5,
          (select generation::text from registry_state) as registry_generation,
          (select coalesce(max(seq), 0)::text from audit_events) as audit_seq`,
      )
    )[0]!;

  async function tokenOf(who: Who): Promise<string> {
    return who === 'static-admin' ? ADMIN_STATIC_TOKEN : t.tokenFor(who);
  }

  /** The Authorization header for `auth`, and whether it carries valid credentials. */
  async function authorization(auth: Auth): Promise<{ header: string | null; sent: string | null; valid: boolean | 'raw' }> {
    switch (auth.kind) {
      case 'none':
        return { header: null, sent: null, valid: false };
      case 'valid': {
        const token = await tokenOf(auth.who);
        return { header: `${auth.scheme}${token}${auth.trail}`, sent: token, valid: true };
      }
      case 'raw': {
        const token = await tokenOf(auth.who);
        return { header: token, sent: token, valid: auth.who === 'static-admin' ? false : 'raw' };
      }
      case 'tampered': {
        const token = await tokenOf(auth.who);
        // Inside the signature (or anywhere in a static token), never its last character, whose spare bits may not count.
        const sig = token.lastIndexOf('.') + 1;
        const i = sig + (auth.at % Math.max(1, token.length - sig - 1));
        const bad = token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
        return { header: `Bearer ${bad}`, sent: bad, valid: false };
      }
      case 'header': {
        const m = /^\S+\s+(.*)$/.exec(auth.value);
        const sent = (m?.[1] ?? auth.value).trim();
        return { header: auth.value, sent: sent.length >= 16 ? sent : null, valid: false };
      }
    }
  }

  function bytesOf(body: Body): Uint8Array<ArrayBuffer> {
    const te = new TextEncoder();
    if (body.kind === 'text') return Uint8Array.from(te.encode(body.text));
    return Uint8Array.from([...te.encode(body.before), ...body.bytes, ...te.encode(body.after)]);
  }

  const ALLOWED_4XX_AUDIT = new Set(['credential.denied', 'admin.revoke', 'policy.evaluated']);
  const NO_ROW_STATUSES = new Set([400, 401, 413, 415]);

  /** Sends one generated request and checks every invariant on its answer. */
  async function exercise(req: Req): Promise<void> {
    await send(req);
  }

  /** `exercise`, returning the answer's status and problem code (undefined when the request could not be sent). */
  async function send(req: Req): Promise<{ status: number; code: unknown } | undefined> {
    const { header, sent, valid } = await authorization(req.auth);
    const headers = new Headers();
    let request: Request;
    try {
      if (header !== null) headers.set('authorization', header);
      if (req.contentType !== null) headers.set('content-type', req.contentType);
      if (req.requestId !== null) headers.set('x-request-id', req.requestId);
      for (const [k, v] of req.headers) headers.append(k, v);
      const body = req.body && req.method !== 'GET' && req.method !== 'HEAD' ? bytesOf(req.body) : undefined;
      request = new Request(`http://localhost${req.target}`, { method: req.method, headers, body });
    } catch {
      // Not expressible as an HTTP request (the client refuses it): nothing reaches the server.
      bump(statuses, 'unsendable');
      return undefined;
    }
    const url = new URL(request.url);
    const before = await snapshot();
    const res = await t.broker.app.request(request);
    const text = await res.text();
    const where = `${req.method} ${req.target.length > 200 ? `${req.target.slice(0, 200)}…` : req.target} -> ${res.status} ${text.slice(0, 300)}`;

    bump(statuses, String(res.status));
    const routeKey = req.route === 'unknown' ? 'unknown' : `${req.method} ${req.route}`;
    if (!byRoute.has(routeKey)) byRoute.set(routeKey, new Map());
    bump(byRoute.get(routeKey)!, res.status);

    // No 5xx but a dependency outage.
    if (res.status >= 500) expect(res.status, where).toBe(503);

    // Every 4xx is a problem document with a code, echoing no secret.
    if (res.status >= 400 && res.status < 500) {
      expect(res.headers.get('content-type'), where).toMatch(/^application\/problem\+json/);
      if (req.method !== 'HEAD') {
        let problem: { code?: unknown; status?: unknown };
        try {
          problem = JSON.parse(text) as typeof problem;
        } catch {
          throw new Error(`4xx body is not JSON: ${where}`);
        }
        expect(typeof problem.code, where).toBe('string');
        expect(problem.status, where).toBe(res.status);
        bump(codes, `${res.status} ${String(problem.code)}`);
      }
      const everything = text + JSON.stringify([...res.headers]);
      if (sent) expect(everything.includes(sent), `the bearer token sent is echoed: ${where}`).toBe(false);
      for (const s of secrets) expect(everything.includes(s), `a secret is echoed: ${where}`).toBe(false);
    }

    // Without valid credentials, /v1 is refused and only the public routes answer.
    if (valid === false) {
      if (url.pathname.startsWith('/v1/')) expect([401, 413], where).toContain(res.status);
      if (res.status < 400) expect(PUBLIC_PATHS, where).toContain(url.pathname);
    }

    // A rejected request changes no row.
    if (res.status >= 400 && res.status < 500) {
      const after = await snapshot();
      const { audit_seq: seqBefore, ...rowsBefore } = before;
      const { audit_seq: _seqAfter, ...rowsAfter } = after;
      expect(rowsAfter, `tasks/leases/approvals/agents/suspensions changed by a rejected request: ${where}`).toEqual(rowsBefore);
      const added = (await execRows<{ action: string }>(database.db, sql`select action from audit_events where seq > ${Number(seqBefore)} order by seq`)).map((r) => r.action);
      if (NO_ROW_STATUSES.has(res.status)) expect(added, `audit rows added by a ${res.status}: ${where}`).toEqual([]);
      else expect(added.filter((a) => !ALLOWED_4XX_AUDIT.has(a)), `unexpected audit rows added by a ${res.status}: ${where}`).toEqual([]);
    }

    // Credentials handed out become secrets no later refusal may echo.
    if (res.status < 300 && text.startsWith('{')) {
      const json = JSON.parse(text) as { credentials?: Record<string, unknown>; SecretAccessKey?: unknown; Token?: unknown };
      for (const v of [...Object.values(json.credentials ?? {}), json.SecretAccessKey, json.Token]) if (typeof v === 'string' && v.length >= 16) secrets.add(v);
    }

    // The app is still up.
    const health = await t.broker.app.request('/healthz');
    expect(health.status, `healthz after ${where}`).toBe(200);
    let code: unknown;
    try {
      code = (JSON.parse(text) as { code?: unknown }).code;
    } catch {
      code = undefined;
    }
    return { status: res.status, code };
  }

  function report(title: string) {
    const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
    console.log(`[hostile-input] ${title}\n  statuses: ${JSON.stringify(sorted(statuses))}\n  codes: ${JSON.stringify(sorted(codes))}`);
    console.log(
      `  by route:\n${[...byRoute]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([r, m]) => `    ${r}: ${JSON.stringify(Object.fromEntries([...m].sort(([a], [b]) => a - b)))}`)
        .join('\n')}`,
    );
    statuses.clear();
    codes.clear();
    byRoute.clear();
  }

  it('reads every route from /openapi.json', () => {
    const paths = new Set(routes.filter((r) => !r.public).map((r) => `${r.method} ${r.path}`));
    // The ones the body generators know; a new route gets the generic generator, so this only guards the reading.
    for (const known of ['POST /v1/credentials', 'POST /v1/tasks', 'GET /v1/leases/{id}', 'POST /v1/introspect', 'GET /v1/aws/container-credentials', 'POST /v1/policy/evaluate', 'POST /v1/agents', 'POST /v1/suspensions']) expect(paths).toContain(known);
    expect(paths.size).toBeGreaterThanOrEqual(18);
  });

  // -------------------------------------------------------------------------
  // The agent registry and the ceiling: fixed tables, each answer pinned.

  const VALIDATION: [number, string] = [400, 'validation_failed'];
  const UNREADABLE: [number, string] = [400, 'bad_request'];
  /** Role and issuer names as the routes accept them (src/http/schemas.ts NameParam): anything else is malformed. */
  const wellFormedName = (r: string) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(r);

  /** Sends `body` (a string as is, anything else as JSON) as `who`, and pins the answer's status and code. */
  async function pinned(method: Method, route: string, target: string, body: unknown, want: [number, string], who: Who = 'admin') {
    const text = body === undefined ? null : typeof body === 'string' ? body : toJson(body);
    const got = await send({
      route,
      method,
      target,
      auth: { kind: 'valid', who, scheme: 'Bearer ', trail: '' },
      contentType: text === null ? null : 'application/json',
      requestId: null,
      headers: [],
      body: text === null ? null : { kind: 'text', text },
    });
    const shown = text === null ? '' : ` ${text.length > 120 ? `${text.slice(0, 120)}…` : text}`;
    expect.soft({ status: got?.status, code: got?.code }, `${who}: ${method} ${target.slice(0, 120)}${shown}`).toEqual({ status: want[0], code: want[1] });
    return got;
  }

  it('the agent registry answers hostile bodies and names with a pinned 4xx, and registers or suspends nothing', async () => {
    const before = await snapshot();
    const definition = (patch: Record<string, unknown> = {}) => ({
      name: 'hostile',
      match: { issuer: 'test', subject: 'agent-hostile' },
      owner: { name: 'team-h', contact: 'team-h@example.com' },
      purpose: 'hostile input',
      roles: ['demo'],
      ...patch,
    });
    const matching = (match: Record<string, unknown>) => definition({ match: { issuer: 'test', ...match } });
    const owned = (owner: Record<string, unknown>) => definition({ owner: { name: 'team-h', contact: 'team-h@example.com', ...owner } });
    const agents: [unknown, [number, string]][] = [
      // Malformed JSON, and JSON of the wrong shape.
      ['{', UNREADABLE],
      ['{"name":"hostile",}', UNREADABLE],
      [`${toJson(definition())}}`, UNREADABLE],
      ['[]', VALIDATION],
      ['null', VALIDATION],
      ['"hostile"', VALIDATION],
      [`{"__proto__":{"roles":["flaky"]},${toJson(definition()).slice(1)}`, VALIDATION],
      // Wrong types.
      [definition({ name: 1 }), VALIDATION],
      [definition({ name: null }), VALIDATION],
      [definition({ match: 'agent-hostile' }), VALIDATION],
      [definition({ match: [] }), VALIDATION],
      [definition({ owner: 'team-h' }), VALIDATION],
      [owned({ principals: {} }), VALIDATION],
      [definition({ purpose: 5 }), VALIDATION],
      [definition({ roles: 'demo' }), VALIDATION],
      [definition({ roles: [1] }), VALIDATION],
      [definition({ roles: [['demo']] }), VALIDATION],
      [definition({ roles: [] }), VALIDATION],
      [definition({ labels: ['a'] }), VALIDATION],
      [definition({ labels: { a: 1 } }), VALIDATION],
      [matching({ subject: 1 }), VALIDATION],
      [matching({ claims: { x: { y: 1 } } }), VALIDATION],
      [definition({ admin: true }), VALIDATION],
      [matching({ subject: 'agent-hostile', admin: true }), VALIDATION],
      // Huge strings and lists.
      [definition({ name: 'a'.repeat(20_000) }), VALIDATION],
      [definition({ purpose: 'a'.repeat(20_000) }), VALIDATION],
      [owned({ name: 'a'.repeat(129) }), VALIDATION],
      [owned({ contact: 'a'.repeat(257) }), VALIDATION],
      [definition({ labels: { a: 'a'.repeat(257) } }), VALIDATION],
      [definition({ roles: Array.from({ length: 257 }, () => 'demo') }), VALIDATION],
      [matching({ subject: 'a'.repeat(20_000) }), VALIDATION],
      [matching({ subject_pattern: `agent-${'a'.repeat(20_000)}` }), VALIDATION],
      [owned({ principals: [{ issuer: 'test', subject: 'a'.repeat(20_000) }] }), VALIDATION],
      // Control and invisible characters.
      [definition({ name: 'hostile\u0000' }), VALIDATION],
      [definition({ purpose: 'a\u0000b' }), VALIDATION],
      [definition({ purpose: 'line\r\nbreak' }), VALIDATION],
      [owned({ name: '\u0085' }), VALIDATION],
      [definition({ labels: { a: 'x\u0000' } }), VALIDATION],
      [definition({ labels: { a: 'x\u0007' } }), VALIDATION],
      [matching({ subject: 'agent-\u0000' }), VALIDATION],
      [matching({ subject: 'agent-\u202ehostile' }), VALIDATION],
      [matching({ subject: 'agent-host\u200bile' }), VALIDATION],
      [matching({ subject_pattern: 'agent-\u0000.*' }), VALIDATION],
      [matching({ claims: { x: 'a\u0000' } }), VALIDATION],
      [matching({ subject: 'agent-hostile', claims: { 'x\u0000': 'a' } }), VALIDATION],
      [owned({ principals: [{ issuer: 'test', subject: 'owner\u0000' }] }), VALIDATION],
      // Lone surrogates.
      [definition({ name: 'hostile\ud800' }), VALIDATION],
      [definition({ purpose: '\ud800' }), VALIDATION],
      [definition({ labels: { a: '\udc00' } }), VALIDATION],
      [definition({ labels: { '\ud800': 'a' } }), VALIDATION],
      [matching({ subject: 'agent-\ud800' }), VALIDATION],
      [matching({ subject_pattern: 'agent-\ud800' }), VALIDATION],
      [matching({ claims: { x: '\udfff' } }), VALIDATION],
      [matching({ subject: 'agent-hostile', claims: { '\ud800': 'a' } }), VALIDATION],
      [owned({ principals: [{ issuer: 'test', subject: '\ud800' }] }), VALIDATION],
      // Names: over-long, odd characters, look-alikes.
      ...['a'.repeat(64), 'Hostile', 'host ile', ' hostile', '-hostile', 'hostile/x', '../hostile', '\uff48ostile', 'h\u043estile', ''].map((name): [unknown, [number, string]] => [definition({ name }), VALIDATION]),
      // Patterns that are not valid regular expressions.
      ...['(', '[', '*', 'a{2,1}', '\\', '(?<x', 'a)'].map((p): [unknown, [number, string]] => [matching({ subject_pattern: p }), VALIDATION]),
      [matching({ subject: 'agent-hostile', claim_patterns: { x: '(' } }), VALIDATION],
      // Rules of the wrong shape, or naming what is not configured.
      [matching({}), VALIDATION],
      [matching({ subject: 'agent-hostile', subject_pattern: 'agent-.*' }), VALIDATION],
      [definition({ match: { issuer: 'nope', subject: 'agent-hostile' } }), VALIDATION],
      [definition({ match: { issuer: 'Test', subject: 'agent-hostile' } }), VALIDATION],
      [owned({ principals: [{ issuer: 'nope', subject: 'owner' }] }), VALIDATION],
      // A ceiling of role names that are not the configured ones.
      ...LOOK_ALIKES.map((role): [unknown, [number, string]] => [definition({ roles: [role] }), VALIDATION]),
      [definition({ roles: ['nope'] }), [400, 'unknown_role']],
      [definition({ roles: ['demo', 'nope'] }), [400, 'unknown_role']],
      // Taken names, and identities another agent already claims.
      [definition({ name: 'target' }), [409, 'agent_exists']],
      [definition({ name: 'ceiling' }), [409, 'agent_exists']],
      [matching({ subject: 'agent-target' }), [409, 'agent_ambiguous']],
      [matching({ subject: 'agent-ceiling' }), [409, 'agent_ambiguous']],
      [matching({ subject_pattern: 'agent-.*' }), [409, 'agent_ambiguous']],
      [matching({ subject_pattern: '.*' }), [409, 'agent_ambiguous']],
    ];
    for (const [body, want] of agents) await pinned('POST', '/v1/agents', '/v1/agents', body, want);
    for (const query of ['unused_roles=yes', 'unused_roles=', 'unused_roles=%00', 'unused_roles=TRUE']) await pinned('GET', '/v1/agents', `/v1/agents?${query}`, undefined, VALIDATION);

    // Names in paths: too long is malformed; anything else that is not an agent's name is not found (by an admin), or not
    // the caller's (by anyone else, the target's owner included), whatever it looks like.
    const odd = ['TARGET', 'Target', 'target%00', 'target%20', '%20target', 't%D0%B0rget', 'target%E2%80%8B', 'tar%2Fget', '%2e%2e%2ftarget', '%ff', '%ed%a0%80', '%F0%9F%98%80', 'a'.repeat(64), '*', 'target;'];
    const reason = { reason: 'hostile input' };
    for (const [method, suffix, body] of [
      ['GET', '', undefined],
      ['POST', '/suspend', reason],
      ['POST', '/resume', reason],
      ['DELETE', '', undefined],
    ] as const) {
      const route = `/v1/agents/{name}${suffix}`;
      for (const name of odd) {
        await pinned(method, route, `/v1/agents/${name}${suffix}`, body, [404, 'agent_not_found']);
        if (method !== 'DELETE') for (const who of ['agent-1', 'orchestrator-2'] as const) await pinned(method, route, `/v1/agents/${name}${suffix}`, body, [403, 'not_agent_owner'], who);
        else await pinned(method, route, `/v1/agents/${name}${suffix}`, body, [403, 'not_admin'], 'orchestrator-2');
      }
      for (const name of ['a'.repeat(65), 'a'.repeat(10_000)]) await pinned(method, route, `/v1/agents/${name}${suffix}`, body, VALIDATION);
    }
    await pinned('DELETE', '/v1/agents/{name}', '/v1/agents/target', undefined, [409, 'agent_from_config']);

    // Suspend and resume bodies, against an agent that exists.
    const reasons: [unknown, [number, string]][] = [
      ['{', UNREADABLE],
      ['{"reason":"x",}', UNREADABLE],
      ['{"reason":"x"', UNREADABLE],
      ['[]', VALIDATION],
      ['null', VALIDATION],
      [{}, VALIDATION],
      [{ reason: '' }, VALIDATION],
      [{ reason: 1 }, VALIDATION],
      [{ reason: ['x'] }, VALIDATION],
      [{ reason: null }, VALIDATION],
      [{ reason: 'a'.repeat(501) }, VALIDATION],
      [{ reason: 'a'.repeat(20_000) }, VALIDATION],
      [{ reason: 'x\u0000' }, VALIDATION],
      [{ reason: 'line\nbreak' }, VALIDATION],
      [{ reason: '\ud800' }, VALIDATION],
      [{ reason: 'x\udfffy' }, VALIDATION],
      [{ reason: 'x', admin: true }, VALIDATION],
      [{ reason: 'x', until: '2100-01-01T00:00:00Z' }, VALIDATION],
    ];
    for (const action of ['suspend', 'resume']) {
      for (const [body, want] of reasons) {
        await pinned('POST', `/v1/agents/{name}/${action}`, `/v1/agents/target/${action}`, body, want);
        await pinned('POST', `/v1/agents/{name}/${action}`, `/v1/agents/target/${action}`, body, want, 'orchestrator-2');
      }
    }

    // Suspensions by rule.
    const rule = (match: unknown, extra: Record<string, unknown> = {}) => ({ match, reason: 'hostile input', ...extra });
    const rules: [unknown, [number, string]][] = [
      ['{', UNREADABLE],
      ['{"match":{"issuer":"test","subject":"agent-hostile"},"reason":"x",}', UNREADABLE],
      ['[]', VALIDATION],
      [{}, VALIDATION],
      [rule('agent-hostile'), VALIDATION],
      [rule([]), VALIDATION],
      [rule({}), VALIDATION],
      [rule({ issuer: 'test' }), VALIDATION],
      [rule({ issuer: 'nope', subject: 'agent-hostile' }), VALIDATION],
      [rule({ issuer: 'TEST', subject: 'agent-hostile' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile', subject_pattern: 'agent-.*' }), VALIDATION],
      [rule({ issuer: 'test', claims: { x: 'y' } }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile', audience: 'x' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile', claim_patterns: { x: '.*' } }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile', admin: true }), VALIDATION],
      [rule({ issuer: 'test', subject: 1 }), VALIDATION],
      [rule({ issuer: 'test', subject: '' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'a'.repeat(20_000) }), VALIDATION],
      [rule({ issuer: 'test', subject_pattern: `agent-${'a'.repeat(20_000)}` }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-\u0000' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-\u202ehostile' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-\ud800' }), VALIDATION],
      [rule({ issuer: 'test', subject_pattern: 'agent-\ud800' }), VALIDATION],
      [rule({ issuer: 'test', subject_pattern: 'agent-\u0000' }), VALIDATION],
      ...['(', '[', '*', 'a{2,1}', '\\', '(?<x', 'a)'].map((p): [unknown, [number, string]] => [rule({ issuer: 'test', subject_pattern: p }), VALIDATION]),
      [{ match: { issuer: 'test', subject: 'agent-hostile' } }, VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile' }, { reason: '\u0000' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile' }, { reason: '\ud800' }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile' }, { reason: 'a'.repeat(501) }), VALIDATION],
      [rule({ issuer: 'test', subject: 'agent-hostile' }, { agent: 'target' }), VALIDATION],
    ];
    for (const [body, want] of rules) await pinned('POST', '/v1/suspensions', '/v1/suspensions', body, want);

    // Lifting: ids that are not a suspension's, and hostile bodies for one that is.
    const [held] = fixtures.suspensions as [string];
    for (const id of ['x', '00000000-0000-4000-8000-000000000000', held.toUpperCase(), `${held}%00`, '%ff', '%ed%a0%80', '*', 'a'.repeat(64)]) {
      await pinned('POST', '/v1/suspensions/{id}/lift', `/v1/suspensions/${id}/lift`, reason, [404, 'suspension_not_found']);
    }
    for (const id of ['a'.repeat(65), 'a'.repeat(10_000)]) await pinned('POST', '/v1/suspensions/{id}/lift', `/v1/suspensions/${id}/lift`, reason, VALIDATION);
    for (const [body, want] of reasons) await pinned('POST', '/v1/suspensions/{id}/lift', `/v1/suspensions/${held}/lift`, body, want);
    await pinned('POST', '/v1/suspensions/{id}/lift', `/v1/suspensions/${held}/lift`, reason, [403, 'not_admin'], 'orchestrator-2');

    // Every refusal above was checked to change nothing; and taken together, nothing was registered, suspended or lifted.
    const { audit_seq: _a, ...rowsBefore } = before;
    const { audit_seq: _b, ...rowsAfter } = await snapshot();
    expect(rowsAfter).toEqual(rowsBefore);
    const listed = await t.call('GET', '/v1/agents', { subject: 'admin' });
    expect(listed.json.items.map((a: { name: string }) => a.name)).toEqual(['ceiling', 'target']);
    expect(listed.json.items.every((a: { suspension: unknown }) => a.suspension === null)).toBe(true);
    expect((await t.call('GET', '/v1/suspensions', { subject: 'admin' })).json.items.map((x: { id: string }) => x.id)).toEqual([held]);
  }, 60_000);

  it("holds an agent to its ceiling: role names that differ in case, whitespace or letters, and roles outside it, are refused", async () => {
    const leasesBefore = (await snapshot()).leases;
    const refusal = (role: string): [number, string] => (wellFormedName(role) ? [403, 'role_denied'] : VALIDATION);
    // Credential requests on a task that lists the roles outside the ceiling (it was opened before the agent was registered).
    // It is the ceiling that refuses them, not the task: the audit trail says so. (Repeats of one identity's refusal are
    // audited once a window, src/audit/refusals.ts: the first is the one to read.)
    await pinned('POST', '/v1/credentials', '/v1/credentials', { task: ceilingTask, role: 'flaky' }, [403, 'role_denied'], 'agent-ceiling');
    const denied = await t.call('GET', `/v1/audit?target=${enc(`task:${ceilingTask}`)}&action=credential.denied`, { subject: 'admin' });
    expect(denied.json.items.map((e: { reason: string }) => e.reason)).toEqual(["role flaky is outside agent ceiling's ceiling"]);
    for (const role of [...LOOK_ALIKES, ...OUTSIDE_CEILING]) {
      await pinned('POST', '/v1/credentials', '/v1/credentials', { task: ceilingTask, role }, refusal(role), 'agent-ceiling');
      await pinned('GET', '/v1/aws/container-credentials', `/v1/aws/container-credentials?task=${ceilingTask}&role=${enc(role)}`, undefined, refusal(role), 'agent-ceiling');
    }
    expect((await snapshot()).leases).toBe(leasesBefore);

    // Tasks: none may be opened for it with a role outside its ceiling, however the name is spelled.
    // A well-formed name that is no configured role (`Demo`, `nope`) is unknown_role, which the task's route checks first.
    const configured = new Set(['demo', ...OUTSIDE_CEILING.filter((r) => r !== 'nope')]);
    for (const roles of [...OUTSIDE_CEILING.map((r) => [r]), ['demo', 'flaky'], ...LOOK_ALIKES.map((r) => [r]), ...LOOK_ALIKES.map((r) => ['demo', r])]) {
      const want: [number, string] = !roles.every(wellFormedName) ? VALIDATION : !roles.every((r) => configured.has(r)) ? [400, 'unknown_role'] : [403, 'role_denied'];
      await pinned('POST', '/v1/tasks', '/v1/tasks', { agent: { issuer: 'test', subject: 'agent-ceiling' }, roles, ttl_seconds: 600 }, want, 'orchestrator');
    }

    // And the one role inside it is granted, on the same task and on a new one.
    const granted = await t.call('POST', '/v1/credentials', { subject: 'agent-ceiling' }, { task: ceilingTask, role: 'demo' });
    expect(granted.status, granted.text).toBe(201);
    expect(granted.json.lease).toMatchObject({ agent: 'ceiling', role: 'demo' });
    secrets.add(granted.json.credentials.token);
    expect((await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-ceiling' }, roles: ['demo'], ttl_seconds: 600 })).status).toBe(201);
  });

  it('well-formed requests from their intended callers keep the same invariants', async () => {
    // Each route called the way its callers call it (what they may and may not do), so that handlers and refusals deep in
    // the services run under the same checks; the statuses themselves are the authorization matrix's business.
    const [t1, t2, t3, t4] = fixtures.tasks as [string, string, string, string];
    const [l1, , l3] = fixtures.leases as [string, string, string, string];
    const [a1, a2] = fixtures.approvals as [string, string, string];
    const bearer = (who: Who): Auth => ({ kind: 'valid', who, scheme: 'Bearer ', trail: '' });
    const json = (v: unknown): Body => ({ kind: 'text', text: JSON.stringify(v) });
    const cases: [Method, string, string, Auth, Body | null][] = [
      ['POST', '/v1/credentials', '/v1/credentials', bearer('agent-1'), json({ task: t1, role: 'demo' })],
      ['POST', '/v1/credentials', '/v1/credentials', bearer('agent-1'), json({ task: t1, role: 'gated' })],
      ['POST', '/v1/credentials', '/v1/credentials', bearer('agent-1'), json({ task: t1, role: 'special' })],
      ['POST', '/v1/credentials', '/v1/credentials', bearer('agent-2'), json({ task: t1, role: 'demo' })],
      ['POST', '/v1/credentials', '/v1/credentials', bearer('agent-1'), json({ task: t1, role: 'demo', approval: a2 })],
      ['GET', '/v1/aws/container-credentials', `/v1/aws/container-credentials?task=${t4}&role=reports`, bearer('agent-2'), null],
      ['GET', '/v1/aws/container-credentials', `/v1/aws/container-credentials?task=${t4}&role=reports`, { kind: 'raw', who: 'agent-2' }, null],
      ['GET', '/v1/aws/container-credentials', `/v1/aws/container-credentials?task=${t1}&role=demo`, bearer('agent-1'), null],
      ['GET', '/v1/aws/container-credentials', `/v1/aws/container-credentials?task=${t1}&role=reports`, bearer('agent-2'), null],
      ['POST', '/v1/leases/{id}/renew', `/v1/leases/${l1}/renew`, bearer('agent-1'), json({ increment_seconds: 60 })],
      ['POST', '/v1/leases/{id}/renew', `/v1/leases/${l3}/renew`, bearer('agent-1'), json({})],
      ['GET', '/v1/leases/{id}', `/v1/leases/${l1}`, bearer('agent-2'), null],
      ['DELETE', '/v1/leases/{id}', `/v1/leases/${l3}`, bearer('agent-1'), null],
      ['GET', '/v1/approvals/{id}', `/v1/approvals/${a1}`, bearer('agent-2'), null],
      ['POST', '/v1/approvals/{id}/approve', `/v1/approvals/${a1}/approve`, bearer('agent-1'), json({ reason: 'self' })],
      ['POST', '/v1/approvals/{id}/approve', `/v1/approvals/${a1}/approve`, bearer('orchestrator-2'), json({ reason: 'not mine' })],
      ['POST', '/v1/approvals/{id}/deny', `/v1/approvals/${a2}/deny`, bearer('orchestrator'), json({ reason: 'no' })],
      ['POST', '/v1/approvals/{id}/approve', `/v1/approvals/${a2}/approve`, bearer('admin'), json({ reason: 'too late' })],
      ['POST', '/v1/tasks', '/v1/tasks', bearer('orchestrator'), json({ id: t1, agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 60 })],
      ['POST', '/v1/tasks', '/v1/tasks', bearer('orchestrator-2'), json({ agent: { subject: 'agent-1' }, roles: ['nope'], ttl_seconds: 60 })],
      ['GET', '/v1/tasks/{id}', `/v1/tasks/${t4}`, bearer('orchestrator'), null],
      ['POST', '/v1/tasks/{id}/complete', `/v1/tasks/${t2}/complete`, bearer('orchestrator-2'), json({ outcome: 'not mine' })],
      ['POST', '/v1/leases/{id}/revoke', '/v1/leases/00000000-0000-4000-8000-000000000000/revoke', bearer('admin'), json({ reason: 'nothing there' })],
      ['POST', '/v1/revocations', '/v1/revocations', bearer('admin'), json({ subject: 'nobody', reason: 'nothing matches' })],
      ['POST', '/v1/policy/evaluate', '/v1/policy/evaluate', bearer('admin'), json({ identity: { issuer: 'test', subject: 'agent-1' }, task: t1, role: 'gated' })],
      ['POST', '/v1/introspect', '/v1/introspect', bearer('agent-1'), { kind: 'text', text: `token=${fixtures.credential}` }],
      ['GET', '/v1/audit', '/v1/audit?limit=500', bearer('static-admin'), null],
      ['GET', '/v1/leases', `/v1/leases?task=${t1}&status=active`, bearer('admin'), null],
      ['GET', '/v1/approvals', '/v1/approvals?status=pending', bearer('orchestrator'), null],
      // What an unmodified AWS SDK does for a role that needs approval.
      ['GET', '/v1/aws/container-credentials', `/v1/aws/container-credentials?task=${t3}&role=reports-gated`, { kind: 'raw', who: 'agent-2' }, null],
      // The registry: `target`'s owner is orchestrator-2; nobody owns `ceiling`, not even the agent itself.
      ['GET', '/v1/agents', '/v1/agents?unused_roles=true', bearer('admin'), null],
      ['GET', '/v1/agents/{name}', '/v1/agents/target', bearer('orchestrator-2'), null],
      ['GET', '/v1/agents/{name}', '/v1/agents/ceiling', bearer('orchestrator-2'), null],
      ['POST', '/v1/agents/{name}/suspend', '/v1/agents/target/suspend', bearer('orchestrator-2'), json({ reason: 'paused by its owner' })],
      ['POST', '/v1/agents/{name}/resume', '/v1/agents/target/resume', bearer('orchestrator-2'), json({ reason: 'resumed by its owner' })],
      ['POST', '/v1/agents/{name}/suspend', '/v1/agents/ceiling/suspend', bearer('agent-ceiling'), json({ reason: 'itself' })],
      ['DELETE', '/v1/agents/{name}', '/v1/agents/target', bearer('admin'), null],
      ['POST', '/v1/agents', '/v1/agents', bearer('admin'), json({ name: 'spare-1', match: { issuer: 'test', subject: SPARE_SUBJECTS[0] }, owner: { name: 'team-h', contact: 'team-h@example.com' }, purpose: 'a spare', roles: ['demo'] })],
      ['POST', '/v1/suspensions', '/v1/suspensions', bearer('admin'), json({ match: { issuer: 'test', subject: SPARE_SUBJECTS[1] }, reason: 'a spare' })],
      ['POST', '/v1/suspensions/{id}/lift', '/v1/suspensions/00000000-0000-4000-8000-000000000000/lift', bearer('admin'), json({ reason: 'nothing there' })],
      ['GET', '/v1/suspensions', '/v1/suspensions', bearer('static-admin'), null],
    ];
    try {
      for (const [method, route, target, auth, body] of cases) {
        const contentType = body === null ? null : route === '/v1/introspect' ? 'application/x-www-form-urlencoded' : 'application/json';
        await exercise({ route, method, target, auth, contentType, requestId: null, headers: [], body });
      }
    } finally {
      report('well-formed requests');
    }
  });

  it('every route survives a fixed battery of hostile requests', async () => {
    const battery: Omit<Req, 'route' | 'method' | 'target'>[] = [];
    const base = { requestId: null, headers: [] as [string, string][] };
    for (const who of ['intended', 'none'] as const) {
      // Without a token the body hardly matters (401 first, or 413): a few cases suffice.
      for (const [contentType, body] of ([
        [null, null],
        ['application/json', { kind: 'text', text: '' }],
        ['application/json', { kind: 'text', text: '{' }],
        ['application/json', { kind: 'text', text: '[]' }],
        ['application/json', { kind: 'text', text: DEEP_ARRAY }],
        ['application/json', { kind: 'text', text: DEEP_OBJECT }],
        ['application/json', { kind: 'text', text: `{"reason":"${'a'.repeat(OVER_LIMIT)}"}` }],
        ['application/json', { kind: 'bytes', before: '{"reason":"', bytes: [0xff, 0xfe, 0xc0, 0x80], after: '"}' }],
        ['text/plain', { kind: 'text', text: '{"reason":"x","outcome":"x"}' }],
        ['multipart/form-data; boundary=x', { kind: 'text', text: '--x\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc\r\n--x--\r\n' }],
        ['application/x-www-form-urlencoded', { kind: 'text', text: 'token=%zz&token=\u0000' }],
      ] as [string | null, Body | null][]).slice(0, who === 'none' ? 7 : undefined)) {
        battery.push({ ...base, auth: who === 'none' ? { kind: 'none' } : { kind: 'valid', who: 'admin', scheme: 'Bearer ', trail: '' }, contentType, body });
      }
    }
    let n = 0;
    for (const route of [...routes, ...UNKNOWN_PATHS.map((path): Route => ({ path, method: 'GET', tags: [], query: [], media: null, bodyKeys: [], public: false }))]) {
      const targets = [route.path.replaceAll('{id}', fixtures.leases[0]!), route.path.replaceAll('{id}', '%2e%2e%2f'), route.path.replaceAll('{id}', 'a'.repeat(10_000))];
      for (const who of intendedFor(route).slice(0, 1)) {
        for (const b of battery) {
          const auth: Auth = b.auth.kind === 'valid' ? { ...b.auth, who } : b.auth;
          await exercise({ ...b, auth, route: route.path, method: route.method, target: targets[n++ % targets.length]! });
        }
      }
      for (const method of METHODS) await exercise({ ...base, auth: { kind: 'valid', who: 'admin', scheme: 'Bearer ', trail: '' }, contentType: 'application/json', body: { kind: 'text', text: '{}' }, route: route.path, method, target: targets[0]! });
    }
    report('fixed battery');
  }, 60_000);

  it('no generated request gets a 500, a non-problem 4xx, a leaked secret or a changed row', async () => {
    try {
      await fc.assert(fc.asyncProperty(reqArb(routes, fixtures), exercise), { numRuns: 700 });
    } finally {
      report('generated requests');
    }
    expect((await t.broker.app.request('/healthz')).status).toBe(200);
  }, 120_000);

  it('the same holds for authenticated, well-formed-but-for-one-field requests that reach the handlers', async () => {
    try {
      await fc.assert(fc.asyncProperty(reqArb(routes, fixtures, true), exercise), { numRuns: 250 });
    } finally {
      report('generated requests past authentication');
    }
    expect((await t.broker.app.request('/healthz')).status).toBe(200);
  }, 120_000);

  // -------------------------------------------------------------------------
  // The real HTTP layer, served like `tasklease serve` (src/cli/serve.ts).

  async function listen(overrides: { headersTimeout?: number; requestTimeout?: number }) {
    const server = serve({
      fetch: t.broker.app.fetch,
      port: 0,
      hostname: '127.0.0.1',
      // Node checks header and request timeouts on this interval (30 s by default): short here, so the test is fast.
      serverOptions: { connectionsCheckingInterval: 100 },
    }) as Server;
    server.requestTimeout = 30_000;
    server.headersTimeout = 10_000;
    server.keepAliveTimeout = 5_000;
    Object.assign(server, overrides);
    if (!server.listening) await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    return {
      port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    };
  }

  /** Writes `chunks` to a raw connection one by one, `gap` ms apart, until the server closes it; true when it did. */
  async function trickle(port: number, chunks: string[], gap: number): Promise<{ closed: boolean; received: string }> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    let closed = false;
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('close', () => (closed = true));
    socket.on('error', () => {});
    for (const chunk of chunks) {
      if (closed || socket.destroyed) break;
      socket.write(chunk);
      await sleep(gap);
    }
    const result = { closed, received };
    socket.destroy();
    return result;
  }

  async function get(port: number, path: string) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, text: await res.text() };
  }

  /** A raw POST of `size` bytes, with a Content-Length or chunked. */
  function post(port: number, path: string, size: number, chunked: boolean, token: string) {
    return new Promise<{ status: number; contentType: string | undefined; text: string }>((resolve, reject) => {
      const body = Buffer.from(`{"reason":"${'a'.repeat(size - 14)}"}`);
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(body.length) }) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, contentType: res.headers['content-type'], text }));
        },
      );
      req.on('error', reject);
      if (chunked) for (let i = 0; i < body.length; i += 4096) req.write(body.subarray(i, i + 4096));
      else req.write(body);
      req.end();
    });
  }

  it('cuts off a client sending its headers slower than the header timeout', async () => {
    const server = await listen({ headersTimeout: 1_000 });
    try {
      expect((await get(server.port, '/healthz')).status).toBe(200);
      const head = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ';
      // One byte every 100 ms, at most 10 s of them: the server must close long before the loop ends.
      const chunks = [...head, ...'a'.repeat(100 - head.length)];
      const slow = await trickle(server.port, chunks, 100);
      console.log(`[hostile-input] slow headers: closed=${slow.closed}, answered ${JSON.stringify(slow.received.split('\r\n')[0] ?? '')}`);
      expect(slow.closed).toBe(true);
      expect(slow.received === '' || slow.received.startsWith('HTTP/1.1 408')).toBe(true);
      // And the server still serves everyone else.
      expect((await get(server.port, '/healthz')).status).toBe(200);
    } finally {
      await server.close();
    }
  }, 30_000);

  it('cuts off a client trickling its body past the request timeout', async () => {
    const server = await listen({ headersTimeout: 1_000, requestTimeout: 2_000 });
    try {
      const token = await t.tokenFor('admin');
      const head = `POST /v1/revocations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n`;
      const before = await snapshot();
      const slow = await trickle(server.port, [head, ...'{"reason":"'.padEnd(100, 'a')], 100);
      console.log(`[hostile-input] slow body: closed=${slow.closed}, answered ${JSON.stringify(slow.received.split('\r\n')[0] ?? '')}`);
      expect(slow.closed).toBe(true);
      expect(slow.received.includes(token)).toBe(false);
      expect(await snapshot()).toEqual(before);
      expect((await get(server.port, '/healthz')).status).toBe(200);
    } finally {
      await server.close();
    }
  }, 30_000);

  it('answers a 70 KiB body with 413 problem+json, with or without a Content-Length', async () => {
    const server = await listen({});
    try {
      const token = await t.tokenFor('admin');
      for (const chunked of [false, true]) {
        for (const path of ['/v1/revocations', '/v1/tasks', '/v1/credentials', '/v1/introspect', '/healthz', '/v1/nowhere']) {
          const before = await snapshot();
          const res = await post(server.port, path, OVER_LIMIT, chunked, token);
          const where = `${chunked ? 'chunked' : 'content-length'} POST ${path} -> ${res.status} ${res.text.slice(0, 200)}`;
          expect(res.status, where).toBe(413);
          expect(res.contentType, where).toMatch(/^application\/problem\+json/);
          expect(JSON.parse(res.text), where).toMatchObject({ code: 'payload_too_large', status: 413 });
          expect(res.text.includes(token), where).toBe(false);
          expect(await snapshot(), where).toEqual(before);
        }
      }
      // Just under the limit is read (and then refused by validation, not by size).
      const under = await post(server.port, '/v1/revocations', 64 * 1024, false, token);
      expect(under.status).toBe(400);
      expect(JSON.parse(under.text)).toMatchObject({ code: 'validation_failed' });
      expect((await get(server.port, '/healthz')).status).toBe(200);
    } finally {
      await server.close();
    }
  }, 30_000);
});

describe('the console under hostile input (postgres)', () => {
  let database: TestDatabase;
  let t: TestBroker;
  let admin: ReturnType<typeof consoleClient> & { token: string };
  let approver: ReturnType<typeof consoleClient> & { token: string };
  let fixture: { lease: string; approval: string; task: string; notification: string; session: string };

  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    const owner = { name: 'team-a', contact: 'a@example.com', principals: [{ issuer: 'dev', subject: 'approver-a' }] };
    t = await startTestBroker(database, {
      config: await devConsoleConfig({
        agents: { require_registration: false, register: [{ name: 'worker', match: { issuer: 'test', subject: 'agent-worker' }, owner, purpose: 'hostile console', roles: ['demo', 'gated'] }] },
        // A webhook nobody listens at: the approval's notification fails, so "Retry now" has a real target.
        notifications: { timeout: 1, webhooks: [{ name: 'nobody', url: 'http://127.0.0.1:1/hostile', format: 'json' }] },
      }),
    });
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: 'agent-worker' }, roles: ['demo', 'gated'], ttl_seconds: 3600 });
    const lease = await t.call('POST', '/v1/credentials', { subject: 'agent-worker' }, { task: task.json.task.id, role: 'demo' });
    const approval = await t.call('POST', '/v1/credentials', { subject: 'agent-worker' }, { task: task.json.task.id, role: 'gated' });
    expect([task.status, lease.status, approval.status]).toEqual([201, 201, 202]);
    expect(await t.broker.notifier.runOnce()).toEqual({ delivered: 0, failed: 1 });
    const [notification] = await database.db.select().from(outbox);
    // A session of its own for the Sessions page's revoke: the real target only forged tokens reach.
    const spare = consoleClient(t);
    await spare.login('approver-a');
    fixture = { lease: lease.json.lease.id, approval: approval.json.approval.id, task: task.json.task.id, notification: notification!.id, session: sha256Hex(spare.cookie!.split('=')[1]!) };
    const signIn = async (subject: string) => {
      const c = consoleClient(t);
      await c.login(subject);
      return Object.assign(c, { token: await c.csrf() });
    };
    admin = await signIn('admin');
    approver = await signIn('approver-a');
  });
  afterAll(async () => {
    await database?.drop();
  });

  const snapshot = () => consoleTables(database.db, { ignoreAdminRevoke: true });

  /** Every console action, with a path parameter to put in it and the fields its form takes. */
  const ACTIONS = [
    { path: (p: string) => `/console/approvals/${p}/decide`, form: () => ({ verdict: 'approve', reason: 'hostile' }), real: () => fixture.approval },
    { path: (p: string) => `/console/agents/${p}/suspend`, form: () => ({ reason: 'hostile' }), real: () => 'worker' },
    { path: (p: string) => `/console/agents/${p}/resume`, form: () => ({ reason: 'hostile' }), real: () => 'worker' },
    { path: (p: string) => `/console/leases/${p}/revoke`, form: () => ({ reason: 'hostile' }), real: () => fixture.lease },
    { path: (p: string) => `/console/tasks/${p}/complete`, form: () => ({ outcome: 'hostile' }), real: () => fixture.task },
    { path: (p: string) => `/console/notifications/${p}/retry`, form: () => ({}), real: () => fixture.notification },
    { path: (p: string) => `/console/sessions/${p}/revoke`, form: () => ({ reason: 'hostile' }), real: () => fixture.session },
  ];
  /** Actions without a path parameter: only the CSRF cases apply (a valid form there would act). */
  const PLAIN_ACTIONS = [
    { path: () => '/console/leases/bulk-revoke', form: () => ({ reason: 'hostile', subject: 'agent-worker' }), real: () => '' },
    { path: () => '/console/sessions/revoke-actor', form: () => ({ reason: 'hostile', actor: 'dev/approver-a' }), real: () => '' },
  ];
  const ODD_PARAMS = ['..', '%2e%2e', 'WORKER', 'worker%00', '%00', 'worker%0d%0aSet-Cookie:x=1', '-worker', 'a'.repeat(64), '%F0%9F%92%A5', '00000000-0000-0000-0000-00000000000g', `${'0'.repeat(36)}`, '%E0%A4%A', "'%20or%201=1--"];

  async function send(who: typeof admin, method: string, path: string, body: string | Uint8Array<ArrayBuffer> | undefined, headers: Record<string, string>) {
    const res = await t.broker.app.request(`http://localhost${path}`, {
      method,
      headers: { cookie: who.cookie!, ...headers },
      body,
      redirect: 'manual',
    });
    return { status: res.status, location: res.headers.get('location'), text: await res.text() };
  }
  const same = { origin: 'http://localhost', 'sec-fetch-site': 'same-origin' };
  const urlencoded = { ...same, 'content-type': 'application/x-www-form-urlencoded' };

  it('refuses forged, missing and borrowed CSRF tokens, cross-site requests and malformed bodies on every action: 403, never a 5xx, nothing changed', async () => {
    const before = await snapshot();
    const forged = 'ab'.repeat(32);
    // The audit page's "Verify now" takes no path parameter: it joins this test only.
    const verify = { path: () => '/console/audit/verify', form: () => ({}), real: () => '' };
    for (const action of [...ACTIONS, ...PLAIN_ACTIONS, verify]) {
      const path = action.path(action.real());
      const form = (extra: Record<string, string>) => new URLSearchParams({ ...action.form(), ...extra }).toString();
      const cases: [string, string | Uint8Array<ArrayBuffer> | undefined, Record<string, string>][] = [
        ['no csrf', form({}), urlencoded],
        ['forged csrf', form({ csrf: forged }), urlencoded],
        ['empty csrf', form({ csrf: '' }), urlencoded],
        ["another session's csrf", form({ csrf: approver.token }), urlencoded],
        ['csrf twice', `${form({ csrf: admin.token })}&csrf=${forged}`, urlencoded],
        ['cross-site', form({ csrf: admin.token }), { ...urlencoded, 'sec-fetch-site': 'cross-site' }],
        ['foreign origin', form({ csrf: admin.token }), { ...urlencoded, origin: 'https://evil.example' }],
        ['opaque origin without fetch metadata', form({ csrf: admin.token }), { 'content-type': 'application/x-www-form-urlencoded', origin: 'null' }],
        ['json body', JSON.stringify({ ...action.form(), csrf: forged }), { ...same, 'content-type': 'application/json' }],
        ['no content-type', form({ csrf: forged }), same],
        ['bad percent-encoding', `csrf=%zz&reason=%E0%A4%A&verdict=%`, urlencoded],
        ['binary', new Uint8Array([0, 255, 254, 10, 13, 37, 0]), urlencoded],
        ['multipart without boundary', '--x\r\nContent-Disposition: form-data; name="csrf"\r\n\r\nq\r\n--x--', { ...same, 'content-type': 'multipart/form-data' }],
        ['multipart, bad boundary', 'garbage', { ...same, 'content-type': 'multipart/form-data; boundary=zzz' }],
        ['csrf in the query only', form({}), urlencoded],
      ];
      for (const [name, body, headers] of cases) {
        const target = name === 'csrf in the query only' ? `${path}?csrf=${admin.token}` : path;
        const res = await send(admin, 'POST', target, body, headers);
        expect(res.status, `${name} on ${path}: ${res.text.slice(0, 300)}`).toBe(403);
      }
    }
    expect(await snapshot()).toEqual(before);
  });

  it('answers odd path parameters with a 404 page, with and without a valid form, never a 5xx, nothing changed', async () => {
    const before = await snapshot();
    for (const action of ACTIONS) {
      for (const param of ODD_PARAMS) {
        const path = action.path(param);
        const res = await send(admin, 'POST', path, new URLSearchParams({ ...action.form(), csrf: admin.token }).toString(), urlencoded);
        expect(res.status, `${path}: ${res.text.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
        expect(res.status, path).toBeLessThan(500);
      }
    }
    for (const param of ODD_PARAMS) {
      for (const path of [`/console/approvals/${param}`, `/console/agents/${param}`, `/console/tasks/${param}`]) {
        const res = await send(approver, 'GET', path, undefined, {});
        expect(res.status, path).toBeGreaterThanOrEqual(400);
        expect(res.status, path).toBeLessThan(500);
      }
      // An admin reaches the task lookup itself (an approver is refused before it); bulk revoke's confirmation counts, never acts.
      const task = await send(admin, 'GET', `/console/tasks/${param}`, undefined, {});
      expect([task.status >= 400, task.status < 500], param).toEqual([true, true]);
      const bulk = await send(admin, 'GET', `/console/leases/bulk-revoke?subject=${param}&task=${param}`, undefined, {});
      expect(bulk.status, param).toBeLessThan(500);
    }
    expect(await snapshot()).toEqual(before);
  });

  it("answers the audit and overview pages' odd query strings with a page, never a 5xx, and non-admins with 403", async () => {
    const before = await snapshot();
    const odd = ['actor=%00', 'since=yesterday', 'since=99999-01-01', 'since=' + 'a'.repeat(600), 'after=-1', 'after=1e309', 'after=99999999999999999999', 'target=%E0%A4%A', "action='%20or%201=1--", 'actor=a&actor=b', 'since=2026-01-01T00:00:00Z&after=0'];
    for (const query of odd) {
      const res = await send(admin, 'GET', `/console/audit?${query}`, undefined, {});
      expect(res.status, `${query}: ${res.text.slice(0, 300)}`).toBe(200);
    }
    expect((await send(admin, 'GET', '/console?x=%00', undefined, {})).status).toBe(200);
    expect((await send(approver, 'GET', '/console/audit', undefined, {})).status).toBe(403);
    const verify = await send(approver, 'POST', '/console/audit/verify', new URLSearchParams({ csrf: approver.token }).toString(), urlencoded);
    expect(verify.status).toBe(403);
    expect(await snapshot()).toEqual(before);
  });

  it('generated forms and path parameters: no 5xx, and a 4xx changes nothing', async () => {
    const anyText = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', '%', '%00', '\u0000', 'a'.repeat(600)));
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          action: fc.nat({ max: ACTIONS.length - 1 }),
          param: fc.oneof(fc.constantFrom(...ODD_PARAMS), fc.string({ minLength: 1, maxLength: 30 }).map(encodeURIComponent), fc.constant('real')),
          csrf: fc.oneof(fc.constant('valid'), fc.constant('none'), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }), anyText),
          fields: fc.dictionary(fc.constantFrom('reason', 'verdict', 'back', 'csrf', 'subject', 'x'), anyText, { maxKeys: 4 }),
          raw: fc.option(fc.string({ unit: 'binary', maxLength: 80 }), { nil: undefined }),
        }),
        async ({ action, param, csrf, fields, raw }) => {
          const a = ACTIONS[action]!;
          const path = a.path(param === 'real' ? a.real() : param);
          const form = new URLSearchParams(fields);
          if (csrf === 'valid') form.set('csrf', admin.token);
          else if (csrf !== 'none') form.set('csrf', csrf);
          // A valid token with a real path could act (a real suspension): only forged tokens reach the real targets.
          if (param === 'real' && csrf === 'valid') form.set('csrf', 'f'.repeat(64));
          const before = await snapshot();
          const res = await send(admin, 'POST', path, raw ?? form.toString(), urlencoded);
          expect(res.status, `${path} ${form}`).toBeLessThan(500);
          if (res.status >= 400) expect(await snapshot(), `${res.status} on ${path}`).toEqual(before);
        },
      ),
      { numRuns: 150 },
    );
  }, 120_000);
});
