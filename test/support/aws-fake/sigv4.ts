/**
 * Signature Version 4 verification, written from the spec rather than with the
 * SDK's own signer, so a signing bug in the SDK would not also hide here.
 * Checked in aws-fake.test.ts against AWS's published test-suite vectors.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { AwsError } from './state.js';

export interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

export interface SignableRequest {
  method: string;
  /** Path and query exactly as on the wire, e.g. `/` or `/?Action=GetCallerIdentity`. */
  url: string;
  /** [name, value] pairs as received (node's `rawHeaders`, paired). */
  headers: [string, string][];
  body: Buffer | string;
}

const incomplete = (message: string) => new AwsError(400, 'IncompleteSignature', message);

/** Reads `AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/sts/aws4_request, SignedHeaders=…, Signature=…`. */
export function parseAuthorization(header: string | undefined): ParsedAuthorization {
  if (header === undefined || header.trim() === '') {
    throw new AwsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
  }
  const space = header.indexOf(' ');
  const algorithm = space < 0 ? header : header.slice(0, space);
  if (algorithm !== 'AWS4-HMAC-SHA256') {
    throw incomplete(`Unsupported AWS 'algorithm': '${algorithm}'`);
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  for (const required of ['Credential', 'SignedHeaders', 'Signature']) {
    if (!fields.get(required)) {
      throw incomplete(`Authorization header requires '${required}' parameter. Authorization=${header}`);
    }
  }
  const scope = fields.get('Credential')!.split('/');
  if (scope.length !== 5 || scope[4] !== 'aws4_request') {
    throw incomplete(
      `Credential should be scoped to a valid region. Credential=${fields.get('Credential')}, ` +
        `expected <key>/<date>/<region>/<service>/aws4_request`,
    );
  }
  return {
    accessKeyId: scope[0]!,
    date: scope[1]!,
    region: scope[2]!,
    service: scope[3]!,
    signedHeaders: fields.get('SignedHeaders')!.split(';'),
    signature: fields.get('Signature')!,
  };
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();

/** RFC 3986 unreserved characters stay, everything else is %XX (uppercase). */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Every service but S3 encodes each path segment once more and normalises the path. */
export function canonicalUri(rawPath: string): string {
  const out: string[] = [];
  for (const segment of rawPath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(uriEncode(segment));
  }
  const trailing = rawPath.length > 1 && rawPath.endsWith('/') ? '/' : '';
  return '/' + out.join('/') + (out.length > 0 ? trailing : '');
}

export function canonicalQuery(rawQuery: string): string {
  if (rawQuery === '') return '';
  const pairs = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      const k = eq < 0 ? p : p.slice(0, eq);
      const v = eq < 0 ? '' : p.slice(eq + 1);
      return [uriEncode(safeDecode(k)), uriEncode(safeDecode(v))] as const;
    });
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

/**
 * S3's canonical URI: each segment URI-encoded once, the path never normalised
 * (S3 keys may hold `.` and `..`); its payload hash is the
 * `x-amz-content-sha256` header, which may be UNSIGNED-PAYLOAD (AWS's
 * "Signature Calculations for the Authorization Header", S3 API reference).
 */
export function s3CanonicalUri(rawPath: string): string {
  return rawPath.split('/').map((segment) => uriEncode(safeDecode(segment))).join('/');
}

export function canonicalRequest(req: SignableRequest, signedHeaders: string[], options: { s3?: boolean } = {}): string {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = q < 0 ? '' : req.url.slice(q + 1);
  const values = new Map<string, string[]>();
  for (const [name, value] of req.headers) {
    const key = name.toLowerCase();
    const list = values.get(key) ?? [];
    list.push(value.trim().replace(/\s+/g, ' '));
    values.set(key, list);
  }
  const headerLines = signedHeaders.map((h) => `${h}:${(values.get(h) ?? []).join(',')}\n`).join('');
  const payload = options.s3 ? (values.get('x-amz-content-sha256')?.[0] ?? sha256(req.body)) : sha256(req.body);
  return [req.method.toUpperCase(), options.s3 ? s3CanonicalUri(path) : canonicalUri(path), canonicalQuery(query), headerLines, signedHeaders.join(';'), payload].join(
    '\n',
  );
}

export function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

/** The signature a correct signer would have produced for this request with this secret. */
export function expectedSignature(req: SignableRequest, auth: ParsedAuthorization, amzDate: string, secret: string): string {
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const sts = stringToSign(amzDate, scope, canonicalRequest(req, auth.signedHeaders, { s3: auth.service === 's3' }));
  return createHmac('sha256', signingKey(secret, auth.date, auth.region, auth.service)).update(sts).digest('hex');
}

function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return undefined;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

const compactIso = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');

/**
 * Checks the request's time and signature; throws the error STS and IAM
 * answer with. `now` is wall-clock time: the SDK signs with the real clock.
 */
export function verifySignature(req: SignableRequest, auth: ParsedAuthorization, secret: string, now: Date): void {
  const header = (name: string) => req.headers.find(([h]) => h.toLowerCase() === name)?.[1];
  const amzDate = header('x-amz-date');
  if (amzDate === undefined) {
    throw incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
  }
  const signedAt = parseAmzDate(amzDate);
  if (!signedAt) throw incomplete(`Invalid X-Amz-Date '${amzDate}': expected YYYYMMDD'T'HHMMSS'Z'`);
  if (!auth.signedHeaders.includes('host')) {
    throw new AwsError(403, 'SignatureDoesNotMatch', "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  }
  if (auth.date !== amzDate.slice(0, 8)) {
    throw new AwsError(
      403,
      'SignatureDoesNotMatch',
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${auth.date}' != '${amzDate.slice(0, 8)}', from '${amzDate}'.`,
    );
  }
  const skew = 15 * 60 * 1000;
  if (signedAt.getTime() < now.getTime() - skew) {
    const floor = new Date(now.getTime() - skew);
    throw new AwsError(
      403,
      'SignatureDoesNotMatch',
      `Signature expired: ${amzDate} is now earlier than ${compactIso(floor)} (${compactIso(now)} - 15 min.)`,
    );
  }
  if (signedAt.getTime() > now.getTime() + skew) {
    const ceiling = new Date(now.getTime() + skew);
    throw new AwsError(
      403,
      'SignatureDoesNotMatch',
      `Signature not yet current: ${amzDate} is still later than ${compactIso(ceiling)} (${compactIso(now)} + 15 min.)`,
    );
  }
  const expected = Buffer.from(expectedSignature(req, auth, amzDate, secret));
  const given = Buffer.from(auth.signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new AwsError(
      403,
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
    );
  }
}
