import { eq, sql } from 'drizzle-orm';
import { verifyIssuedToken } from '../backends/jwt.js';
import type { SigningKeyStore } from '../backends/jwt-keys.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { leases } from '../db/schema.js';
import { UUID_RE } from '../ids.js';

export interface IntrospectDeps {
  db: Db;
  clock: Clock;
  keys: SigningKeyStore;
  issuer: string;
}

/**
 * RFC 7662 for tokens from the jwt backend: active only while the signature
 * holds, the token has not expired, and its lease (the `jti`) is still active.
 * Anything else, including tokens this broker did not sign, is `active: false`
 * with no further detail.
 */
export function createIntrospector({ db, clock, keys, issuer }: IntrospectDeps) {
  const leaseState = db
    .select({ status: leases.status, expiresAt: leases.expiresAt })
    .from(leases)
    .where(eq(leases.id, sql.placeholder('id')))
    .prepare('tl_introspect_lease');
  return async function introspect(token: string): Promise<{ active: boolean } & Record<string, unknown>> {
    const now = clock.now();
    const payload = await verifyIssuedToken(keys, issuer, token, now);
    if (!payload || typeof payload.jti !== 'string' || !UUID_RE.test(payload.jti)) return { active: false };
    const [lease] = await leaseState.execute({ id: payload.jti });
    if (!lease || lease.status !== 'active' || lease.expiresAt <= now) return { active: false };
    return {
      active: true,
      token_type: 'Bearer',
      iss: payload.iss,
      sub: payload.sub,
      aud: payload.aud,
      exp: payload.exp,
      iat: payload.iat,
      nbf: payload.nbf,
      jti: payload.jti,
      ...(typeof payload.scope === 'string' ? { scope: payload.scope } : {}),
      ...(payload.cnf && typeof payload.cnf === 'object' ? { cnf: payload.cnf } : {}),
      task: payload.task,
      role: payload.role,
    };
  };
}
export type Introspector = ReturnType<typeof createIntrospector>;
