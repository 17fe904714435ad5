import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A webhook receiver on 127.0.0.1: records each request and answers with the
 * next queued status (then 200), a redirect when the status is a 3xx, or
 * nothing at all (status 0: the request hangs).
 */
export async function startReceiver(port = 0) {
  const received: Received[] = [];
  const answers: { status: number; location?: string }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body });
      const answer = answers.shift() ?? { status: 200 };
      if (answer.status === 0) return; // hangs: never answers
      res.writeHead(answer.status, answer.location ? { location: answer.location } : {});
      // Said back by a careless receiver: must never reach a row or a log.
      res.end(`echo ${body}`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    port: (server.address() as AddressInfo).port,
    received,
    /** Queues the statuses of the next answers. */
    answer(...next: { status: number; location?: string }[]) {
      answers.push(...next);
    },
    reset() {
      received.length = 0;
      answers.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;

/**
 * What docs/notifications.md tells a receiver to do: recompute the signature
 * over `${timestamp}.${raw body}`, compare in constant time, and refuse a
 * timestamp more than five minutes from its own clock (a replay).
 */
export function verifyDelivery(headers: IncomingHttpHeaders, body: string, secret: string, nowSeconds: number): { ok: true } | { ok: false; why: string } {
  const timestamp = Number(headers['tasklease-timestamp']);
  const signature = String(headers['tasklease-signature'] ?? '');
  if (!Number.isInteger(timestamp)) return { ok: false, why: 'no timestamp' };
  if (Math.abs(nowSeconds - timestamp) > 300) return { ok: false, why: 'stale timestamp' };
  const expected = Buffer.from(`v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`);
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, why: 'bad signature' };
  return { ok: true };
}
