import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { dpopProofs } from '../db/schema.js';
import { lt } from 'drizzle-orm';

/** Asymmetric algorithms only (RFC 9449 section 4.2): a proof signed with a shared secret proves nothing. */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
/** How old a proof's `iat` may be, and how far ahead of the broker's clock, in seconds. */
export const DPOP_WINDOW_SECONDS = 60;
const DPOP_SKEW_SECONDS = 5;

export class DpopError extends Error {
  override name = 'DpopError';
}

/** A URI as `htu` compares it (RFC 9449 section 4.3): without query and fragment, scheme and host normalized. */
function htuOf(uri: string): string | undefined {
  try {
    const u = new URL(uri);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return undefined;
  }
}

/**
 * Checks DPoP proofs (RFC 9449): the `dpop+jwt` type, an asymmetric algorithm
 * and a public `jwk` in the header, the signature by that key, `htm` and
 * `htu` for this request, `iat` within the window, and `jti` never seen
 * before by any replica: proofs are recorded in PostgreSQL (`dpop_proofs`,
 * keyed by the key's thumbprint and the `jti`) until they leave the window.
 * Answers the key's SHA-256 thumbprint, the `cnf.jkt` a credential is bound
 * to (test/oauth/dpop.test.ts).
 */
export function createDpopVerifier({ db, clock }: { db: Db; clock: Clock }) {
  async function verify(proof: string, request: { method: string; url: string }): Promise<string> {
    let header;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      throw new DpopError('the DPoP proof is not a compact JWS');
    }
    if (header.typ !== 'dpop+jwt') throw new DpopError('the DPoP proof must have typ dpop+jwt');
    if (typeof header.alg !== 'string' || !DPOP_ALGORITHMS.includes(header.alg)) throw new DpopError('the DPoP proof must be signed with an asymmetric algorithm');
    const jwk = header.jwk as JWK | undefined;
    if (!jwk || typeof jwk !== 'object' || 'd' in jwk || 'k' in jwk || 'p' in jwk) throw new DpopError('the DPoP proof must carry a public jwk');
    const now = clock.now();
    let payload;
    try {
      const key = await importJWK(jwk, header.alg);
      ({ payload } = await jwtVerify(proof, key, { typ: 'dpop+jwt', algorithms: [header.alg], currentDate: now }));
    } catch {
      throw new DpopError('the DPoP proof does not verify with its jwk');
    }
    if (typeof payload.jti !== 'string' || payload.jti.length < 8 || payload.jti.length > 256) throw new DpopError('the DPoP proof needs a jti');
    if (payload.htm !== request.method) throw new DpopError('the DPoP proof is for another method (htm)');
    if (typeof payload.htu !== 'string' || htuOf(payload.htu) !== htuOf(request.url)) throw new DpopError('the DPoP proof is for another URL (htu)');
    const seconds = now.getTime() / 1000;
    if (typeof payload.iat !== 'number' || payload.iat < seconds - DPOP_WINDOW_SECONDS || payload.iat > seconds + DPOP_SKEW_SECONDS) throw new DpopError('the DPoP proof is stale or from the future (iat)');
    const jkt = await calculateJwkThumbprint(jwk, 'sha256');
    const id = createHash('sha256').update(`${jkt}.${payload.jti}`).digest('hex');
    const fresh = await db
      .insert(dpopProofs)
      .values({ id, expiresAt: new Date((payload.iat + DPOP_WINDOW_SECONDS + DPOP_SKEW_SECONDS) * 1000) })
      .onConflictDoNothing()
      .returning({ id: dpopProofs.id });
    if (fresh.length === 0) throw new DpopError('the DPoP proof was already used (jti)');
    return jkt;
  }

  /** Deletes the proofs that left the window: housekeeping. */
  async function prune(): Promise<number> {
    return (await db.delete(dpopProofs).where(lt(dpopProofs.expiresAt, clock.now())).returning({ id: dpopProofs.id })).length;
  }

  return { verify, prune };
}
export type DpopVerifier = ReturnType<typeof createDpopVerifier>;
