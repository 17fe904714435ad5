// Hostile input on the OAuth endpoints, property-based: whatever arrives, /oauth2/token and /oauth2/revoke answer
// 200 or a 4xx in RFC 6749's form ({error, error_description} from the known codes, no-store), never a 5xx,
// never problem+json, and never a credential for a request that is not a valid exchange.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/ids.js';
import { useTestBroker, type TestBroker } from '../support/broker.js';

const CODES = new Set(['invalid_request', 'invalid_client', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'invalid_target', 'invalid_dpop_proof']);
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

describe('hostile input on the OAuth endpoints', () => {
  let t!: TestBroker;
  const POLL = { client_id: 'poller', secret: 'poller-secret-for-hostile-tests' };
  useTestBroker('pglite', (_d, b) => (t = b), {
    config: {
      oauth: {
        // A poll that finds nothing answers at once: the property makes hundreds.
        security_events: { poll_wait: 0 },
        resource_servers: [{ client_id: POLL.client_id, secret_sha256: sha256Hex(POLL.secret), audiences: ['demo-api'], security_events: { delivery: 'poll' } }],
      },
    },
  });

  const value = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom(EXCHANGE, JWT, 'demo', 'demo-api', 'demo:read', 'demo:read demo:write', '', ' ', '%00', 'a'.repeat(5000), '\u0000', '\ud800', 'x.y.z'),
  );
  const key = fc.constantFrom('grant_type', 'subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'task', 'approval', 'actor_token', 'requested_token_type', 'token', 'token_type_hint', 'client_id', 'x');
  const form = fc.array(fc.tuple(key, value), { maxLength: 8 });
  const contentType = fc.constantFrom('application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8', 'application/json', 'text/plain', 'multipart/form-data', '');
  const raw = fc.oneof(
    form.map((pairs) => new URLSearchParams(pairs).toString()),
    fc.string({ maxLength: 200 }),
    fc.constantFrom('%', '%zz', '&&&', '=', 'a=%E0%A4%A', '{"grant_type":"x"}'),
  );
  const auth = fc.constantFrom<string | undefined>(undefined, 'Bearer', 'Bearer garbage', 'Basic YTpi', 'Bearer a.b.c', 'agent');
  const dpop = fc.constantFrom<string | undefined>(undefined, undefined, 'garbage', 'a.b.c', 'eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.e30.');

  it('answers every request 200 or 4xx in RFC 6749 form, and issues nothing it should not', async () => {
    const agentToken = await t.tokenFor('agent-hostile');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/oauth2/token', '/oauth2/revoke', '/oauth2/introspect'), raw, contentType, auth, dpop, fc.boolean(), async (path, body, type, authorization, proof, realSubject) => {
        // Sometimes a real subject token, so the checks past authentication are reached too.
        const text = realSubject && path === '/oauth2/token' ? `${body}&subject_token=${agentToken}` : body;
        const headers: Record<string, string> = {};
        if (type) headers['content-type'] = type;
        if (authorization) headers.authorization = authorization;
        if (proof) headers.dpop = proof;
        const res = await t.broker.app.request(path, { method: 'POST', headers, body: text });
        expect(res.status, text).toBeLessThan(500);
        if (res.status === 200) {
          if (path === '/oauth2/introspect') expect(((await res.clone().json()) as { active: unknown }).active).toBe(false);
          if (path === '/oauth2/token') expect(((await res.json()) as { access_token: unknown }).access_token).toBeTypeOf('string');
          return;
        }
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        expect(res.headers.get('cache-control')).toBe('no-store');
        const json = (await res.json()) as { error: string; error_description: string };
        expect(CODES.has(json.error), JSON.stringify(json)).toBe(true);
        expect(json.error_description).toBeTypeOf('string');
      }),
      { numRuns: 300 },
    );
  });

  const SET_ERRORS = new Set(['invalid_request', 'authentication_failed', 'access_denied']);
  const json = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.record(
      {
        ack: fc.oneof(fc.array(fc.oneof(fc.string({ maxLength: 40 }), fc.uuid(), fc.integer())), fc.string(), fc.constant(null)),
        setErrs: fc.oneof(fc.dictionary(fc.oneof(fc.uuid(), fc.string({ maxLength: 70 })), fc.oneof(fc.record({ err: fc.string({ maxLength: 300 }), description: fc.string() }), fc.jsonValue({ maxDepth: 1 })), { maxKeys: 3 }), fc.string()),
        maxEvents: fc.oneof(fc.integer({ min: -5, max: 2000 }), fc.double(), fc.string()),
        returnImmediately: fc.oneof(fc.boolean(), fc.string()),
      },
      { requiredKeys: [] },
    ),
  );
  const pollAuth = fc.constantFrom<string | undefined>(
    undefined,
    'Bearer garbage',
    'Basic !!!',
    'Basic YTpi',
    `Basic ${Buffer.from(`${POLL.client_id}:wrong`).toString('base64')}`,
    `Basic ${Buffer.from(`${POLL.client_id}:${POLL.secret}`).toString('base64')}`,
    `Basic ${Buffer.from(`${POLL.client_id}:${POLL.secret}`).toString('base64')}`,
  );

  it('answers every SSF poll 200 with sets, or 4xx in RFC 8935 form, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(json.map((j) => JSON.stringify(j)), fc.string({ maxLength: 100 })), fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', ''), pollAuth, async (body, type, authorization) => {
        const headers: Record<string, string> = {};
        if (type) headers['content-type'] = type;
        if (authorization) headers.authorization = authorization;
        const res = await t.broker.app.request('/ssf/poll', { method: 'POST', headers, body });
        expect(res.status, body).toBeLessThan(500);
        const answer = (await res.json()) as { sets?: unknown; moreAvailable?: unknown; err?: string; description?: unknown };
        if (res.status === 200) {
          expect(typeof answer.sets).toBe('object');
          expect(typeof answer.moreAvailable).toBe('boolean');
          return;
        }
        expect(SET_ERRORS.has(answer.err!), JSON.stringify(answer)).toBe(true);
        expect(answer.description).toBeTypeOf('string');
      }),
      { numRuns: 300 },
    );
  });
});
