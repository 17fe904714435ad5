import { isIP } from 'node:net';
import { z } from 'zod';
import { DurationSchema } from './duration.js';

/**
 * Login for people: OpenID Connect, authorization code flow with PKCE. The
 * person's identity is `issuer_name` (an entry of `issuers`, whose URL must be
 * this `issuer`) and the ID token's `sub`, matched against the principals and
 * the roles' approvers exactly as an API token of that issuer would be.
 */
export const ConsoleOidcSchema = z.strictObject({
  /** The provider's issuer URL: discovery reads `<issuer>/.well-known/openid-configuration`; the ID token's `iss` must equal it. */
  issuer: z.string().url(),
  client_id: z.string().min(1),
  /** A confidential client authenticates with client_secret_basic; without a secret, a public client (PKCE only). Use `${ENV}`. */
  client_secret: z.string().min(1).optional(),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope is printable ASCII without spaces, quotes or backslashes'))
    .default(['openid'])
    .refine((s) => s.includes('openid'), 'scopes must include openid'),
  /** The entry of `issuers` people's identities belong to. */
  issuer_name: z.string().min(1),
  /**
   * What logout ends. `provider`: the console's session, then the provider's too (RP-initiated logout)
   * when its discovery document has an `end_session_endpoint`, else the console's only. `local`: the console's only.
   */
  logout: z.enum(['provider', 'local']).default('provider'),
});

/** An address or a CIDR range (`10.0.0.0/8`, `fd00::/8`). */
const AddressOrRange = z.string().refine((s) => {
  const [address = '', bits, ...rest] = s.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}, 'an IP address or a CIDR range');

/**
 * Sign-in starts (`/console/login`: the OIDC login's row, the dev login) per
 * client address and replica, and the logins under way at once across all
 * replicas; `trusted_proxies` are the reverse proxies whose X-Forwarded-For
 * names the client.
 */
export const ConsoleLoginLimitSchema = z.strictObject({
  per_minute: z.number().int().min(1).max(100_000).default(30),
  burst: z.number().int().min(1).max(100_000).default(10),
  max_pending: z.number().int().min(1).max(10_000_000).default(10_000),
  trusted_proxies: z.array(AddressOrRange).max(100).default([]),
});

/**
 * The console's sessions. A session ends after `idle_timeout` without a
 * person's action (live updates do not count), and `absolute_timeout` after
 * login whatever happens. Outside dev mode people sign in through `oidc`.
 */
export const ConsoleSchema = z
  .strictObject({
    idle_timeout: DurationSchema.default(30 * 60),
    absolute_timeout: DurationSchema.default(12 * 3600),
    oidc: ConsoleOidcSchema.optional(),
    login_limit: ConsoleLoginLimitSchema.prefault({}),
  })
  .refine((c) => c.idle_timeout >= 60 && c.idle_timeout <= c.absolute_timeout, 'idle_timeout must be at least 1m and at most absolute_timeout');
export type ConsoleOidcConfig = z.output<typeof ConsoleOidcSchema>;
