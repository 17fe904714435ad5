import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { DurationSchema } from '../config/duration.js';
import { ListenSchema } from '../config/metrics.js';

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const METHOD = /^(\*|[A-Z]{1,16})$/;

/** One rule: a method (or `*`) and a path pattern: `*` within a segment, `**` any number of segments. */
const RuleSchema = z.strictObject({
  method: z.string().regex(METHOD, 'an HTTP method in capitals, or *').default('*'),
  path: z.string().regex(/^\/[A-Za-z0-9\-._~!$&'()+,;=:@/*]*$/, 'a path starting with /, of plain characters and * or **'),
});

const UpstreamSchema = z
  .url('an absolute http(s) URL')
  .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'an http(s) URL')
  .refine((u) => URL.canParse(u) && !new URL(u).search && !new URL(u).hash && !new URL(u).username, 'no query, fragment or credentials in the upstream URL')
  .transform((u) => u.replace(/\/+$/, ''));

export const RouteSchema = z.strictObject({
  name: z.string().regex(NAME, 'lowercase letters, digits and -'),
  upstream: UpstreamSchema,
  /** The role whose credential this route attaches: a bearer (jwt), a SigV4 signature (aws-sts) or X-Vault-Token (Vault token mode). */
  role: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  /** For an AWS role: the service to sign for (s3, sqs, ...), and the region (default: the credential's). */
  service: z.string().regex(/^[a-z0-9-]{1,64}$/).optional(),
  region: z.string().regex(/^[a-z0-9-]{1,32}$/).optional(),
  /** Calls must match one allow rule and no deny rule: there is no default allow. */
  allow: z.array(RuleSchema).min(1),
  deny: z.array(RuleSchema).default([]),
});

export const GatewaySchema = z
  .strictObject({
    listen: ListenSchema.prefault('127.0.0.1:7070'),
    routes: z.array(RouteSchema).min(1),
    /** From the request to the upstream's response headers, and between two chunks of a body. */
    timeout: DurationSchema.default(30).refine((s) => s >= 1 && s <= 3600, 'between 1s and 1h'),
    max_request_bytes: z.number().int().min(0).default(10 * 1024 * 1024),
    max_response_bytes: z.number().int().min(0).default(1024 * 1024 * 1024),
    /** Extra CA certificates (PEM) for the upstreams' TLS; verification is never turned off. */
    ca_file: z.string().min(1).optional(),
  })
  .refine((g) => new Set(g.routes.map((r) => r.name)).size === g.routes.length, { message: 'route names must be unique', path: ['routes'] });
export type GatewayConfig = z.output<typeof GatewaySchema>;
export type Route = GatewayConfig['routes'][number];
export type Rule = Route['allow'][number];

/** The `gateway:` section of a YAML file; a clear error naming the file and the path of each problem. */
export function loadGatewayConfig(file: string): GatewayConfig {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${err instanceof Error ? err.message : 'cannot be read'}`);
  }
  const section = (doc as { gateway?: unknown } | null)?.gateway;
  const parsed = GatewaySchema.safeParse(section);
  if (!parsed.success) throw new Error(`${file}: ${parsed.error.issues.map((i) => `gateway.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}
