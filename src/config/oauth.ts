import { z } from 'zod';
import { DurationSchema } from './duration.js';
import { HttpUrlSchema } from './notifications.js';

/**
 * Where a resource server hears that tokens for its audiences were revoked (SSF, docs/oauth.md): pushed to
 * `endpoint_url` (RFC 8935), with `authorization_header` sent as is (a credential: usually `${ENV}`, never
 * logged or stored), or fetched by the server from /ssf/poll (RFC 8936) with its client_secret_basic.
 */
const SecurityEventsSchema = z.discriminatedUnion('delivery', [
  z.strictObject({ delivery: z.literal('push'), endpoint_url: HttpUrlSchema, authorization_header: z.string().min(1).optional() }),
  z.strictObject({ delivery: z.literal('poll') }),
]);

const ResourceServerSchema = z
  .strictObject({
    client_id: z.string().min(1).max(256),
    secret_sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex digits').optional(),
    jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
    audiences: z.array(z.string().min(1)).min(1),
    security_events: SecurityEventsSchema.optional(),
  })
  .refine((r) => (r.secret_sha256 === undefined) !== (r.jwks === undefined), 'give a resource server either secret_sha256 or jwks')
  .refine((r) => r.security_events?.delivery !== 'poll' || r.secret_sha256 !== undefined, {
    message: 'a poll receiver authenticates with client_secret_basic: give it secret_sha256 (or use push delivery)',
    path: ['security_events'],
  });

/**
 * The OAuth surface (docs/oauth.md). `max_delegation_depth`: how many actors a delegated token's `act` chain
 * may hold. `resource_servers`: the OAuth clients that introspect at /oauth2/introspect, each authenticated
 * by a secret's SHA-256 (client_secret_basic, client_secret_post) or its public keys (private_key_jwt), told
 * only of tokens for its `audiences`, and, with `security_events`, sent a SET when one of those ends.
 * `security_events`: how the transmitter delivers and how long it keeps what was delivered.
 */
export const OAuthSchema = z
  .strictObject({
    max_delegation_depth: z.number().int().min(1).max(5).default(1),
    resource_servers: z
      .array(ResourceServerSchema)
      .default([])
      .refine((servers) => new Set(servers.map((s) => s.client_id)).size === servers.length, 'client_id values must be unique'),
    security_events: z
      .strictObject({
        /** How often each replica looks for due pushes (it is also nudged when a lease ends). */
        interval: DurationSchema.default(5).refine((s) => s >= 1, 'at least 1s'),
        /** Each push gives up after this long. */
        timeout: DurationSchema.default(10).refine((s) => s >= 1 && s <= 60, 'between 1s and 60s'),
        /** Fast retries (exponential backoff with jitter) before a push is marked failed (still retried slowly). */
        max_attempts: z.number().int().min(1).max(100).default(8),
        failed_retry_interval: DurationSchema.default(900),
        /** A polled SET not acknowledged is handed out again after this long. */
        poll_redelivery: DurationSchema.default(30),
        /** A poll that finds nothing waits this long for an event (unless it asks to return immediately); keep it under your proxies' idle timeout. */
        poll_wait: DurationSchema.default(10).refine((s) => s <= 15, 'at most 15s (requests time out at 20s)'),
        /** Delivered events are deleted after this long. */
        keep_delivered: DurationSchema.default(86400),
      })
      .prefault({}),
  })
  .prefault({});
export type OAuthConfig = z.output<typeof OAuthSchema>;
export type ResourceServerConfig = OAuthConfig['resource_servers'][number];
