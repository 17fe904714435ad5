import { verifyIssuedToken } from '../backends/jwt.js';
import type { SigningKeyStore } from '../backends/jwt-keys.js';
import type { Clock } from '../clock.js';
import type { Authenticator } from '../identity/principals.js';
import { actorOf, AuthError } from '../identity/types.js';
import { UUID_RE } from '../ids.js';
import type { LeaseService } from '../leases/service.js';
import { OAuthError } from './errors.js';

export interface RevocationDeps {
  clock: Clock;
  keys: SigningKeyStore;
  /** The `iss` of the broker's tokens. */
  issuer: string;
  authenticator: Pick<Authenticator, 'authenticate'>;
  leases: Pick<LeaseService, 'holderRevoke'>;
}

/**
 * RFC 7009 at `POST /oauth2/revoke`: the agent (authenticated by its workload
 * token as a Bearer, its client authentication) revokes a jwt credential it
 * holds; the lease ends `holder_revoked`, through the same path as a release.
 * As the RFC says, an invalid, expired or already revoked token is answered
 * 200, and so is another agent's, whose lease is left alone
 * (test/oauth/token-exchange.test.ts).
 */
export function createRevocation(deps: RevocationDeps) {
  return async function revoke(authorization: string | undefined, form: URLSearchParams, request: { requestId?: string | null; clientRequestId?: string | null }): Promise<void> {
    const bearer = /^Bearer +(\S+) *$/i.exec(authorization ?? '')?.[1];
    if (!bearer) throw new OAuthError('invalid_client', "authenticate with the agent's workload token as a Bearer", 401);
    let identity;
    try {
      identity = (await deps.authenticator.authenticate(bearer)).identity;
    } catch (err) {
      if (err instanceof AuthError) throw new OAuthError('invalid_client', err.message, 401);
      throw err;
    }
    if (!identity) throw new OAuthError('invalid_client', 'only an agent revokes its credentials here', 401);
    const tokens = form.getAll('token');
    if (tokens.length !== 1 || !tokens[0]) throw new OAuthError('invalid_request', 'send the token to revoke, once');
    const payload = await verifyIssuedToken(deps.keys, deps.issuer, tokens[0], deps.clock.now());
    if (!payload || typeof payload.jti !== 'string' || !UUID_RE.test(payload.jti)) return;
    await deps.leases.holderRevoke(identity, payload.jti, { actor: actorOf(identity), requestId: request.requestId ?? null, clientRequestId: request.clientRequestId ?? null });
  };
}
export type Revocation = ReturnType<typeof createRevocation>;
