import { sign, type KeyObject } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
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
 * to call and always succeeds. A relying party that only checks the signature
 * against /.well-known/jwks.json accepts a revoked token until `exp`, so the
 * lease says `revocable: false` (and counts as held until `exp`) unless the
 * role declares that its relying parties introspect
 * (test/policy/held.test.ts).
 */
export function createJwtBackend(options: JwtBackendOptions): Backend {
  return {
    name: options.name,
    type: 'jwt',
    async mint({ leaseId, taskId, role, identity, ttlSeconds, scope, cnfJkt, actFor, now }) {
      const { kid, key } = await options.keys.signingKey();
      const iat = Math.floor(now.getTime() / 1000);
      const exp = iat + ttlSeconds;
      const token = signEs256(key, kid, {
        task: taskId,
        role: role.name,
        ...((scope ?? role.jwt?.scope) ? { scope: scope ?? role.jwt?.scope } : {}),
        iss: options.issuer,
        sub: actFor?.subject ?? identity.subject,
        ...(actFor ? { act: actFor.act } : {}),
        // RFC 9068's client: the workload identity the credential was issued to.
        client_id: `${identity.issuer}/${identity.subject}`,
        aud: role.jwt?.audience ?? role.name,
        jti: leaseId,
        ...(cnfJkt ? { cnf: { jkt: cnfJkt } } : {}),
        iat,
        nbf: iat,
        exp,
      });
      return {
        credentials: { type: 'jwt', token, token_type: cnfJkt ? 'DPoP' : 'Bearer' },
        ref: leaseId,
        expiresAt: new Date(exp * 1000),
        revocable: role.jwt?.relying_parties_introspect === true,
      };
    },
    async revoke() {},
  };
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * A compact JWS (RFC 7515) signed with ES256 by node:crypto: the signature is
 * R || S, 64 bytes (RFC 7518 section 3.4). Synchronous, a fifth of the cost of
 * signing through WebCrypto on the issuance hot path; jose verifies these
 * tokens (introspection, and the tests).
 */
export function signEs256(key: KeyObject, kid: string, payload: Record<string, unknown>, typ = 'at+jwt'): string {
  // Explicitly typed (an RFC 9068 access token is `at+jwt`, a security event `secevent+jwt`), so that one cannot pass for another JWT.
  const input = `${b64url({ alg: 'ES256', kid, typ })}.${b64url(payload)}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
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
