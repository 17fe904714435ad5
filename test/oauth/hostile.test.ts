// Hostile input on the OAuth endpoints, property-based: whatever arrives, /oauth2/token and /oauth2/revoke answer
// 200 or a 4xx in RFC 6749's form ({error, error_description} from the known codes, no-store), never a 5xx,
// never problem+json, and never a credential for a request that is not a valid exchange.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useTestBroker, type TestBroker } from '../support/broker.js';

const CODES = new Set(['invalid_request', 'invalid_client', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'invalid_target', 'invalid_dpop_proof']);
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

describe('hostile input on the OAuth endpoints', () => {
  let t!: TestBroker;
  useTestBroker('pglite', (_d, b) => (t = b));

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
});
