/**
 * A catalogue of hostile bearer tokens, each presented on POST /v1/credentials
 * for an open task bound to a legitimate agent. Every one must be refused
 * with 401, a problem+json body and a stable code, and must leave no trace:
 * no lease, no audit row (a 401 happens before anyone is authenticated, so
 * not even a denial is audited).
 *
 * Tokens that must be "correctly signed" are signed with the test issuer's
 * own private key. The harness does not expose that key, so it is captured
 * once by watching `SignJWT.prototype.sign` while the harness signs a token;
 * a control test proves that a token built by the same helpers with that key
 * is accepted, so every refusal below is about the hostile part alone.
 */
import { createHmac, createPublicKey, randomUUID, webcrypto, type JsonWebKey } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { count, eq } from 'drizzle-orm';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { OAuth2Server } from 'oauth2-mock-server';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/load.js';
import { auditEvents, leases } from '../../src/db/schema.js';
import { createTokenVerifier } from '../../src/identity/verifier.js';
import { freshId, type TestBroker, useTestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { listenLocal } from '../support/listen.js';

type Json = Record<string, unknown>;

const b64u = (value: string | Uint8Array | ArrayBuffer | object): string => {
  if (typeof value === 'string') return Buffer.from(value, 'utf8').toString('base64url');
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64url');
  if (value instanceof ArrayBuffer) return Buffer.from(new Uint8Array(value)).toString('base64url');
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
};

/**
 * A compact JWS signed with an ES256 key, with full control over the header and
 * payload bytes (jose refuses to sign some of the shapes below, e.g. `crit`).
 * Strings are used as raw bytes, objects are JSON-encoded.
 */
async function signEs256(header: string | Json, payload: string | Json, key: CryptoKey): Promise<string> {
  const input = `${b64u(header)}.${b64u(payload)}`;
  const signature = await webcrypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' },
    key as unknown as webcrypto.CryptoKey,
    new TextEncoder().encode(input),
  );
  return `${input}.${b64u(signature)}`;
}

