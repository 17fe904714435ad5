/**
 * Small pieces shared by the Vault fake: Vault's error and response shapes,
 * its duration syntax, and the identifiers it hands out.
 */
import { randomBytes, randomUUID } from 'node:crypto';

/** An answer other than success: `{"errors": [...]}` with this status. */
export class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; ') || `status ${status}`);
  }
}

/** How Vault prints a go-multierror of one: what handlers' plain errors look like on the wire. */
export const multi = (...msgs: string[]): string =>
  `${msgs.length} error${msgs.length === 1 ? '' : 's'} occurred:\n${msgs.map((m) => `\t* ${m}\n`).join('')}\n`;

/** A token that lacks the capability (the token itself is fine). */
export const permissionDenied = () => new VaultHttpError(403, [multi('permission denied')]);
/** A token that is unknown, revoked, expired or used up (Vault ≥ 1.15 adds "invalid token"). */
export const invalidToken = () => new VaultHttpError(403, [multi('permission denied', 'invalid token')]);
/** No token at all. */
export const noToken = () => new VaultHttpError(403, ['permission denied']);
/** logical.ErrorResponse(...) with ErrInvalidRequest: a plain 400. */
export const badRequest = (msg: string) => new VaultHttpError(400, [msg]);

const B62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** base62.Random(n), as Vault uses for lease ids, accessors and token bodies. */
export function base62(n: number): string {
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(n * 2)) {
      if (b < 248 && out.length < n) out += B62[b % 62];
    }
  }
  return out;
}

export const requestId = (): string => randomUUID();

/** What every JSON answer of Vault carries (http/logical.go's LogicalResponse). */
export function envelope(fields: {
  data?: Record<string, unknown> | null;
  auth?: Record<string, unknown> | null;
  leaseId?: string;
  leaseDuration?: number;
  renewable?: boolean;
  warnings?: string[];
  mountType?: string;
}): Record<string, unknown> {
  return {
    request_id: requestId(),
    lease_id: fields.leaseId ?? '',
    renewable: fields.renewable ?? false,
    lease_duration: fields.leaseDuration ?? 0,
    data: fields.data ?? null,
    wrap_info: null,
    warnings: fields.warnings && fields.warnings.length ? fields.warnings : null,
    auth: fields.auth ?? null,
    mount_type: fields.mountType ?? '',
  };
}

const UNIT: Record<string, number> = { ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * parseutil.ParseDurationSecond: a number or digit string is seconds, else a
 * Go duration ("1h30m", "90s", "1.5h"), plus Vault's "d" for days. Returns
 * whole seconds (Vault truncates TTLs to the second), or undefined when
 * unparsable.
 */
export function parseDurationSeconds(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return 0;
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s);
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d))+$/.test(s)) return undefined;
  let total = 0;
  for (const [, num, , unit] of s.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h|d)/g)) total += Number(num) * UNIT[unit!]!;
  return Math.floor(total);
}

/** Go's time.Duration.String() for whole seconds: 3600 → "1h0m0s", 90 → "1m30s", 0 → "0s". */
export function goDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  const sign = seconds < 0 ? '-' : '';
  let s = Math.abs(Math.trunc(seconds));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h) return `${sign}${h}h${m}m${s}s`;
  if (m) return `${sign}${m}m${s}s`;
  return `${sign}${s}s`;
}

/** Whole seconds since the epoch, as Vault truncates `now` before TTL arithmetic. */
export const sec = (d: Date): number => Math.floor(d.getTime() / 1000);
export const fromSec = (s: number): Date => new Date(s * 1000);

/** Go's RFC 3339 rendering of a time.Time, as Vault prints issue_time / expire_time (UTC here). */
export const rfc3339 = (d: Date): string => d.toISOString().replace('.000Z', 'Z');

/** A date no clock reaches: the expiry of tokens that have none (the root token). */
export const NEVER = new Date(8.64e15);

/** Namespace paths are written `ns1`, `ns1/` or `/ns1/`; the fake keeps `ns1` ('' is root). */
export const normalizeNamespace = (ns: string | undefined | null): string => (ns ?? '').replace(/^\/+|\/+$/g, '').replace(/^root$/, '');

export const asString = (v: unknown): string => (typeof v === 'string' ? v : '');
