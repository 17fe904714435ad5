import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { OAuth2Server } from 'oauth2-mock-server';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createManualClock, systemClock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/load.js';
import type { IssuerConfig } from '../../src/config/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { createAuthenticator } from '../../src/identity/principals.js';
import { AuthError } from '../../src/identity/types.js';
import { createTokenVerifier } from '../../src/identity/verifier.js';

const AUDIENCE = 'https://tasklease.test';
const ISSUER_URL = 'https://issuer.test.invalid';

/** Issuer configs go through the real schema so defaults (clock_tolerance, algorithms) apply. */
function issuers(list: Record<string, unknown>[]): IssuerConfig[] {
  return parseConfig({ issuers: list }, 'test').issuers;
}

/** The AuthError code a promise rejects with. */
async function authCode(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  return (err as AuthError).code;
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('createTokenVerifier with an inline JWKS', () => {
  const clock = createManualClock(new Date('2030-01-01T00:00:00Z'));
  const nowSec = () => Math.floor(clock.now().getTime() / 1000);
  let es: CryptoKey;
  let rs: CryptoKey;
  let stranger: CryptoKey;
  let keys: JWK[];

  beforeAll(async () => {
    const esPair = await generateKeyPair('ES256');
    const rsPair = await generateKeyPair('RS256');
    es = esPair.privateKey;
    rs = rsPair.privateKey;
    stranger = (await generateKeyPair('ES256')).privateKey;
    keys = [
      { ...(await exportJWK(esPair.publicKey)), kid: 'es', alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(rsPair.publicKey)), kid: 'rs', alg: 'RS256', use: 'sig' },
    ];
  });

  const verifier = (extra: Record<string, unknown> = {}) =>
    createTokenVerifier({
      issuers: issuers([{ name: 'corp', issuer: ISSUER_URL, jwks: { keys }, audiences: [AUDIENCE], algorithms: ['ES256'], ...extra }]),
      defaultAudience: 'https://default.test',
      clock,
    });

  function sign(
    opts: { key?: CryptoKey; alg?: string; kid?: string; claims?: JWTPayload; iss?: string; aud?: string; exp?: number } = {},
  ) {
    const jwt = new SignJWT({ sub: 'system:serviceaccount:agents:reporter', ...opts.claims })
      .setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: opts.kid ?? 'es' })
      .setIssuer(opts.iss ?? ISSUER_URL)
      .setAudience(opts.aud ?? AUDIENCE)
      .setIssuedAt(nowSec())
      .setExpirationTime(opts.exp ?? nowSec() + 600);
    return jwt.sign(opts.key ?? es);
  }

  it('returns the identity with the issuer name, subject and token hash, never the token', async () => {
    const token = await sign({ claims: { namespace: 'agents' } });
    const identity = await verifier().verify(token);
    expect(identity).toMatchObject({
      issuer: 'corp',
      subject: 'system:serviceaccount:agents:reporter',
      tokenSha256: sha256Hex(token),
      expiresAt: new Date((nowSec() + 600) * 1000),
    });
    expect(identity.tokenSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(identity.claims.namespace).toBe('agents');
    const serialized = JSON.stringify(identity);
    expect(serialized).not.toContain(token);
    expect(serialized).not.toContain(token.split('.')[2]!);
  });

  it('rejects an expired token as token_expired, but tolerates clock skew within clock_tolerance', async () => {
    expect(await authCode(verifier().verify(await sign({ exp: nowSec() - 120 })))).toBe('token_expired');
    await expect(verifier().verify(await sign({ exp: nowSec() - 10 }))).resolves.toMatchObject({ issuer: 'corp' });
  });

  it('rejects a token that expires once the clock moves on', async () => {
    const token = await sign({ exp: nowSec() + 60 });
    const v = verifier();
    await expect(v.verify(token)).resolves.toBeDefined();
    clock.advance(3600);
    expect(await authCode(v.verify(token))).toBe('token_expired');
  });

  it('refuses an exp past the JavaScript date range (it would never expire from the cache)', async () => {
    const v = verifier();
    // 8.64e12 s is the last second a Date can hold; one past it makes an Invalid Date.
    for (const exp of [8.64e12 + 1, 1e300]) {
      const token = await sign({ exp });
      expect(await authCode(v.verify(token))).toBe('token_invalid');
      expect(await authCode(v.verify(token))).toBe('token_invalid');
    }
  });

  it('rejects the wrong audience as token_invalid', async () => {
    expect(await authCode(verifier().verify(await sign({ aud: 'https://someone-else.test' })))).toBe('token_invalid');
  });

  it('uses the default audience when the issuer lists none', async () => {
    const v = verifier({ audiences: undefined });
    await expect(v.verify(await sign({ aud: 'https://default.test' }))).resolves.toMatchObject({ issuer: 'corp' });
    expect(await authCode(v.verify(await sign({ aud: AUDIENCE })))).toBe('token_invalid');
  });

  it('rejects an unknown issuer without any network access', async () => {
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    try {
      const token = await sign({ iss: 'https://evil.example.com' });
      expect(await authCode(verifier().verify(token))).toBe('issuer_unknown');
      const noIss = `${b64({ alg: 'ES256' })}.${b64({ sub: 'x', exp: nowSec() + 60 })}.sig`;
      expect(await authCode(verifier().verify(noIss))).toBe('issuer_unknown');
      expect(fetchSpy).not.toHaveBeenCalled();
    } finally {
      fetchSpy.mockRestore();
    }
  });

  it('rejects an algorithm the issuer does not allow, even with a published key', async () => {
    const token = await sign({ key: rs, alg: 'RS256', kid: 'rs' });
    expect(await authCode(verifier().verify(token))).toBe('token_invalid');
    await expect(verifier({ algorithms: ['RS256'] }).verify(token)).resolves.toMatchObject({ issuer: 'corp' });
  });

  it('rejects an unsigned alg:none token', async () => {
    const header = b64({ alg: 'none', typ: 'JWT' });
    const payload = b64({ iss: ISSUER_URL, aud: AUDIENCE, sub: 'admin', iat: nowSec(), exp: nowSec() + 600 });
    expect(await authCode(verifier().verify(`${header}.${payload}.`))).toBe('token_invalid');
  });

  it('rejects a token signed by a key the issuer does not publish', async () => {
    expect(await authCode(verifier().verify(await sign({ key: stranger })))).toBe('token_invalid');
    expect(await authCode(verifier().verify(await sign({ key: stranger, kid: 'other' })))).toBe('token_invalid');
  });

  it('rejects a tampered payload', async () => {
    const [h, , s] = (await sign()).split('.');
    const forged = b64({ iss: ISSUER_URL, aud: AUDIENCE, sub: 'admin', exp: nowSec() + 600 });
    expect(await authCode(verifier().verify(`${h}.${forged}.${s}`))).toBe('token_invalid');
  });

  it.each([123, true, '', ['system:serviceaccount:ops:admin'], { a: 1 }])('rejects a non-string or empty sub %j', async (sub) => {
    const token = await sign({ claims: { sub } as JWTPayload });
    expect(await authCode(verifier().verify(token))).toBe('token_invalid');
  });

  it('requires sub and exp', async () => {
    const noSub = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'es' })
      .setIssuer(ISSUER_URL)
      .setAudience(AUDIENCE)
      .setExpirationTime(nowSec() + 600)
      .sign(es);
    const noExp = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'ES256', kid: 'es' })
      .setIssuer(ISSUER_URL)
      .setAudience(AUDIENCE)
      .sign(es);
    expect(await authCode(verifier().verify(noSub))).toBe('token_invalid');
    expect(await authCode(verifier().verify(noExp))).toBe('token_invalid');
  });

  it.each(['garbage', '', 'a.b', 'a.b.c', 'Bearer x.y.z', `${b64({ alg: 'ES256' })}.not-json.sig`])(
    'rejects the malformed token %j as token_malformed',
    async (token) => {
      expect(await authCode(verifier().verify(token))).toBe('token_malformed');
    },
  );
});

