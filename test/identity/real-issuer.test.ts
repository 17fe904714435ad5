/**
 * The verifier against real issuers over HTTP on 127.0.0.1: `oauth2-mock-server`
 * (an OIDC issuer written by someone else) for discovery, JWKS, rotation and
 * outages, and tiny node:http servers for what a well-behaved issuer never
 * does (oversized bodies, a discovery `issuer` off by a slash, hanging).
 * A manual clock drives cache ages; tokens from the mock issuer carry real
 * iat/exp, so the clock starts at the real current time and moves by minutes.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { OAuth2Server } from 'oauth2-mock-server';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/load.js';
import { AuthError } from '../../src/identity/types.js';
import { createTokenVerifier, type TokenVerifier } from '../../src/identity/verifier.js';

const AUDIENCE = 'https://tasklease.test';
const NAME = 'mock';

// ---------------------------------------------------------------- helpers

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  // Stop everything a test started, last first, even if the test failed midway.
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** The AuthError code a promise rejects with (fails the test if it resolves or throws something else). */
async function authCode(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  return (err as AuthError).code;
}

function verifierFor(clock: ManualClock, issuer: Record<string, unknown>): TokenVerifier {
  return createTokenVerifier({
    issuers: parseConfig({ issuers: [{ name: NAME, ...issuer }] }, 'test').issuers,
    defaultAudience: AUDIENCE,
    clock,
  });
}

/** A manual clock at the real current time (the mock issuer stamps tokens with real time). */
const realTimeClock = () => createManualClock(new Date());

/** Starts an OAuth2Server on 127.0.0.1 with one RS256 key per kid; `issuer.url` is the 127.0.0.1 URL. */
async function startIssuer(kids: string[], port = 0): Promise<{ server: OAuth2Server; url: string; port: number }> {
  const server = new OAuth2Server();
  for (const kid of kids) await server.issuer.keys.generate('RS256', { kid });
  await server.start(port, '127.0.0.1');
  const actual = server.address().port;
  const url = `http://127.0.0.1:${actual}`;
  server.issuer.url = url;
  cleanups.push(async () => {
    if (server.listening) await server.stop();
  });
  return { server, url, port: actual };
}

/**
 * A token from the mock issuer, signed with `kid` (buildToken looks the key up
 * by kid; without one it round-robins over the store). Every token gets its own
 * jti so no two are byte-identical.
 */
function issue(server: OAuth2Server, kid: string, sub: string, claims: JWTPayload = {}): Promise<string> {
  return server.issuer.buildToken({
    kid,
    scopesOrTransform: (_header, payload) => {
      payload.sub = sub;
      payload.aud = AUDIENCE;
      payload.jti = randomUUID();
      Object.assign(payload, claims);
    },
  });
}

interface HttpStub {
  url: string;
  port: number;
  /** Request paths in arrival order. */
  requests: string[];
  close(): Promise<void>;
}

/** A plain node:http server on 127.0.0.1 that records every request path. */
async function startHttp(handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0): Promise<HttpStub> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  const close = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.closeAllConnections(); // a hanging request would otherwise keep close() waiting
      server.close(() => resolve());
    });
  cleanups.push(close);
  return { url: `http://127.0.0.1:${actual}`, port: actual, requests, close };
}

const json = (res: ServerResponse, body: unknown) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
};

