import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

/** An OIDC-style issuer whose keys the test generates: tokens for any subject, with any claims. */
export async function createTestIssuer(name = 'test', url = 'https://issuer.test.invalid', audience = 'https://tasklease.test') {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  return {
    name,
    url,
    audience,
    config: { name, issuer: url, jwks: { keys: [jwk] }, audiences: [audience], algorithms: ['ES256' as const] },
    /** Signs a token valid for an hour from `now` (real time unless given). */
    sign(subject: string, claims: JWTPayload = {}, now = new Date()): Promise<string> {
      const iat = Math.floor(now.getTime() / 1000);
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(url)
        .setAudience(audience)
        .setSubject(subject)
        .setIssuedAt(iat)
        .setExpirationTime(iat + 3600)
        .sign(privateKey);
    },
  };
}
export type TestIssuer = Awaited<ReturnType<typeof createTestIssuer>>;
