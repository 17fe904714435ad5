import { createServer, type Server } from 'node:http';
import { decodeJwt } from 'jose';

/** What the echo upstream says of an Authorization header: its scheme and, for a JWT, whose and what it is. Never the token. */
export function describeAuthorization(header: string | undefined): string {
  if (!header) return 'none';
  const [scheme, value = ''] = header.split(' ');
  try {
    const claims = decodeJwt(value);
    const left = typeof claims.exp === 'number' ? `${claims.exp - Math.floor(Date.now() / 1000)}s left` : 'no exp';
    return `${scheme} <a jwt of ${value.length} characters: sub ${String(claims.sub)}, role ${String(claims.role)}, task ${String(claims.task)}, aud ${String(claims.aud)}, ${left}>`;
  } catch {
    return `${scheme} <${value.length} characters>`;
  }
}

/**
 * `tasklease dev echo`: an upstream for trying the gateway (README). It
 * answers every request with what it received (method, path, headers) and
 * describes the credential the gateway attached without repeating it, so the
 * agent's output shows that a token was injected and what it was, never the
 * token itself.
 */
export function createEchoUpstream(): Server {
  return createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => name !== 'authorization' && name !== 'x-vault-token'));
      const body = JSON.stringify({ method: req.method, path: req.url, authorization: describeAuthorization(req.headers.authorization), headers }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${body}\n`);
    });
  });
}
