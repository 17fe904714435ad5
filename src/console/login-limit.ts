import { BlockList, isIP } from 'node:net';
import type { Context } from 'hono';
import type { Clock } from '../clock.js';
import { createRateLimiter } from '../policy/rate-limit.js';

export interface LoginLimitOptions {
  clock: Clock;
  /** Sign-in attempts a client address may start per minute, in this replica, with bursts of `burst`. */
  perMinute: number;
  burst: number;
  /** Addresses (or CIDR ranges) of the reverse proxies whose X-Forwarded-For is believed. */
  trustedProxies: string[];
}

/** The peer's address as @hono/node-server hands it over (c.env.incoming); absent when the app is called in process. */
function socketAddress(c: Context): string | undefined {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress;
}

/** An IPv4-mapped IPv6 address is the IPv4 address; anything else as it is. */
const unmap = (address: string) => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address);

/** The first four groups of an IPv6 address: one client commonly holds a whole /64, so it is one bucket. */
function ipv6Prefix(address: string): string {
  const [head = '', tail = ''] = address.toLowerCase().split('%')[0]!.split('::');
  const left = head ? head.split(':') : [];
  const right = address.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** An X-Forwarded-For hop's address without a port or brackets (`1.2.3.4:5678`, `[2001:db8::1]:443`), or undefined. */
export function hopAddress(hop: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  const withPort = /^([0-9.]+):\d+$/.exec(hop);
  const address = unmap(bracketed?.[1] ?? withPort?.[1] ?? hop);
  return isIP(address) === 0 ? undefined : address;
}

/**
 * Bounds the console's unauthenticated sign-in starts (the OIDC login's row,
 * the dev login's signed token) per client address, with the lease path's
 * token buckets (policy/rate-limit.ts) in this replica's memory. The client
 * is the TCP peer, unless that peer is a trusted proxy: then X-Forwarded-For
 * is read from the right, skipping trusted proxies, and the first address
 * that is not one is the client, so a client cannot escape its bucket by
 * sending its own X-Forwarded-For. A request with no peer address (the app
 * called in process, as tests do) is not limited.
 */
export function createLoginLimit(options: LoginLimitOptions) {
  const limiter = createRateLimiter({ rate: options.perMinute / 60, burst: options.burst, clock: options.clock, maxAgents: 50_000 });
  const trusted = new BlockList();
  for (const entry of options.trustedProxies) {
    const [address, bits] = entry.split('/');
    const family = isIP(address!) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) trusted.addAddress(address!, family);
    else trusted.addSubnet(address!, Number(bits), family);
  }
  const isTrusted = (address: string) => {
    const a = unmap(address);
    const family = isIP(a);
    return family !== 0 && trusted.check(a, family === 6 ? 'ipv6' : 'ipv4');
  };

  /** The client's address as this broker may believe it, or undefined in process. */
  function clientOf(c: Context): string | undefined {
    const peer = socketAddress(c);
    if (!peer) return undefined;
    let client = unmap(peer);
    if (isTrusted(client)) {
      const hops = (c.req.header('x-forwarded-for') ?? '').split(',').map((h) => h.trim()).filter((h) => h !== '');
      for (const hop of hops.reverse()) {
        const address = hopAddress(hop);
        // A hop that is no address even without its port ('unknown', an obfuscated name) is that client's own
        // bucket, not the proxy's: one such client must not take the sign-ins of everyone behind the proxy.
        if (address === undefined) return `hop:${hop.slice(0, 100)}`;
        client = address;
        if (!isTrusted(client)) break;
      }
    }
    return isIP(client) === 6 ? ipv6Prefix(client) : client;
  }

  return {
    clientOf,
    /** Takes one sign-in start for this request's client; when there is none, how long until there is. */
    take(c: Context): { ok: true } | { ok: false; retryAfterSeconds: number } {
      const client = clientOf(c);
      return client === undefined ? { ok: true } : limiter.take(client);
    },
  };
}
export type LoginLimit = ReturnType<typeof createLoginLimit>;