describe('createTokenVerifier against a real OIDC issuer over HTTP', () => {
  const server = new OAuth2Server();
  let url: string;

  beforeAll(async () => {
    await server.issuer.keys.generate('RS256');
    await server.start(0, '127.0.0.1');
    url = `http://127.0.0.1:${server.address().port}`;
    server.issuer.url = url;
  });
  afterAll(async () => {
    await server.stop();
  });

  const build = (sub: string, extra: Record<string, unknown> = {}) =>
    server.issuer.buildToken({
      scopesOrTransform: (_header, payload) => {
        payload.sub = sub;
        payload.aud = AUDIENCE;
        Object.assign(payload, extra);
      },
    });

  const verifier = (extra: Record<string, unknown>) =>
    createTokenVerifier({
      issuers: issuers([{ name: 'mock', issuer: url, audiences: [AUDIENCE], algorithms: ['RS256'], ...extra }]),
      defaultAudience: AUDIENCE,
      clock: systemClock,
    });

  it('verifies a token using discovery from the issuer URL alone', async () => {
    const token = await build('repo:acme/app:ref:refs/heads/main');
    const identity = await verifier({}).verify(token);
    expect(identity).toMatchObject({ issuer: 'mock', subject: 'repo:acme/app:ref:refs/heads/main', tokenSha256: sha256Hex(token) });
  });

  it('verifies a token using an explicit jwks_uri', async () => {
    const token = await build('workload-a');
    await expect(verifier({ jwks_uri: `${url}/jwks` }).verify(token)).resolves.toMatchObject({
      issuer: 'mock',
      subject: 'workload-a',
    });
  });

  it('rejects a token for another audience and an expired token from the real issuer', async () => {
    const v = verifier({});
    expect(await authCode(v.verify(await build('w', { aud: 'https://elsewhere.test' })))).toBe('token_invalid');
    expect(await authCode(v.verify(await build('w', { exp: Math.floor(Date.now() / 1000) - 3600 })))).toBe('token_expired');
  });

  it('refuses a discovery document whose issuer differs from the configured one', async () => {
    const token = await build('w', { iss: `${url}/` });
    expect(await authCode(verifier({ issuer: `${url}/` }).verify(token))).toBe('issuer_unavailable');
  });

  it('reports issuer_unavailable when the issuer cannot be reached', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const dead = 'http://127.0.0.1:1';
    const token = await new SignJWT({ sub: 'w' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k' })
      .setIssuer(dead)
      .setAudience(AUDIENCE)
      .setExpirationTime('10m')
      .sign(privateKey);
    expect(await authCode(verifier({ issuer: dead }).verify(token))).toBe('issuer_unavailable');
  });
});

describe('createAuthenticator', () => {
  const ADMIN_TOKEN = 'tl_admin_0123456789abcdef';
  const ORCH_TOKEN = 'tl_orch_fedcba9876543210';
  let privateKey: CryptoKey;
  let jwk: JWK;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
  });
  afterEach(() => vi.restoreAllMocks());

  function authenticator() {
    const config = parseConfig(
      {
        issuers: [{ name: 'k8s', issuer: ISSUER_URL, jwks: { keys: [jwk] }, algorithms: ['ES256'] }],
        principals: {
          admins: [
            { name: 'ops', token_sha256: sha256Hex(ADMIN_TOKEN) },
            { issuer: 'k8s', subject: 'system:serviceaccount:ops:admin' },
          ],
          orchestrators: [
            { name: 'ci', token_sha256: sha256Hex(ORCH_TOKEN) },
            { issuer: 'k8s', subject_pattern: 'system:serviceaccount:ci:.+' },
          ],
        },
      },
      'test',
    );
    const verifier = createTokenVerifier({ issuers: config.issuers, defaultAudience: AUDIENCE, clock: systemClock });
    return createAuthenticator(verifier, config.principals);
  }

  const token = (sub: string) =>
    new SignJWT({ sub })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER_URL)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);

  it('matches a static admin token by its sha256, without an identity', async () => {
    const principal = await authenticator().authenticate(ADMIN_TOKEN);
    expect(principal).toEqual({ actor: 'static:ops', admin: true, orchestrator: false, scopes: [] });
  });

  it('matches a static orchestrator token', async () => {
    expect(await authenticator().authenticate(ORCH_TOKEN)).toEqual({ actor: 'static:ci', admin: false, orchestrator: true, scopes: [] });
  });

  it.each(['wrong-token', `${ADMIN_TOKEN}x`, sha256Hex(ADMIN_TOKEN), ''])('rejects the static token %j', async (bearer) => {
    expect(await authCode(authenticator().authenticate(bearer))).toBe('token_invalid');
  });

  it('matches an OIDC identity as admin by rule', async () => {
    const principal = await authenticator().authenticate(await token('system:serviceaccount:ops:admin'));
    expect(principal).toMatchObject({ actor: 'k8s/system:serviceaccount:ops:admin', admin: true, orchestrator: false });
    expect(principal.identity?.subject).toBe('system:serviceaccount:ops:admin');
  });

  it('matches an OIDC identity as orchestrator by rule', async () => {
    const principal = await authenticator().authenticate(await token('system:serviceaccount:ci:runner'));
    expect(principal).toMatchObject({ actor: 'k8s/system:serviceaccount:ci:runner', admin: false, orchestrator: true });
  });

  it('gives an agent identity neither role', async () => {
    const bearer = await token('system:serviceaccount:agents:reporter');
    const principal = await authenticator().authenticate(bearer);
    expect(principal).toMatchObject({ actor: 'k8s/system:serviceaccount:agents:reporter', admin: false, orchestrator: false });
    expect(principal.identity).toMatchObject({ issuer: 'k8s', tokenSha256: sha256Hex(bearer) });
  });

  it('passes verifier failures through', async () => {
    expect(await authCode(authenticator().authenticate(`${b64({ alg: 'ES256' })}.${b64({ sub: 'x' })}.sig`))).toBe(
      'issuer_unknown',
    );
  });
});
