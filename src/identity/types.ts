import type { JWTPayload } from 'jose';

/** A verified workload identity. Never holds the token itself, only its hash. */
export interface Identity {
  /** The configured issuer's name (not its URL). */
  issuer: string;
  subject: string;
  claims: JWTPayload;
  tokenSha256: string;
  expiresAt: Date;
}

/** How an identity is named as an actor in audit rows, leases' attribution and task ownership: `issuer/subject`. */
export const actorOf = (identity: Pick<Identity, 'issuer' | 'subject'>): string => `${identity.issuer}/${identity.subject}`;

export type AuthErrorCode =
  | 'token_missing'
  | 'token_malformed'
  | 'token_invalid'
  | 'token_expired'
  | 'issuer_unknown'
  | 'issuer_unavailable';

/** Why a token was refused; `code` is stable, `message` is safe to show (no token content). */
export class AuthError extends Error {
  override name = 'AuthError';
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}