/** HMAC-SHA256 JWS whose secret is the given bytes (the classic RS/ES → HS key-confusion attack). */
function signHs256(header: Json, payload: Json, secret: string | Buffer): string {
  const input = `${b64u(header)}.${b64u(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** The harness issuer's private key, captured as it signs one token. */
async function captureIssuerKey(t: TestBroker): Promise<CryptoKey> {
  const spy = vi.spyOn(SignJWT.prototype, 'sign');
  try {
    await t.issuer.sign('agent-key-capture', {}, t.clock.now());
    const key = spy.mock.calls[0]![0] as CryptoKey;
    expect(key).toBeDefined();
    return key;
  } finally {
    spy.mockRestore();
  }
}

describe('hostile bearer tokens on POST /v1/credentials (postgres)', () => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker('postgres', (d, b) => ((database = d), (t = b)));

  /** The test issuer's own signing key, captured from the harness. */
  let issuerKey!: CryptoKey;
  let issuerJwk!: JWK;
  let stranger!: { privateKey: CryptoKey; jwk: JWK };
  let taskId!: string;
  let xTaskId!: string;

  const attacker = {
    server: undefined as Server | undefined,
    requests: [] as string[],
    url: '',
  };

  const ISS = () => t.issuer.url;
  const AUD = () => t.issuer.audience;
  const nowSec = () => Math.floor(t.clock.now().getTime() / 1000);
  const header = (over: Json = {}): Json => ({ alg: 'ES256', kid: 'k1', typ: 'JWT', ...over });
  /** Valid claims for the bound agent; pass `undefined` to drop one. */
  const claims = (over: Json = {}): Json => ({ iss: ISS(), aud: AUD(), sub: 'agent-1', iat: nowSec(), exp: nowSec() + 600, ...over });
  const signed = (over: Json = {}, head: Json = {}) => signEs256(header(head), claims(over), issuerKey);

  beforeAll(async () => {
    issuerKey = await captureIssuerKey(t);
    issuerJwk = t.issuer.config.jwks.keys[0]!;
    expect(issuerJwk.kid).toBe('k1');

    const pair = await generateKeyPair('ES256', { extractable: true });
    stranger = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'attacker', alg: 'ES256', use: 'sig' } };

    // The attacker's key server, for jku/x5u: it must never be contacted.
    attacker.server = createServer((req, res) => {
      attacker.requests.push(`${req.method} ${req.url}`);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [stranger.jwk] }));
    });
    attacker.url = `http://127.0.0.1:${await listenLocal(attacker.server)}`;

    // One open task bound to the legitimate agent, opened with the normal orchestrator token.
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 3600 });
    expect(opened.status, opened.text).toBe(201);
    taskId = opened.json.task.id;
    // And one bound to 'xagent-1', so the role's subject pattern is the only thing in the way.
    const openedX = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'xagent-1' }, roles: ['demo'], ttl_seconds: 3600 });
    expect(openedX.status, openedX.text).toBe(201);
    xTaskId = openedX.json.task.id;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => (attacker.server ? attacker.server.close(() => resolve()) : resolve()));
  });

  async function counts() {
    const db = database.db;
    const [l] = await db.select({ n: count() }).from(leases);
    const [a] = await db.select({ n: count() }).from(auditEvents);
    const [issued] = await db.select({ n: count() }).from(auditEvents).where(eq(auditEvents.action, 'credential.issued'));
    const [denied] = await db.select({ n: count() }).from(auditEvents).where(eq(auditEvents.action, 'credential.denied'));
    return { leases: l!.n, audit: a!.n, issued: issued!.n, denied: denied!.n };
  }

  /** POST /v1/credentials with exactly this Authorization header (or none). */
  async function present(authorization: string | undefined, task = taskId) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (authorization !== undefined) headers.authorization = authorization;
    const res = await t.broker.app.request('/v1/credentials', { method: 'POST', headers, body: JSON.stringify({ task, role: 'demo' }) });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  /** The whole contract for a hostile token: 401, problem+json, the stable code, nothing echoed, nothing written. */
  async function expectRefused(authorization: string, code: string) {
    const before = await counts();
    const res = await present(authorization);
    expect(res.status, `status for ${code}: ${res.text}`).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.json?.code, res.text).toBe(code);
    expect(res.json.code).toMatch(/^(token_[a-z_]+|issuer_unknown)$/);
    expect(res.json.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
    const token = authorization.replace(/^Bearer +/i, '');
    if (token.length >= 32) {
      expect(res.text).not.toContain(token);
      expect(res.text).not.toContain(token.slice(-32));
    }
    expect(await counts()).toEqual(before);
    return res;
  }
  const bearer = (token: string) => `Bearer ${token}`;

  describe('controls (prove the hostile tokens differ from a good one only in the hostile part)', () => {
    it('accepts a token built by the same helper with the issuer key (one lease, one credential.issued)', async () => {
      const before = await counts();
      const token = await signed();
      const res = await present(bearer(token));
      expect(res.status, res.text).toBe(201);
      expect(res.json.lease).toMatchObject({ task: taskId, role: 'demo', subject: 'agent-1', issuer: 'test' });
      const after = await counts();
      expect(after.leases).toBe(before.leases + 1);
      expect(after.issued).toBe(before.issued + 1);
    });

    it('accepts the harness token for the bound agent', async () => {
      const res = await present(bearer(await t.issuer.sign('agent-1', {}, t.clock.now())));
      expect(res.status, res.text).toBe(201);
    });
  });

  describe('signature and algorithm attacks', () => {
    it('alg none: an unsigned token (header {"alg":"none"}, empty signature)', async () => {
      const token = `eyJhbGciOiJub25lIn0.${b64u(claims())}.`;
      expect(token.startsWith(b64u({ alg: 'none' }))).toBe(true);
      await expectRefused(bearer(token), 'token_invalid');
    });

    it('alg none with kid k1 and typ JWT, and a signature-looking trailer', async () => {
      const token = `${b64u({ alg: 'none', kid: 'k1', typ: 'JWT' })}.${b64u(claims())}.${b64u('x')}`;
      await expectRefused(bearer(token), 'token_invalid');
    });

    it('HS256 signed with the issuer public key as SPKI PEM (key confusion)', async () => {
      const pem = createPublicKey({ key: issuerJwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
      const token = signHs256({ alg: 'HS256', kid: 'k1', typ: 'JWT' }, claims(), pem);
      await expectRefused(bearer(token), 'token_invalid');
    });

    it('HS256 signed with the issuer public JWK JSON and with its DER bytes as the secret', async () => {
      const der = createPublicKey({ key: issuerJwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'der' });
      await expectRefused(bearer(signHs256({ alg: 'HS256', kid: 'k1' }, claims(), JSON.stringify(issuerJwk))), 'token_invalid');
      await expectRefused(bearer(signHs256({ alg: 'HS256', kid: 'k1' }, claims(), der)), 'token_invalid');
    });

    it('RS256 token (valid claims, kid k1) when the issuer allows only ES256', async () => {
      const { privateKey } = await generateKeyPair('RS256');
      const token = await new SignJWT({ sub: 'agent-1' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(ISS())
        .setAudience(AUD())
        .setIssuedAt(nowSec())
        .setExpirationTime(nowSec() + 600)
        .sign(privateKey);
      await expectRefused(bearer(token), 'token_invalid');
    });

    it('EdDSA-signed token (valid claims, kid k1)', async () => {
      const { privateKey } = await generateKeyPair('EdDSA');
      const token = await new SignJWT({ sub: 'agent-1' })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
        .setIssuer(ISS())
        .setAudience(AUD())
        .setIssuedAt(nowSec())
        .setExpirationTime(nowSec() + 600)
        .sign(privateKey);
      await expectRefused(bearer(token), 'token_invalid');
    });

    it('unknown kid: signed by a stranger key with kid k2', async () => {
      await expectRefused(bearer(await signEs256(header({ kid: 'k2' }), claims(), stranger.privateKey)), 'token_invalid');
    });

    it("impersonated issuer: a different key signs iss = the test issuer's URL with kid k1", async () => {
      await expectRefused(bearer(await signEs256(header(), claims(), stranger.privateKey)), 'token_invalid');
    });

    it('stranger key and no kid at all (must not fall back to any key that verifies)', async () => {
      await expectRefused(bearer(await signEs256({ alg: 'ES256' }, claims(), stranger.privateKey)), 'token_invalid');
    });

    it('tampered payload: sub re-encoded as agent-special, original signature kept', async () => {
      const [h, , s] = (await signed()).split('.');
      await expectRefused(bearer(`${h}.${b64u(claims({ sub: 'agent-special' }))}.${s}`), 'token_invalid');
    });

    it('tampered payload: exp extended by a year, original signature kept', async () => {
      const [h, , s] = (await signed({ exp: nowSec() - 3600 })).split('.');
      await expectRefused(bearer(`${h}.${b64u(claims({ exp: nowSec() + 365 * 86400 }))}.${s}`), 'token_invalid');
    });

    it('tampered header: kid changed to k2, original signature kept', async () => {
      const [, p, s] = (await signed()).split('.');
      await expectRefused(bearer(`${b64u(header({ kid: 'k2' }))}.${p}.${s}`), 'token_invalid');
    });

    it('tampered header: alg changed to ES384, original signature kept', async () => {
      const [, p, s] = (await signed()).split('.');
      await expectRefused(bearer(`${b64u(header({ alg: 'ES384' }))}.${p}.${s}`), 'token_invalid');
    });

    it('tampered header: an extra header field added, alg and kid unchanged, original signature kept', async () => {
      const [, p, s] = (await signed()).split('.');
      await expectRefused(bearer(`${b64u(header({ cty: 'JWT' }))}.${p}.${s}`), 'token_invalid');
    });

    it('signature of one good token grafted onto another good token', async () => {
      const [h1, p1] = (await signed({ jti: 'one' })).split('.');
      const [, , s2] = (await signed({ jti: 'two' })).split('.');
      await expectRefused(bearer(`${h1}.${p1}.${s2}`), 'token_invalid');
    });
  });

  describe('header parameters that point elsewhere or demand processing', () => {
    it('jku pointing at an attacker key server (token signed by the attacker key it serves): refused, 0 requests', async () => {
      const fetchSpy = vi.spyOn(globalThis, 'fetch');
      try {
        const before = attacker.requests.length;
        const token = await signEs256(header({ kid: 'attacker', jku: `${attacker.url}/jwks.json` }), claims(), stranger.privateKey);
        await expectRefused(bearer(token), 'token_invalid');
        expect(attacker.requests.slice(before)).toEqual([]);
        expect(fetchSpy).not.toHaveBeenCalled();
      } finally {
        fetchSpy.mockRestore();
      }
    });

    it('jku pointing at the attacker with kid k1: refused, 0 requests', async () => {
      const before = attacker.requests.length;
      const token = await signEs256(header({ jku: `${attacker.url}/jwks.json` }), claims(), stranger.privateKey);
      await expectRefused(bearer(token), 'token_invalid');
      expect(attacker.requests.slice(before)).toEqual([]);
    });

    it('x5u pointing at the attacker server: refused, 0 requests', async () => {
      const fetchSpy = vi.spyOn(globalThis, 'fetch');
      try {
        const before = attacker.requests.length;
        const token = await signEs256(header({ kid: 'attacker', x5u: `${attacker.url}/cert.pem` }), claims(), stranger.privateKey);
        await expectRefused(bearer(token), 'token_invalid');
        expect(attacker.requests.slice(before)).toEqual([]);
        expect(fetchSpy).not.toHaveBeenCalled();
      } finally {
        fetchSpy.mockRestore();
      }
    });

    it('embedded jwk header carrying the attacker public key (self-signed token)', async () => {
      const token = await signEs256(header({ kid: 'attacker', jwk: stranger.jwk }), claims(), stranger.privateKey);
      await expectRefused(bearer(token), 'token_invalid');
    });

    it('embedded jwk header claiming kid k1 with the attacker public key', async () => {
      const token = await signEs256(header({ jwk: { ...stranger.jwk, kid: 'k1' } }), claims(), stranger.privateKey);
      await expectRefused(bearer(token), 'token_invalid');
    });

    it("crit: ['exp'] with an exp header, correctly signed by the issuer", async () => {
      await expectRefused(bearer(await signed({}, { crit: ['exp'], exp: nowSec() + 600 })), 'token_invalid');
    });

    it("crit: ['x-unknown'] with 'x-unknown': 1, correctly signed by the issuer", async () => {
      await expectRefused(bearer(await signed({}, { crit: ['x-unknown'], 'x-unknown': 1 })), 'token_invalid');
    });

    it("b64: false (unencoded payload) with crit ['b64'], correctly signed by the issuer", async () => {
      await expectRefused(bearer(await signed({}, { b64: false, crit: ['b64'] })), 'token_invalid');
    });
  });

  describe('time claims', () => {
    it('expired an hour ago (harness token issued two hours ago)', async () => {
      await expectRefused(bearer(await t.issuer.sign('agent-1', {}, new Date(t.clock.now().getTime() - 2 * 3600_000))), 'token_expired');
    });

    it('expired 31 s ago (just beyond the 30 s clock tolerance)', async () => {
      await expectRefused(bearer(await signed({ iat: nowSec() - 600, exp: nowSec() - 31 })), 'token_expired');
    });

    it('nbf 120 s in the future (beyond the 30 s tolerance)', async () => {
      await expectRefused(bearer(await t.issuer.sign('agent-1', { nbf: nowSec() + 120 }, t.clock.now())), 'token_invalid');
    });

    it('iat a day in the future (harness token signed "tomorrow", exp still ahead)', async () => {
      await expectRefused(bearer(await t.issuer.sign('agent-1', {}, new Date(t.clock.now().getTime() + 86_400_000))), 'token_invalid');
    });

    it('iat far in the future with an otherwise valid exp', async () => {
      await expectRefused(bearer(await signed({ iat: nowSec() + 10 * 365 * 86400 })), 'token_invalid');
    });

    it('exp past the JavaScript date range (an Invalid Date never compares as past), correctly signed', async () => {
      await expectRefused(bearer(await signed({ exp: 8.64e12 + 1 })), 'token_invalid');
      await expectRefused(bearer(await signed({ exp: 8.64e12 + 1 })), 'token_invalid');
    });

    it('no exp at all, correctly signed', async () => {
      await expectRefused(bearer(await signed({ exp: undefined })), 'token_invalid');
    });
  });

  describe('issuer and audience', () => {
    it('wrong iss (an unconfigured issuer), correctly signed', async () => {
      await expectRefused(bearer(await signed({ iss: 'https://evil.example.com' })), 'issuer_unknown');
    });

    it('iss differing only by a trailing slash, correctly signed', async () => {
      await expectRefused(bearer(await signed({ iss: `${ISS()}/` })), 'issuer_unknown');
    });

    it('iss differing only by case, correctly signed', async () => {
      await expectRefused(bearer(await signed({ iss: ISS().toUpperCase() })), 'issuer_unknown');
      await expectRefused(bearer(await signed({ iss: ISS().replace('issuer', 'Issuer') })), 'issuer_unknown');
    });

    it('iss with trailing whitespace, correctly signed', async () => {
      await expectRefused(bearer(await signed({ iss: `${ISS()} ` })), 'issuer_unknown');
    });

    it('iss as an array holding the issuer URL, correctly signed', async () => {
      await expectRefused(bearer(await signed({ iss: [ISS()] })), 'issuer_unknown');
    });

    it('no iss at all, correctly signed', async () => {
      await expectRefused(bearer(await signed({ iss: undefined })), 'issuer_unknown');
    });

    it('wrong aud, correctly signed', async () => {
      await expectRefused(bearer(await signed({ aud: 'https://someone-else.test' })), 'token_invalid');
    });

    it('aud differing only by a trailing slash, correctly signed', async () => {
      await expectRefused(bearer(await signed({ aud: `${AUD()}/` })), 'token_invalid');
    });

    it('missing aud, correctly signed', async () => {
      await expectRefused(bearer(await signed({ aud: undefined })), 'token_invalid');
    });
  });

  describe('claims of the wrong type (correctly signed)', () => {
    it('sub as a number', async () => {
      await expectRefused(bearer(await signed({ sub: 1 })), 'token_invalid');
    });

    it("sub as an array ['agent-1'] (would stringify to a matching subject)", async () => {
      await expectRefused(bearer(await signed({ sub: ['agent-1'] })), 'token_invalid');
    });

    it('sub as an object with a toString-looking shape', async () => {
      await expectRefused(bearer(await signed({ sub: { toString: 'agent-1' } })), 'token_invalid');
    });

    it('sub as an empty string', async () => {
      await expectRefused(bearer(await signed({ sub: '' })), 'token_invalid');
    });

    it('sub missing', async () => {
      await expectRefused(bearer(await signed({ sub: undefined })), 'token_invalid');
    });

    it('exp as a string', async () => {
      await expectRefused(bearer(await signed({ exp: String(nowSec() + 600) })), 'token_invalid');
    });

    it('aud as a number', async () => {
      await expectRefused(bearer(await signed({ aud: 42 })), 'token_invalid');
    });

    it('iat as a string', async () => {
      await expectRefused(bearer(await signed({ iat: String(nowSec()) })), 'token_invalid');
    });

    it("sub 'agent-1\\nadmin' (newline), harness-signed", async () => {
      await expectRefused(bearer(await t.issuer.sign('agent-1\nadmin', {}, t.clock.now())), 'token_invalid');
    });

    it("sub 'agent-1\\u0000' (NUL), correctly signed", async () => {
      await expectRefused(bearer(await signed({ sub: 'agent-1\u0000' })), 'token_invalid');
    });

    it("sub 'agent-1\\u2028admin' (Unicode line separator), correctly signed", async () => {
      await expectRefused(bearer(await signed({ sub: 'agent-1\u2028admin' })), 'token_invalid');
    });

    it("sub 'agent-1\\u200b' (zero-width space, a format character), correctly signed", async () => {
      await expectRefused(bearer(await signed({ sub: 'agent-1\u200b' })), 'token_invalid');
    });

    it("sub 'agent-1\\u0085admin' (C1 next-line), correctly signed", async () => {
      await expectRefused(bearer(await signed({ sub: 'agent-1\u0085admin' })), 'token_invalid');
    });

    // JSON.stringify writes a lone surrogate as the escape \ud800, which JSON.parse turns back into one.
    it("sub 'agent-1\\ud800' (lone high surrogate, which the database drivers would store as U+FFFD), correctly signed", async () => {
      const res = await expectRefused(bearer(await signed({ sub: 'agent-1\ud800' })), 'token_invalid');
      expect(res.json.detail).toContain('well-formed Unicode');
    });

    it("sub 'agent-1\\udc00' (lone low surrogate), and a low surrogate before a high one, correctly signed", async () => {
      await expectRefused(bearer(await signed({ sub: 'agent-1\udc00' })), 'token_invalid');
      await expectRefused(bearer(await signed({ sub: 'agent-1\udc00\ud800' })), 'token_invalid');
    });

    it("sub 'agent-1\\u202e' and '\\u2066agent-1\\u2069' (bidi override and isolate), correctly signed", async () => {
      await expectRefused(bearer(await signed({ sub: 'agent-1\u202e' })), 'token_invalid');
      await expectRefused(bearer(await signed({ sub: '\u2066agent-1\u2069' })), 'token_invalid');
    });

    it('a lone surrogate in a claim rules match on, in a nested claim and in a claim name, correctly signed', async () => {
      await expectRefused(bearer(await signed({ repository: 'example-org/\ud800' })), 'token_invalid');
      await expectRefused(bearer(await signed({ 'kubernetes.io': { namespace: ['agents', 'x\udfff'] } })), 'token_invalid');
      await expectRefused(bearer(await signed({ ['ns\ud800']: 'agents' })), 'token_invalid');
      await expectRefused(bearer(await signed({ aud: [AUD(), 'other\ud800'] })), 'token_invalid');
    });

    it('sub longer than 1024 characters, correctly signed', async () => {
      await expectRefused(bearer(await signed({ sub: `agent-${'a'.repeat(1100)}` })), 'token_invalid');
    });
  });

  describe('malformed and oversized', () => {
    it('a payload that is not JSON, correctly signed', async () => {
      await expectRefused(bearer(await signEs256(header(), 'this is not json', issuerKey)), 'token_malformed');
    });

    it('a payload that is JSON but not an object (an array), correctly signed', async () => {
      await expectRefused(bearer(await signEs256(header(), JSON.stringify([claims()]), issuerKey)), 'token_malformed');
    });

    it('a header that is not JSON, correctly signed', async () => {
      await expectRefused(bearer(await signEs256('{"alg":"ES256","kid":"k1"', claims(), issuerKey)), 'token_malformed');
    });

    it('over 16 KiB: a huge claim in an otherwise valid, correctly signed token', async () => {
      const token = await signed({ pad: 'x'.repeat(17 * 1024) });
      expect(token.length).toBeGreaterThan(16 * 1024);
      await expectRefused(bearer(token), 'token_malformed');
    });

    it('truncated: signature dropped (header.payload.)', async () => {
      const [h, p] = (await signed()).split('.');
      await expectRefused(bearer(`${h}.${p}.`), 'token_invalid');
    });

    it('truncated: cut in the middle of the payload (two parts)', async () => {
      const [h, p] = (await signed()).split('.');
      await expectRefused(bearer(`${h}.${p!.slice(0, Math.floor(p!.length / 2))}`), 'token_invalid');
    });

    it('truncated: signature cut in half', async () => {
      const [h, p, s] = (await signed()).split('.');
      await expectRefused(bearer(`${h}.${p}.${s!.slice(0, Math.floor(s!.length / 2))}`), 'token_invalid');
    });

    it('a JWE-looking five-part token', async () => {
      const jwe = [b64u({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: 'k1' }), b64u('encrypted-key'), b64u('iv'), b64u(claims()), b64u('tag')].join('.');
      await expectRefused(bearer(jwe), 'token_invalid');
    });

    it('a JWS JSON serialization as the bearer', async () => {
      const [h, p, s] = (await signed()).split('.');
      await expectRefused(bearer(JSON.stringify({ protected: h, payload: p, signature: s })), 'token_invalid');
    });

    it('base64 padding and standard-alphabet characters in a good token', async () => {
      const [h, p, s] = (await signed()).split('.');
      await expectRefused(bearer(`${h}.${p}.${s}==`), 'token_invalid');
      await expectRefused(bearer(`${h}.${p}.${s!.replaceAll('_', '/').replaceAll('-', '+')}/+`), 'token_invalid');
    });
  });

  describe('the Authorization header itself', () => {
    it("an empty bearer ('Bearer ')", async () => {
      await expectRefused('Bearer ', 'token_missing');
    });

    it("'Bearer' with no space and no token", async () => {
      await expectRefused('Bearer', 'token_missing');
    });

    it("'Bearer' with two tokens: a forged one, then the agent's valid one", async () => {
      const forged = await signEs256(header(), claims(), stranger.privateKey);
      await expectRefused(`Bearer ${forged} ${await signed()}`, 'token_missing');
    });

    it("'Bearer' with the agent's valid token twice", async () => {
      const good = await signed();
      await expectRefused(`Bearer ${good} ${good}`, 'token_missing');
    });

    it('two tokens joined by a comma', async () => {
      const good = await signed();
      await expectRefused(`Bearer ${good},${good}`, 'token_invalid');
    });

    it('a Basic scheme carrying a valid token', async () => {
      await expectRefused(`Basic ${await signed()}`, 'token_missing');
    });
  });

  describe('pattern bypasses', () => {
    /** A valid token that policy must refuse: 403 with the given codes, no lease, the denial audited. */
    async function expectDenied(token: string, codes: string[], task = taskId) {
      const before = await counts();
      const res = await present(bearer(token), task);
      // Another agent's task answers as a missing one (404); a role it may not hold, 403.
      expect([403, 404], res.text).toContain(res.status);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(codes).toContain(res.json?.code);
      const after = await counts();
      expect(after.leases).toBe(before.leases);
      expect(after.issued).toBe(before.issued);
      expect(after.denied).toBe(before.denied + 1);
    }

    it("sub 'xagent-1' on a task bound to agent-1: a valid token, refused by policy (404)", async () => {
      await expectDenied(await t.issuer.sign('xagent-1', {}, t.clock.now()), ['task_not_found', 'role_denied']);
    });

    it("sub 'xagent-1' on a task bound to xagent-1: the role pattern agent-.* must not match unanchored (403 role_denied)", async () => {
      await expectDenied(await t.issuer.sign('xagent-1', {}, t.clock.now()), ['role_denied'], xTaskId);
    });

    it("sub 'agent-1 ' (trailing space) on a task bound to agent-1 (404)", async () => {
      await expectDenied(await t.issuer.sign('agent-1 ', {}, t.clock.now()), ['task_not_found', 'role_denied']);
    });

    it("sub 'AGENT-1' (case) on a task bound to agent-1 (404)", async () => {
      await expectDenied(await t.issuer.sign('AGENT-1', {}, t.clock.now()), ['task_not_found', 'role_denied']);
    });

    it("sub 'аgent-1' (Cyrillic а homoglyph) on a task bound to agent-1 (404)", async () => {
      await expectDenied(await t.issuer.sign('\u0430gent-1', {}, t.clock.now()), ['task_not_found', 'role_denied']);
    });

  });
});

describe('unknown-kid flood against an HTTP issuer', () => {
  const AUDIENCE = 'https://tasklease.test';
  const server = new OAuth2Server();
  let url!: string;

  beforeAll(async () => {
    await server.issuer.keys.generate('RS256');
    await server.start(0, '127.0.0.1');
    url = `http://127.0.0.1:${server.address().port}`;
    server.issuer.url = url;
  });
  afterAll(async () => {
    await server.stop();
  });

  it('200 random-kid tokens cost at most one JWKS fetch, and at most one more after the 30 s cooldown', async () => {
    const clock = createManualClock(new Date());
    const [issuer] = parseConfig(
      { issuers: [{ name: 'mock', issuer: url, jwks_uri: `${url}/jwks`, audiences: [AUDIENCE], algorithms: ['RS256'], jwks_refresh_cooldown: 30 }] },
      'hostile-tokens flood',
    ).issuers;
    const verifier = createTokenVerifier({ issuers: [issuer!], defaultAudience: AUDIENCE, clock });

    const realFetch = globalThis.fetch;
    const jwksRequests: string[] = [];
    const fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const target = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (target.startsWith(url)) jwksRequests.push(target);
      return realFetch(input, init);
    });
    try {
      // Warm the cache with one good token from the real issuer.
      const good = await server.issuer.buildToken({
        scopesOrTransform: (_header, payload) => {
          payload.sub = 'workload-a';
          payload.aud = AUDIENCE;
        },
      });
      await expect(verifier.verify(good)).resolves.toMatchObject({ issuer: 'mock', subject: 'workload-a' });
      const warm = verifier.keyFetches('mock');
      const warmRequests = jwksRequests.length;
      expect(warm).toBeGreaterThanOrEqual(1);

      const { privateKey } = await generateKeyPair('RS256');
      const randomKid = () => {
        const now = Math.floor(clock.now().getTime() / 1000);
        return new SignJWT({ sub: 'workload-a' })
          .setProtectedHeader({ alg: 'RS256', kid: randomUUID() })
          .setIssuer(url)
          .setAudience(AUDIENCE)
          .setIssuedAt(now)
          .setExpirationTime(now + 600)
          .sign(privateKey);
      };

      const flood = await Promise.all(Array.from({ length: 200 }, randomKid));
      const results = await Promise.allSettled(flood.map((token) => verifier.verify(token)));
      expect(results.every((r) => r.status === 'rejected')).toBe(true);
      const codes = new Set(results.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'accepted')));
      expect([...codes]).toEqual(['token_invalid']);
      expect(verifier.keyFetches('mock') - warm).toBeLessThanOrEqual(1);
      expect(jwksRequests.length - warmRequests).toBeLessThanOrEqual(1);

      const afterFlood = verifier.keyFetches('mock');
      const afterFloodRequests = jwksRequests.length;
      clock.advance(31);
      const burst = await Promise.all(Array.from({ length: 20 }, randomKid));
      const burstResults = await Promise.allSettled(burst.map((token) => verifier.verify(token)));
      expect(burstResults.every((r) => r.status === 'rejected')).toBe(true);
      expect(verifier.keyFetches('mock') - afterFlood).toBeLessThanOrEqual(1);
      expect(jwksRequests.length - afterFloodRequests).toBeLessThanOrEqual(1);

      // A fresh good token still verifies: the flood did not evict the real keys.
      const fresh = await server.issuer.buildToken({
        scopesOrTransform: (_header, payload) => {
          payload.sub = 'workload-b';
          payload.aud = AUDIENCE;
        },
      });
      await expect(verifier.verify(fresh)).resolves.toMatchObject({ subject: 'workload-b' });
    } finally {
      fetchSpy.mockRestore();
    }
  });
});

