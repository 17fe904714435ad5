import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Route } from './config.js';

/** The SHA-256 SignatureV4 is built with: node:crypto's, as a hash or, given a key, an HMAC. */
class Sha256 {
  private hash: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    if (secret === undefined) this.hash = createHash('sha256');
    else if (typeof secret === 'string') this.hash = createHmac('sha256', secret);
    else if (secret instanceof ArrayBuffer) this.hash = createHmac('sha256', Buffer.from(secret));
    else this.hash = createHmac('sha256', Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength));
  }
  update(data: string | Uint8Array) {
    this.hash.update(data);
  }
  async digest() {
    return new Uint8Array(this.hash.digest());
  }
}

/** What the gateway sends upstream, before the credential is attached. */
export interface Outgoing {
  method: string;
  url: URL;
  headers: Record<string, string | string[]>;
  /** A buffered body, for a SigV4 service other than S3 (its payload is signed); otherwise the body streams. */
  body?: Buffer;
}

/** How a credential goes onto a request: per its type (the broker's backend), never shown to the caller. */
export type Injection = 'bearer' | 'sigv4' | 'vault-token';

export function injectionFor(credentials: Record<string, unknown>): Injection | undefined {
  if (credentials.type === 'jwt' && typeof credentials.token === 'string' && credentials.token_type !== 'DPoP') return 'bearer';
  if (credentials.type === 'aws' && typeof credentials.AccessKeyId === 'string') return 'sigv4';
  if (credentials.type === 'vault' && credentials.mode === 'token' && typeof credentials.token === 'string') return 'vault-token';
  return undefined;
}

/** Whether the route's body must be read before sending: a SigV4 service other than S3 signs its payload. */
export const buffersBody = (route: Route, injection: Injection) => injection === 'sigv4' && route.service !== 's3';

/**
 * Attaches the credential: `Authorization: Bearer` (jwt), `X-Vault-Token`
 * (a Vault token), or a fresh Signature Version 4 by the AWS SDK's signer with
 * the session's keys (S3 with `UNSIGNED-PAYLOAD`, so its body streams; any
 * other service over the buffered body). The caller's own Authorization and
 * signing headers were removed before this.
 */
export async function inject(route: Route, injection: Injection, credentials: Record<string, unknown>, out: Outgoing): Promise<void> {
  if (injection === 'bearer') {
    out.headers.authorization = `Bearer ${credentials.token as string}`;
    return;
  }
  if (injection === 'vault-token') {
    out.headers['x-vault-token'] = credentials.token as string;
    return;
  }
  const service = route.service!;
  const region = route.region ?? (credentials.Region as string | undefined) ?? 'us-east-1';
  const signer = new SignatureV4({
    credentials: { accessKeyId: credentials.AccessKeyId as string, secretAccessKey: credentials.SecretAccessKey as string, sessionToken: credentials.SessionToken as string },
    region,
    service,
    sha256: Sha256,
    // S3 encodes a key's path once; every other service signs it encoded twice.
    uriEscapePath: service !== 's3',
  });
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of out.url.searchParams) {
    const prior = query[k];
    query[k] = prior === undefined ? v : Array.isArray(prior) ? [...prior, v] : [prior, v];
  }
  const headers: Record<string, string> = { host: out.url.host };
  for (const name of ['content-type', 'content-length', 'content-md5', 'range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']) {
    const value = out.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  for (const [name, value] of Object.entries(out.headers)) if (name.startsWith('x-amz-') && typeof value === 'string') headers[name] = value;
  if (service === 's3') headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  const signed = await signer.sign({
    method: out.method,
    protocol: out.url.protocol,
    hostname: out.url.hostname,
    ...(out.url.port ? { port: Number(out.url.port) } : {}),
    path: out.url.pathname,
    query,
    headers,
    ...(out.body !== undefined ? { body: out.body } : {}),
  });
  for (const [name, value] of Object.entries(signed.headers)) out.headers[name.toLowerCase()] = value;
}
