import { z } from 'zod';

const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/** `host:port` (an IPv6 host in brackets; port 0 picks a free one), or `off`. */
export const ListenSchema = z.string().transform((value, ctx) => {
  if (value === 'off') return null;
  const match = HOST_PORT.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    ctx.addIssue({ code: 'custom', message: 'host:port (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464) or off' });
    return z.NEVER;
  }
  return { host: match[1] ?? match[2]!, port };
});

/**
 * Where Prometheus reads /metrics, whose counts and labels (roles, refusal
 * codes) are for operators only: a listener of its own, on localhost unless
 * configured otherwise, and/or a bearer token, which also opens /metrics on
 * the main listener (without one, the main listener does not serve it).
 */
export const MetricsSchema = z.strictObject({
  listen: ListenSchema.prefault('127.0.0.1:9464'),
  /** SHA-256 (hex) of the token Prometheus sends as `Authorization: Bearer`; required on both listeners when set. */
  token_sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex digits').optional(),
});
export type MetricsConfig = z.output<typeof MetricsSchema>;
