// A relying party's SSF receiver for tasklease (RFC 8935 push), on jose alone: docs/oauth.md.
import { createServer } from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';

/** Accepts tasklease's SETs for `clientId`; `revoked` holds the jti of every token it was told has ended. */
export function createSsfReceiver({ transmitter, clientId, authorization }) {
  const keys = createRemoteJWKSet(new URL(`${transmitter}/.well-known/jwks.json`));
  const revoked = new Set(); // Keep a jti until its token's exp (the role's max_ttl at most), then forget it.
  const server = createServer(async (req, res) => {
    const answer = (status, err) => res.writeHead(status, err ? { 'content-type': 'application/json' } : {}).end(err ? JSON.stringify({ err }) : undefined);
    if (authorization && req.headers.authorization !== authorization) return answer(401, 'authentication_failed');
    if (req.method !== 'POST' || req.headers['content-type'] !== 'application/secevent+jwt') return answer(400, 'invalid_request');
    let body = '';
    for await (const chunk of req) body += chunk;
    try {
      // Signed by the broker's key, for this receiver, and a SET (not an access token replayed here).
      const { payload } = await jwtVerify(body, keys, { issuer: transmitter, audience: clientId, typ: 'secevent+jwt' });
      const subject = payload.sub_id;
      // The same SET may come twice (delivery is at least once): adding a jti again changes nothing.
      if (payload.events?.[SESSION_REVOKED] && subject?.format === 'jwt_id' && subject.iss === transmitter) revoked.add(subject.jti);
      answer(202);
    } catch {
      answer(400, 'invalid_key');
    }
  });
  return { server, revoked };
}