describe.each(DRIVERS)('a lone surrogate cannot stand for U+FFFD on %s', (driver) => {
  let t!: TestBroker;
  useTestBroker(driver, (_d, b) => (t = b));

  it("a token for 'agent-\\ud800' can neither read nor release the lease of 'agent-\\ufffd'", async () => {
    const victim = 'agent-\ufffd';
    const opened = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: victim }, roles: ['demo'], ttl_seconds: 600 });
    expect(opened.status, opened.text).toBe(201);
    const issued = await t.call('POST', '/v1/credentials', { subject: victim }, { task: opened.json.task.id, role: 'demo' });
    expect(issued.status, issued.text).toBe(201);
    const leaseId = issued.json.lease.id as string;

    const now = Math.floor(t.clock.now().getTime() / 1000);
    const claims = { iss: t.issuer.url, aud: t.issuer.audience, sub: 'agent-\ud800', iat: now, exp: now + 600 };
    const forged = await signEs256({ alg: 'ES256', kid: 'k1', typ: 'JWT' }, claims, await captureIssuerKey(t));
    for (const method of ['GET', 'DELETE']) {
      const res = await t.call(method, `/v1/leases/${leaseId}`, { bearer: forged });
      expect(res.status, `${method}: ${res.text}`).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.json.code).toBe('token_invalid');
    }
    const own = await t.call('GET', `/v1/leases/${leaseId}`, { subject: victim });
    expect(own.json.lease).toMatchObject({ subject: victim, status: 'active' });
  });
});
