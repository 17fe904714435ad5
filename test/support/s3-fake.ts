import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AwsFake } from './aws-fake.js';
import { parseAuthorization, verifySignature } from './aws-fake/sigv4.js';
import { AwsError } from './aws-fake/state.js';

/**
 * An S3-like upstream for the gateway's tests: path-style GetObject
 * (`GET /<bucket>/<key>`), answered only to a request signed with Signature
 * Version 4 (the AWS fake's verifier, written from AWS's documentation, with
 * S3's rules: the path encoded once, the payload hash from
 * `x-amz-content-sha256`) by the keys of a live session the AWS fake issued,
 * its session token included, and that the session's role does not deny.
 * Errors as S3 answers them: XML with a Code.
 */
export async function startS3Fake(aws: AwsFake, objects: Record<string, string>) {
  const requests: { method: string; url: string; headers: Record<string, string | string[] | undefined> }[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      try {
        const auth = parseAuthorization(req.headers.authorization);
        if (auth.service !== 's3') throw new AwsError(403, 'SignatureDoesNotMatch', `signed for ${auth.service}, not s3`);
        const session = aws.sessions.get(auth.accessKeyId);
        if (!session) throw new AwsError(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
        if (req.headers['x-amz-security-token'] !== session.sessionToken) throw new AwsError(403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.');
        if (session.expiration.getTime() <= Date.now()) throw new AwsError(400, 'ExpiredToken', 'The provided token has expired.');
        const pairs: [string, string][] = [];
        for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) pairs.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
        verifySignature({ method: req.method ?? 'GET', url: req.url ?? '/', headers: pairs, body: '' }, auth, session.secretAccessKey, new Date());
        if (aws.isDenied(auth.accessKeyId, undefined, 's3:GetObject')) throw new AwsError(403, 'AccessDenied', 'Access Denied');
        const path = decodeURIComponent((req.url ?? '/').split('?')[0]!.slice(1));
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new AwsError(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
        const body = objects[path];
        if (body === undefined) throw new AwsError(404, 'NoSuchKey', 'The specified key does not exist.');
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), etag: '"fake"', 'last-modified': new Date(0).toUTCString() });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch (err) {
        const e = err instanceof AwsError ? err : new AwsError(500, 'InternalError', 'We encountered an internal error.');
        const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${e.code}</Code><Message>${e.message}</Message></Error>`;
        res.writeHead(e.status, { 'content-type': 'application/xml' });
        res.end(xml);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
