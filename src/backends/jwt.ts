import { jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { Backend } from './types.js';
import type { SigningKeyStore } from './jwt-keys.js';

export interface JwtBackendOptions {
  name: string;
  /** The `iss` of every token: the broker's public URL. */
  issuer: string;
  keys: SigningKeyStore;
}

/**
 * The built-in signer. Its tokens expire on their own (`exp` is the lease's
 * expiry), and revocation takes effect through introspection, which answers
 * `active: false` once the lease is no longer active; so revoke has nothing
 * to call and always succeeds.
 */
export function createJwtBackend(options: JwtBackendOptions): Backend {
  return {
    name: options.name,
    type: 'jwt',
    async mint({ leaseId, taskId, role, identity, ttlSeconds, now }) {
      const { kid, key } = await options.keys.signingKey();
      const iat = Math.floor(now.getTime() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({
        task: taskId,
        role: role.name,
        ...(role.jwt?.scope ? { scope: role.jwt.scope } : {}),
      })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setIssuer(options.issuer)
        .setSubject(identity.subject)
        .setAudience(role.jwt?.audience ?? role.name)
        .setJti(leaseId)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(exp)
        .sign(key);
      return {
        credentials: { type: 'jwt', token, token_type: 'Bearer' },
        ref: leaseId,
        expiresAt: new Date(exp * 1000),
      };
    },
    async revoke() {},
  };
}

/** Verifies a token this broker signed (for introspection); undefined when it is not one. */
export async function verifyIssuedToken(
  keys: SigningKeyStore,
  issuer: string,
  token: string,
  now: Date,
): Promise<JWTPayload | undefined> {
  try {
    const { payload } = await jwtVerify(token, await keys.keyResolver(), {
      issuer,
      algorithms: ['ES256'],
      currentDate: now,
      requiredClaims: ['jti', 'exp'],
    });
    return payload;
  } catch {
    return undefined;
  }
}
