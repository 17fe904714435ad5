import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { createJwtBackend, signEs256, verifyIssuedToken } from '../../src/backends/jwt.js';
import { createSigningKeyStore } from '../../src/backends/jwt-keys.js';
import { createManualClock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/load.js';

const role = parseConfig(
  {
    issuers: [{ name: 'i', issuer: 'https://i.invalid', jwks: { keys: [{ kty: 'EC' }] } }],
    backends: { local: { type: 'jwt' } },
    roles: [{ name: 'api', backend: 'local', allow: [{ issuer: 'i', subject: 'a' }], jwt: { audience: 'aud-1', scope: 'x:read' } }],
  },
  'test',
).roles[0]!;
const identity = { issuer: 'i', subject: 'agent-1', claims: {}, tokenSha256: 'h', expiresAt: new Date(0) };

async function setup(rotationSeconds = 100, maxTokenTtlSeconds = 50) {
  const dir = mkdtempSync(join(tmpdir(), 'tl-keys-'));
  const clock = createManualClock();
  const keys = await createSigningKeyStore({ dir, clock, rotationSeconds, maxTokenTtlSeconds });
  const backend = createJwtBackend({ name: 'local', issuer: 'https://broker.test', keys });
  const mint = (leaseId: string, ttlSeconds = 30) => backend.mint({ leaseId, taskId: 't-1', role, identity, ttlSeconds, maxTtlSeconds: ttlSeconds, now: clock.now() });
  return { dir, clock, keys, backend, mint };
}

describe('jwt backend', () => {
  it('signs ES256 tokens naming lease (jti), task, role, audience and expiry', async () => {
    const { keys, clock, mint } = await setup();
    const minted = await mint('0190c3a0-0000-7000-8000-000000000001', 30);
    expect(minted.ref).toBe('0190c3a0-0000-7000-8000-000000000001');
    expect(minted.expiresAt.getTime()).toBe(clock.now().getTime() + 30_000);
    const token = minted.credentials.token as string;
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
    const payload = await verifyIssuedToken(keys, 'https://broker.test', token, clock.now());
    expect(payload).toMatchObject({ jti: minted.ref, task: 't-1', role: 'api', aud: 'aud-1', scope: 'x:read', sub: 'agent-1' });
    expect(payload!.exp! - payload!.iat!).toBe(30);
    clock.advance(31);
    expect(await verifyIssuedToken(keys, 'https://broker.test', token, clock.now())).toBeUndefined();
    expect(await verifyIssuedToken(keys, 'https://someone-else.test', token, clock.now())).toBeUndefined();
  });

  it("says a token cannot be cut off before exp, unless the role's relying parties introspect", async () => {
    const { backend, clock } = await setup();
    const mint = (r: typeof role) => backend.mint({ leaseId: '0190c3a0-0000-7000-8000-000000000009', taskId: 't-1', role: r, identity, ttlSeconds: 30, maxTtlSeconds: 30, now: clock.now() });
    expect((await mint(role)).revocable).toBe(false);
    expect((await mint({ ...role, jwt: { require_dpop: false, ...role.jwt, relying_parties_introspect: true } })).revocable).toBe(true);
  });

  it('signs compact JWS that jose verifies against the published JWKS, for any claims', async () => {
    const { keys } = await setup();
    const { kid, key } = await keys.signingKey();
    const jwks = createLocalJWKSet(await keys.jwks());
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }), async (claims) => {
        const payload = JSON.parse(JSON.stringify(claims)) as Record<string, unknown>;
        const token = signEs256(key, kid, payload);
        const verified = await compactVerify(token, jwks, { algorithms: ['ES256'] });
        expect(verified.protectedHeader).toEqual({ alg: 'ES256', kid, typ: 'at+jwt' });
        expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual(payload);
      }),
      { numRuns: 100 },
    );
  });

  it('persists its key with mode 0600 and reuses it after a restart', async () => {
    const { dir, clock, keys } = await setup();
    const first = await keys.signingKey();
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(statSync(join(dir, files[0]!)).mode & 0o777).toBe(0o600);
    const again = await createSigningKeyStore({ dir, clock, rotationSeconds: 100, maxTokenTtlSeconds: 50 });
    expect((await again.signingKey()).kid).toBe(first.kid);
  });

  it('publishes a new key before signing with it, keeps the old one until its tokens expired, then drops it', async () => {
    const { keys, clock, mint } = await setup(100, 50); // publish lead: half the rotation, 50 s
    const kidOf = async (leaseId: string) => decodeProtectedHeader((await mint(leaseId, 50)).credentials.token as string).kid;
    const oldKid = await kidOf('0190c3a0-0000-7000-8000-000000000002');
    clock.advance(60); // the next key is due 50 s before rotation: created and published, not yet signing
    expect(await kidOf('0190c3a0-0000-7000-8000-000000000003')).toBe(oldKid);
    const published = (await keys.jwks()).keys.map((k) => k.kid);
    expect(published).toHaveLength(2);
    const newKid = published.find((k) => k !== oldKid);
    clock.advance(51);
    expect(await kidOf('0190c3a0-0000-7000-8000-000000000004')).toBe(newKid);
    expect((await keys.jwks()).keys.map((k) => k.kid)).toContain(oldKid);
    expect((await keys.jwks()).keys.every((k) => k.d === undefined)).toBe(true);
    clock.advance(300);
    await keys.signingKey();
    expect((await keys.jwks()).keys.map((k) => k.kid)).not.toContain(oldKid);
  });

  it('revoke is a no-op that always succeeds (introspection carries revocation)', async () => {
    const { backend } = await setup();
    await expect(backend.revoke({ leaseId: 'x', ref: 'x', role: 'api', agent: 'test/agent', backendExpiresAt: new Date() })).resolves.toBeUndefined();
  });
});
