import { count, desc, eq } from 'drizzle-orm';
import { errors, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import type { SigningKeyStore } from '../backends/jwt-keys.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { auditEvents, auditHead } from '../db/schema.js';
import { GENESIS_HASH } from './chain.js';
import type { AuditAnchor, AuditVerification } from './verify.js';

/**
 * The JWT `typ` of a checkpoint (RFC 8725 section 3.11, explicit typing): the
 * broker signs credentials with the same keys, and neither may pass for the
 * other. A checkpoint has no `sub`, `aud`, `scope`, `jti` or `exp`, so no
 * relying party and no introspection takes it for a credential; a credential
 * (`typ: JWT`) is refused as a checkpoint.
 */
export const CHECKPOINT_TYP = 'tasklease-audit-checkpoint+jwt';

/** A checkpoint's anchor, when it was signed, and by which key. */
export interface Checkpoint extends AuditAnchor {
  at: Date;
  kid: string;
}

const ClaimsSchema = z.object({
  seq: z.number().int().nonnegative(),
  count: z.number().int().nonnegative(),
  head: z.string().regex(/^[0-9a-f]{64}$/),
  iat: z.number().int(),
});

export interface CheckpointDeps {
  db: Db;
  keys: Pick<SigningKeyStore, 'signingKey'>;
  /** The broker's `public_url`: the checkpoint's `iss`. */
  issuer: string;
  clock: Clock;
}

export type CheckpointResult = { ok: true; token: string; checkpoint: Checkpoint } | Extract<AuditVerification, { ok: false }>;

/**
 * Signs where the chain stands now: its newest row's seq and hash, and how
 * many rows it has, read in one snapshot. Refuses (head_mismatch) when the
 * newest row does not hold `audit_head`'s hash: a checkpoint never vouches for
 * a chain whose end is already gone. It does not walk the chain: verification
 * does, from the first row.
 */
export async function createCheckpoint({ db, keys, issuer, clock }: CheckpointDeps): Promise<CheckpointResult> {
  const state = await db.transaction(
    async (tx) => {
      const [head] = await tx.select({ hash: auditHead.hash }).from(auditHead).where(eq(auditHead.id, 1));
      const [last] = await tx.select({ seq: auditEvents.seq, hash: auditEvents.hash }).from(auditEvents).orderBy(desc(auditEvents.seq)).limit(1);
      const [rows] = await tx.select({ n: count() }).from(auditEvents);
      return { head: head?.hash, seq: last?.seq ?? 0, hash: last?.hash ?? GENESIS_HASH, count: rows?.n ?? 0 };
    },
    { isolationLevel: 'repeatable read', accessMode: 'read only' },
  );
  if (state.head !== state.hash) return { ok: false, checked: 0, seq: state.seq, problem: 'head_mismatch' };
  const { kid, key } = await keys.signingKey();
  const at = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
  const token = await new SignJWT({ seq: state.seq, count: state.count, head: state.hash })
    .setProtectedHeader({ alg: 'ES256', kid, typ: CHECKPOINT_TYP })
    .setIssuer(issuer)
    .setIssuedAt(at)
    .sign(key);
  return { ok: true, token, checkpoint: { seq: state.seq, count: state.count, hash: state.hash, at, kid } };
}

/** Why a checkpoint was refused, in words for an operator. */
export class CheckpointRefused extends Error {}

/**
 * Checks a checkpoint's signature against `keys` (the broker's published keys
 * or a JWKS the operator kept), its type and issuer, and returns what it
 * anchors. Throws CheckpointRefused.
 */
export async function verifyCheckpoint(token: string, keys: JWTVerifyGetKey, issuer: string, keySource: string): Promise<Checkpoint> {
  let verified;
  try {
    verified = await jwtVerify(token.trim(), keys, { issuer, typ: CHECKPOINT_TYP, algorithms: ['ES256'], requiredClaims: ['iat'] });
  } catch (err) {
    if (err instanceof errors.JWKSNoMatchingKey) {
      throw new CheckpointRefused(
        `no key in ${keySource} matches the key it names: the broker drops retired keys, so verify an older checkpoint with --jwks and the JWKS kept beside it`,
      );
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) throw new CheckpointRefused(`its signature does not verify against ${keySource}`);
    if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'typ') throw new CheckpointRefused(`its type is not ${CHECKPOINT_TYP}: not a checkpoint`);
    if (err instanceof errors.JWTClaimValidationFailed) throw new CheckpointRefused(`its "${err.claim}" claim is wrong (${err.reason}): not a checkpoint of this broker (${issuer})`);
    const code = (err as { code?: unknown }).code;
    throw new CheckpointRefused(`it is not a valid signed checkpoint (${typeof code === 'string' ? code : 'unreadable'})`);
  }
  const claims = ClaimsSchema.safeParse(verified.payload);
  if (!claims.success) throw new CheckpointRefused('its claims are not a checkpoint (seq, count, head, iat)');
  const { seq, count: rows, head, iat } = claims.data;
  return { seq, count: rows, hash: head, at: new Date(iat * 1000), kid: verified.protectedHeader.kid ?? '' };
}