/** An ES256 key pair whose public half is published as `kid`. */
async function keyPair(kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair('ES256');
  return { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

function sign(privateKey: CryptoKey, kid: string, iss: string, claims: JWTPayload & { iat: number; exp: number }, header: Record<string, unknown> = {}) {
  return new SignJWT({ sub: 'workload', aud: AUDIENCE, jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', kid, ...header })
    .setIssuer(iss)
    .sign(privateKey);
}

const nowSec = () => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------- 1. discovery and JWKS fetch

describe('a real OIDC issuer: discovery and JWKS fetch', () => {
  it('verifies a token from an issuer configured by URL alone, fetching keys once and reusing them', async () => {
    const { server, url } = await startIssuer(['k1']);
    const clock = realTimeClock();
    const verifier = verifierFor(clock, { issuer: url });

    const first = await issue(server, 'k1', 'repo:acme/app:ref:refs/heads/main');
    await expect(verifier.verify(first)).resolves.toMatchObject({ issuer: NAME, subject: 'repo:acme/app:ref:refs/heads/main' });
    expect(verifier.keyFetches(NAME)).toBe(1);

    // A different token (new sub and jti): not in the verified-token cache, but the keys are.
    clock.advance(120);
    const second = await issue(server, 'k1', 'workload-b');
    expect(second).not.toBe(first);
    await expect(verifier.verify(second)).resolves.toMatchObject({ issuer: NAME, subject: 'workload-b' });
    expect(verifier.keyFetches(NAME)).toBe(1);
  });

  it('concurrent first verifications share one fetch', async () => {
    const { server, url } = await startIssuer(['k1']);
    const verifier = verifierFor(realTimeClock(), { issuer: url });
    const tokens = await Promise.all(Array.from({ length: 10 }, (_, i) => issue(server, 'k1', `w${i}`)));
    const identities = await Promise.all(tokens.map((t) => verifier.verify(t)));
    expect(identities.map((i) => i.subject)).toEqual(tokens.map((_, i) => `w${i}`));
    expect(verifier.keyFetches(NAME)).toBe(1);
  });
});

// ---------------------------------------------------------------- 2. key rotation at the issuer

describe('a real OIDC issuer: key rotation', () => {
  it('accepts a token signed with a newly published kid after one refetch triggered by the unknown kid', async () => {
    const { server, url } = await startIssuer(['old']);
    const clock = realTimeClock();
    const verifier = verifierFor(clock, { issuer: url });
    await verifier.verify(await issue(server, 'old', 'before-rotation'));
    expect(verifier.keyFetches(NAME)).toBe(1);

    await server.issuer.keys.generate('RS256', { kid: 'new' });
    const rotated = await issue(server, 'new', 'after-rotation');
    expect(JSON.parse(Buffer.from(rotated.split('.')[0]!, 'base64url').toString())).toMatchObject({ kid: 'new', alg: 'RS256' });

    // Past the refetch cooldown (30 s) but well inside the cache max age (600 s): only the unknown kid can cause a fetch.
    clock.advance(60);
    await expect(verifier.verify(rotated)).resolves.toMatchObject({ issuer: NAME, subject: 'after-rotation' });
    expect(verifier.keyFetches(NAME)).toBe(2);

    // Both keys are now known: old and new tokens verify with no further fetch.
    await expect(verifier.verify(await issue(server, 'old', 'old-again'))).resolves.toMatchObject({ subject: 'old-again' });
    await expect(verifier.verify(await issue(server, 'new', 'new-again'))).resolves.toMatchObject({ subject: 'new-again' });
    expect(verifier.keyFetches(NAME)).toBe(2);
  });

  it('a flood of unknown kids costs the issuer at most one refetch per cooldown', async () => {
    const { server, url } = await startIssuer(['k1']);
    const clock = realTimeClock();
    const verifier = verifierFor(clock, { issuer: url });
    await verifier.verify(await issue(server, 'k1', 'warm'));
    const { privateKey } = await keyPair('unused');
    const forged = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sign(privateKey, `random-${i}`, url, { iat: nowSec(), exp: nowSec() + 600 })),
    );

    clock.advance(60); // past the cooldown of the warm-up fetch
    const codes = await Promise.all(forged.map((t) => authCode(verifier.verify(t))));
    expect(new Set(codes)).toEqual(new Set(['token_invalid']));
    expect(verifier.keyFetches(NAME)).toBe(2);

    clock.advance(10); // still inside the cooldown of that refetch
    for (const t of forged) expect(await authCode(verifier.verify(t))).toBe('token_invalid');
    expect(verifier.keyFetches(NAME)).toBe(2);
  });
});

// ---------------------------------------------------------------- 3. a removed key

describe('a real OIDC issuer: a key removed from the issuer', () => {
  /**
   * JWKStore cannot remove a key, so the issuer is replaced: a new OAuth2Server
   * on the same port with the same issuer URL, publishing only a new key.
   */
  async function restartWithOnly(port: number, url: string, kid: string) {
    const { server } = await startIssuer([kid], port);
    server.issuer.url = url;
    return server;
  }


  it('keeps accepting the old key while the cached key set is fresh, and rejects it once the cache expires', async () => {
    const { server: before, url, port } = await startIssuer(['old']);
    const clock = realTimeClock();
    const verifier = verifierFor(clock, { issuer: url, jwks_cache_max_age: 60 });

    // Built up front, while the old key is still the issuer's: one verified now, two never verified before the removal.
    const verifiedOld = await issue(before, 'old', 'verified-before-removal');
    const unseenWhileFresh = await issue(before, 'old', 'first-seen-while-fresh');
    const unseenAfterExpiry = await issue(before, 'old', 'first-seen-after-expiry');
    await expect(verifier.verify(verifiedOld)).resolves.toMatchObject({ subject: 'verified-before-removal' });
    expect(verifier.keyFetches(NAME)).toBe(1);

    await before.stop();
    const after = await restartWithOnly(port, url, 'new');
    const newKeyToken = await issue(after, 'new', 'signed-with-new-key');

    // Fresh cache: the removed key still verifies a token never verified before (signature checked, no fetch).
    clock.advance(30);
    await expect(verifier.verify(unseenWhileFresh)).resolves.toMatchObject({ subject: 'first-seen-while-fresh' });
    expect(verifier.keyFetches(NAME)).toBe(1);

    // Past jwks_cache_max_age (60 s): the next verification refreshes, and the old key is gone.
    clock.advance(31);
    expect(await authCode(verifier.verify(unseenAfterExpiry))).toBe('token_invalid');
    expect(verifier.keyFetches(NAME)).toBe(2);

    // Tokens already verified with the old key are no longer served from the verified-token cache.
    expect(await authCode(verifier.verify(verifiedOld))).toBe('token_invalid');
    expect(await authCode(verifier.verify(unseenWhileFresh))).toBe('token_invalid');
    // ...and the issuer's new key works without another fetch.
    await expect(verifier.verify(newKeyToken)).resolves.toMatchObject({ subject: 'signed-with-new-key' });
    expect(verifier.keyFetches(NAME)).toBe(2);
  });

  it('does not serve a cached token past jwks_cache_max_age when its key has been removed, even before any other refresh', async () => {
    const { server: before, url, port } = await startIssuer(['old']);
    const clock = realTimeClock();
    const verifier = verifierFor(clock, { issuer: url, jwks_cache_max_age: 60 });
    const token = await issue(before, 'old', 'cached');
    await verifier.verify(token);

    await before.stop();
    await restartWithOnly(port, url, 'new');
    clock.advance(61);

    // A fresh verification of this token would refresh the keys and refuse it; the verified-token
    // cache must not say otherwise ("without ever outliving what verification would say").
    expect(await authCode(verifier.verify(token))).toBe('token_invalid');
  });
});

// ---------------------------------------------------------------- 4. issuer outage

describe('a real OIDC issuer: outage', () => {
  async function warmedUp() {
    const { server, url, port } = await startIssuer(['k1']);
    const clock = realTimeClock();
    const config = { issuer: url, jwks_cache_max_age: 60, fetch_timeout: 2 };
    const verifier = verifierFor(clock, config);
    await verifier.verify(await issue(server, 'k1', 'warm-up'));
    expect(verifier.keyFetches(NAME)).toBe(1);
    // Built while the issuer is up (stop() unsets issuer.url); never verified before.
    const fresh = await issue(server, 'k1', 'during-outage');
    const fresh2 = await issue(server, 'k1', 'during-outage-2');
    const { privateKey } = await keyPair('stranger');
    const unknownKid = await sign(privateKey, 'stranger', url, { iat: nowSec(), exp: nowSec() + 600 });
    await server.stop();
    return { url, port, clock, config, verifier, fresh, fresh2, unknownKid };
  }

  it('serves stale cached keys while the issuer refuses connections; unknown kids and cold verifiers are refused', async () => {
    const { clock, config, verifier, fresh, fresh2, unknownKid } = await warmedUp();

    clock.advance(61); // past jwks_cache_max_age: a refresh is due and fails
    await expect(verifier.verify(fresh)).resolves.toMatchObject({ subject: 'during-outage' });
    expect(verifier.keyFetches(NAME)).toBe(2);

    expect(['token_invalid', 'issuer_unavailable']).toContain(await authCode(verifier.verify(unknownKid)));

    clock.advance(31); // past the cooldown: another refresh is tried, fails, the stale keys still serve
    expect(['token_invalid', 'issuer_unavailable']).toContain(await authCode(verifier.verify(unknownKid)));
    await expect(verifier.verify(fresh2)).resolves.toMatchObject({ subject: 'during-outage-2' });

    const cold = verifierFor(clock, config);
    expect(await authCode(cold.verify(fresh))).toBe('issuer_unavailable');
  });

  it('serves stale cached keys while the issuer accepts connections but never answers (fetch_timeout)', async () => {
    const { port, clock, config, verifier, fresh, fresh2, unknownKid } = await warmedUp();
    const hanging = await startHttp(() => {
      /* never answers */
    }, port);

    // (This first refresh may instead fail on the pooled connection to the stopped issuer.)
    clock.advance(61);
    await expect(verifier.verify(fresh)).resolves.toMatchObject({ subject: 'during-outage' });
    clock.advance(31); // past the cooldown: the refresh goes to the hanging server and times out
    expect(['token_invalid', 'issuer_unavailable']).toContain(await authCode(verifier.verify(unknownKid)));
    clock.advance(31);
    await expect(verifier.verify(fresh2)).resolves.toMatchObject({ subject: 'during-outage-2' });

    const cold = verifierFor(clock, config);
    expect(await authCode(cold.verify(fresh))).toBe('issuer_unavailable');
    // The hanging server really was asked each of the last three times, and the verifier gave up on it.
    expect(hanging.requests.length).toBeGreaterThanOrEqual(3);
  });
});

// ---------------------------------------------------------------- 5. verified-token cache and exp

describe('the verified-token cache and token expiry', () => {
  const ISS = 'https://inline.issuer.test';
  const START = new Date('2030-01-01T00:00:00Z');
  const startSec = START.getTime() / 1000;
  let privateKey: CryptoKey;
  let jwk: JWK;

  beforeAll(async () => {
    ({ privateKey, jwk } = await keyPair('inline'));
  });

  const inlineVerifier = (clock: ManualClock, extra: Record<string, unknown> = {}) =>
    verifierFor(clock, { issuer: ISS, jwks: { keys: [jwk] }, clock_tolerance: 0, ...extra });

  it('never serves a cached token past its exp', async () => {
    const clock = createManualClock(START);
    const verifier = inlineVerifier(clock);
    const token = await sign(privateKey, 'inline', ISS, { iat: startSec, exp: startSec + 60 });
    await expect(verifier.verify(token)).resolves.toMatchObject({ issuer: NAME, expiresAt: new Date((startSec + 60) * 1000) });
    await expect(verifier.verify(token)).resolves.toMatchObject({ issuer: NAME }); // from the cache
    clock.advance(61);
    expect(await authCode(verifier.verify(token))).toBe('token_expired');
  });

  it('never serves a cached token past max_token_age', async () => {
    const clock = createManualClock(START);
    const verifier = inlineVerifier(clock, { max_token_age: 60 });
    const token = await sign(privateKey, 'inline', ISS, { iat: startSec, exp: startSec + 3600 });
    await expect(verifier.verify(token)).resolves.toMatchObject({ issuer: NAME });
    clock.advance(61);
    // An uncached verification refuses it (jose: iat too far in the past); the cache must agree.
    expect(await authCode(inlineVerifier(clock, { max_token_age: 60 }).verify(token))).toBe('token_expired');
    expect(await authCode(verifier.verify(token))).toBe('token_expired');
  });

  type Op = { kind: 'verify'; token: number } | { kind: 'advance'; ms: number };

  it('property: over any sequence of verifications and clock moves, a token is accepted iff now < exp', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 90 }), { minLength: 1, maxLength: 4 }),
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant('verify' as const), token: fc.nat({ max: 3 }) }),
            // Whole seconds mostly, with sub-second steps to probe the boundary from both sides.
            fc.record({
              kind: fc.constant('advance' as const),
              ms: fc.oneof(fc.integer({ min: 0, max: 30 }).map((s) => s * 1000), fc.integer({ min: 0, max: 2000 })),
            }),
          ),
          { maxLength: 40 },
        ),
        async (lifetimes, ops) => {
          const clock = createManualClock(START);
          const verifier = inlineVerifier(clock);
          const exps = lifetimes.map((l) => startSec + l);
          const tokens = await Promise.all(exps.map((exp) => sign(privateKey, 'inline', ISS, { iat: startSec, exp })));
          let now = START.getTime();
          for (const op of ops as Op[]) {
            if (op.kind === 'advance') {
              now += op.ms;
              clock.set(new Date(now));
              continue;
            }
            const i = op.token % tokens.length;
            const result = await verifier.verify(tokens[i]!).then(
              () => 'accepted',
              (e: unknown) => (e instanceof AuthError ? e.code : String(e)),
            );
            expect(result, `token ${i} exp=${exps[i]} now=${now / 1000}`).toBe(now < exps[i]! * 1000 ? 'accepted' : 'token_expired');
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

// ---------------------------------------------------------------- 6. size caps and the discovery issuer

describe('hostile or broken issuer endpoints', () => {
  let privateKey: CryptoKey;
  let jwk: JWK;
  beforeAll(async () => {
    ({ privateKey, jwk } = await keyPair('k'));
  });

  const MiB = 1024 * 1024;
  /** A valid JWKS (it holds the real key) padded to about `bytes`. */
  const paddedJwks = (bytes: number) => {
    const base = JSON.stringify({ keys: [jwk], padding: '' });
    return JSON.stringify({ keys: [jwk], padding: 'x'.repeat(Math.max(0, bytes - base.length)) });
  };

  /** An issuer whose discovery doc and JWKS are served by hand; `discoveryIssuer` overrides the doc's `issuer`. */
  async function handmadeIssuer(opts: { discoveryIssuer?: (url: string) => string; discoveryPadding?: number } = {}) {
    let base = '';
    const stub = await startHttp((req, res) => {
      if (req.url === '/.well-known/openid-configuration') {
        const doc: Record<string, unknown> = { issuer: opts.discoveryIssuer?.(base) ?? base, jwks_uri: `${base}/jwks` };
        if (opts.discoveryPadding) doc.padding = 'x'.repeat(opts.discoveryPadding);
        return json(res, doc);
      }
      if (req.url === '/jwks') return json(res, { keys: [jwk] });
      if (req.url === '/jwks-huge') {
        res.setHeader('content-type', 'application/json');
        return res.end(paddedJwks(MiB)); // with content-length
      }
      if (req.url === '/jwks-huge-chunked') {
        // No content-length: the cap must hold while streaming.
        res.setHeader('content-type', 'application/json');
        const body = Buffer.from(paddedJwks(MiB));
        for (let off = 0; off < body.length; off += 64 * 1024) res.write(body.subarray(off, off + 64 * 1024));
        return res.end();
      }
      res.statusCode = 404;
      res.end();
    });
    base = stub.url;
    return stub;
  }

  const tokenFor = (iss: string) => sign(privateKey, 'k', iss, { iat: nowSec(), exp: nowSec() + 600 });

  it('accepts a token from the hand-made issuer when nothing is wrong (control)', async () => {
    const stub = await handmadeIssuer();
    const verifier = verifierFor(realTimeClock(), { issuer: stub.url });
    await expect(verifier.verify(await tokenFor(stub.url))).resolves.toMatchObject({ issuer: NAME });
    expect(stub.requests).toEqual(['/.well-known/openid-configuration', '/jwks']);
  });

  it.each(['/jwks-huge', '/jwks-huge-chunked'])('treats a 1 MiB JWKS at %s as an unavailable issuer', async (path) => {
    const stub = await handmadeIssuer();
    const verifier = verifierFor(realTimeClock(), { issuer: stub.url, jwks_uri: `${stub.url}${path}` });
    expect(await authCode(verifier.verify(await tokenFor(stub.url)))).toBe('issuer_unavailable');
    expect(stub.requests).toContain(path);
  });

  it('treats a 1 MiB JWKS reached through discovery as an unavailable issuer', async () => {
    let base = '';
    const stub = await startHttp((req, res) => {
      if (req.url === '/.well-known/openid-configuration') return json(res, { issuer: base, jwks_uri: `${base}/jwks` });
      res.setHeader('content-type', 'application/json');
      res.end(paddedJwks(MiB));
    });
    base = stub.url;
    const verifier = verifierFor(realTimeClock(), { issuer: stub.url });
    expect(await authCode(verifier.verify(await tokenFor(stub.url)))).toBe('issuer_unavailable');
    expect(stub.requests).toEqual(['/.well-known/openid-configuration', '/jwks']);
  });

  it('treats an oversized discovery document as an unavailable issuer', async () => {
    const stub = await handmadeIssuer({ discoveryPadding: MiB });
    const verifier = verifierFor(realTimeClock(), { issuer: stub.url });
    expect(await authCode(verifier.verify(await tokenFor(stub.url)))).toBe('issuer_unavailable');
    expect(stub.requests).not.toContain('/jwks');
  });

  it('refuses a discovery document whose issuer has a trailing slash the configured one lacks', async () => {
    const stub = await handmadeIssuer({ discoveryIssuer: (url) => `${url}/` });
    const verifier = verifierFor(realTimeClock(), { issuer: stub.url });
    expect(await authCode(verifier.verify(await tokenFor(stub.url)))).toBe('issuer_unavailable');
    expect(stub.requests).not.toContain('/jwks');
  });

  it('refuses a discovery document whose issuer lacks the trailing slash the configured one has', async () => {
    const stub = await handmadeIssuer();
    const verifier = verifierFor(realTimeClock(), { issuer: `${stub.url}/` });
    expect(await authCode(verifier.verify(await tokenFor(`${stub.url}/`)))).toBe('issuer_unavailable');
    expect(stub.requests).not.toContain('/jwks');
  });
});

// ---------------------------------------------------------------- unknown issuers cost nothing

describe('tokens from unknown issuers', () => {
  it('never fetch anything, whatever their iss, jku or x5u say', async () => {
    const { privateKey, jwk } = await keyPair('k');
    let base = '';
    const trusted = await startHttp((req, res) => {
      if (req.url === '/.well-known/openid-configuration') return json(res, { issuer: base, jwks_uri: `${base}/jwks` });
      if (req.url === '/jwks') return json(res, { keys: [jwk] });
      res.statusCode = 404;
      res.end();
    });
    base = trusted.url;
    const attacker = await startHttp((_req, res) => json(res, { keys: [jwk] }));
    const verifier = verifierFor(realTimeClock(), { issuer: trusted.url });
    const times = { iat: nowSec(), exp: nowSec() + 600 };
    const headerUrls = { jku: `${attacker.url}/jwks`, x5u: `${attacker.url}/cert.pem` };

    for (const iss of [attacker.url, `${trusted.url}/`, `${trusted.url}/other`, trusted.url.replace('127.0.0.1', 'localhost'), 'https://evil.example']) {
      expect(await authCode(verifier.verify(await sign(privateKey, 'k', iss, times, headerUrls)))).toBe('issuer_unknown');
    }
    expect(trusted.requests).toEqual([]);
    expect(attacker.requests).toEqual([]);
    expect(verifier.keyFetches(NAME)).toBe(0);

    // A trusted iss fetches from the configured issuer only, never from the header's URLs.
    await expect(verifier.verify(await sign(privateKey, 'k', trusted.url, times, headerUrls))).resolves.toMatchObject({ issuer: NAME });
    expect(trusted.requests).toEqual(['/.well-known/openid-configuration', '/jwks']);
    expect(attacker.requests).toEqual([]);
  });
});
