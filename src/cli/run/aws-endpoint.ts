/**
 * The loopback container-credentials endpoint `tasklease run` serves its child:
 * unmodified AWS SDKs and the AWS CLI fetch and refresh their credentials from it.
 * It keeps: a request is answered only from a loopback address and with the
 * per-run token (compared in constant time); the answer is the lease's CURRENT
 * credentials, so a re-issued lease is served from then on.
 * Proven by test/cli/run.test.ts ("serves AWS credentials ...").
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LeaseHandle } from '../../client/index.js';

export interface AwsEndpoint {
  /** The per-run token the child sends in Authorization (AWS_CONTAINER_AUTHORIZATION_TOKEN). */
  token: string;
  /** The URL serving `role`'s credentials. */
  uri(role: string): string;
  close(): Promise<void>;
}

const digest = (value: string) => createHash('sha256').update(value).digest();
const isLoopback = (address: string | undefined) => !!address && (/^127\./.test(address) || address === '::1' || /^::ffff:127\./.test(address));

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Serves each AWS role's handle at `/role/<name>` on 127.0.0.1, on a port the system picks. */
export async function startAwsEndpoint(handles: ReadonlyMap<string, LeaseHandle>): Promise<AwsEndpoint> {
  const token = randomBytes(32).toString('base64url');
  const expected = digest(token);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (!isLoopback(req.socket.remoteAddress)) return send(res, 403, { message: 'loopback only' });
    // The SDKs send the token raw; accept `Bearer` as well. Hashes first: equal lengths for the compare.
    const given = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
    if (!timingSafeEqual(digest(given), expected)) return send(res, 403, { message: 'missing or wrong authorization token' });
    if (req.method !== 'GET') return send(res, 405, { message: 'GET only' });
    const match = /^\/role\/([^/?]+)$/.exec((req.url ?? '').split('?')[0]!);
    let role: string | undefined;
    try {
      role = match ? decodeURIComponent(match[1]!) : undefined;
    } catch {
      role = undefined; // a malformed escape names no role
    }
    const handle = role === undefined ? undefined : handles.get(role);
    if (!handle) return send(res, 404, { message: 'no such role' });
    if (handle.lease.status !== 'active') return send(res, 503, { message: `the lease is ${handle.lease.status}` });
    const c = handle.credentials;
    send(res, 200, {
      AccessKeyId: String(c.AccessKeyId),
      SecretAccessKey: String(c.SecretAccessKey),
      Token: String(c.SessionToken),
      // The lease's end, not AWS's: the SDK fetches again before the broker revokes.
      Expiration: handle.lease.expires_at,
    });
  };
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    token,
    uri: (role) => `http://127.0.0.1:${port}/role/${encodeURIComponent(role)}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
