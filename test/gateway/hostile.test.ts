// Hostile calls through the gateway: encodings that could mean one path to its rules and another to the
// upstream, a Host header or an absolute-form target naming another host, an upstream redirecting elsewhere,
// bodies too large or too slow. None may reach a path the rules refuse, reach another host, or carry the
// credential back to the caller; the gateway keeps serving. Raw HTTP (node:http), since fetch normalises paths.
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewaySchema } from '../../src/gateway/config.js';
import { createGatewayLeases } from '../../src/gateway/leases.js';
import { createGateway, type Gateway } from '../../src/gateway/proxy.js';
import { decideCall } from '../../src/gateway/rules.js';
import { HARNESS_ROLES, useTestBroker, type TestBroker } from '../support/broker.js';
import { listenLocal } from '../support/listen.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

/** A server that records every request; `/v1/reports/redirect*` answers with a redirect. */
async function recorder(redirects: { elsewhere?: string } = {}) {
  const seen: { url: string; headers: IncomingHttpHeaders; bytes: number }[] = [];
  const server: Server = createServer((req, res) => {
    const entry = { url: req.url ?? '', headers: req.headers, bytes: 0 };
    seen.push(entry);
    req.on('data', (c: Buffer) => (entry.bytes += c.length));
    req.on('error', () => {});
    req.on('end', () => {
      if (req.url === '/v1/reports/redirect-away' && redirects.elsewhere) res.writeHead(302, { location: `${redirects.elsewhere}/steal` }).end();
      else if (req.url === '/v1/reports/redirect-home') res.writeHead(302, { location: '/v1/reports/home?x=1' }).end();
      else res.writeHead(200, { 'content-type': 'text/plain' }).end(`saw ${req.url}`);
    });
  });
  const port = await listenLocal(server);
  return { url: `http://127.0.0.1:${port}`, port, seen, close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))) };
}

/** One raw request: the target and headers exactly as given; the body written in `chunks`, `stallMs` apart. */
function raw(port: number, target: string, headers: Record<string, string | number>, body: { chunks?: Buffer[]; stallMs?: number } = {}) {
  return new Promise<{ status: number; text: string; headers: IncomingHttpHeaders } | { error: string }>((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: body.chunks ? 'POST' : 'GET', path: target, headers, setHost: !('host' in headers) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('error', (e) => resolve({ error: e.message }));
    void (async () => {
      for (const chunk of body.chunks ?? []) {
        if (req.destroyed) return;
        req.write(chunk);
        if (body.stallMs) await new Promise((r) => setTimeout(r, body.stallMs));
      }
      if (!body.stallMs || !req.destroyed) req.end();
    })();
  });
}

describe('hostile calls through the gateway', () => {
  let t!: TestBroker;
  let upstream!: Awaited<ReturnType<typeof recorder>>;
  let elsewhere!: Awaited<ReturnType<typeof recorder>>;
  let gateway!: Gateway;
  let port!: number;
  let task!: string;
  let token!: string;
  useTestBroker('postgres', (_d, b) => (t = b), {
    config: { roles: [...HARNESS_ROLES, { name: 'reports-api', backend: 'local', ttl: '15m', allow: AGENTS, jwt: { audience: 'https://reports.example' } }] } as never,
  });

  const config = GatewaySchema.parse({
    listen: '127.0.0.1:0',
    timeout: 1,
    max_request_bytes: 1024,
    routes: [{ name: 'reports', upstream: 'http://127.0.0.1:1', role: 'reports-api', allow: [{ path: '/v1/reports/**' }], deny: [{ path: '/v1/reports/secret/**' }] }],
  });

  beforeAll(async () => {
    elsewhere = await recorder();
    upstream = await recorder({ elsewhere: elsewhere.url });
    config.routes[0]!.upstream = upstream.url;
    task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-h1' }, roles: ['reports-api'], ttl_seconds: 3600 })).json.task.id;
    token = await t.tokenFor('agent-h1');
    // The broker in process: the gateway's SDK client fetches through its app.
    const leases = createGatewayLeases({ url: 'http://broker.test', log: () => {}, fetch: async (req) => t.broker.app.request(req) });
    gateway = createGateway({ config, leases, log: () => {}, sidecar: { asker: leases.askerFor(token), task } });
    port = await gateway.listen(0);
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.close();
    await elsewhere?.close();
  });

  /** The jwt the upstream was given (the first allowed call shows it), to look for it in everything the caller gets. */
  let credential = '';
  const leaks = (answer: { text?: string; headers?: IncomingHttpHeaders }) => credential !== '' && (JSON.stringify(answer.headers ?? {}) + (answer.text ?? '')).includes(credential);

  it('forwards an ordinary call (and learns the credential it must never see again)', async () => {
    const answer = await raw(port, '/reports/v1/reports/ok', {});
    expect(answer).toMatchObject({ status: 200, text: 'saw /v1/reports/ok' });
    credential = /^Bearer (.+)$/.exec(upstream.seen.at(-1)!.headers.authorization!)![1]!;
    expect(leaks(answer as never)).toBe(false);
  });

  it.each([
    '/reports/v1/reports/../admin',
    '/reports/v1/reports/./../admin',
    '/reports/v1/reports/%2e%2e/admin',
    '/reports/v1/reports/%2E%2E/admin',
    '/reports/v1/reports/.%2e/admin',
    '/reports/v1/reports/..%2fadmin',
    '/reports/v1/reports%2f..%2fadmin',
    '/reports/v1/reports/%252e%252e/admin',
    '/reports/v1/reports/%5c..%5cadmin',
    '/reports/v1/reports/\\..\\admin',
    '/reports/v1/reports//../admin',
    '/reports/v1/reports/%00/admin',
    '/reports/v1/reports/%zz',
    '/reports/v1/reports/secret/../ok',
  ])('refuses %s before the upstream', async (target) => {
    const before = upstream.seen.length;
    const answer = await raw(port, target, {});
    expect('status' in answer && answer.status).toBe(400);
    expect(upstream.seen.length).toBe(before);
    expect(leaks(answer as never)).toBe(false);
  });

  it('matches rules on the decoded path: an encoded letter does not slip past a deny rule', async () => {
    const before = upstream.seen.length;
    for (const target of ['/reports/v1/reports/%73ecret/x', '/reports/v1/reports/secre%74/x', '/reports/v1/admin', '/reports/v1%2Freports/x']) {
      const answer = await raw(port, target, {});
      expect('status' in answer && [400, 403].includes(answer.status), target).toBe(true);
    }
    expect(upstream.seen.length).toBe(before);
  });

  it('ignores a Host header naming another host, and refuses absolute-form targets', async () => {
    const answer = await raw(port, '/reports/v1/reports/host', { host: `127.0.0.1:${elsewhere.port}` });
    expect(answer).toMatchObject({ status: 200 });
    expect(upstream.seen.at(-1)!.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    const absolute = await raw(port, `http://127.0.0.1:${elsewhere.port}/v1/reports/x`, {});
    expect(absolute).toMatchObject({ status: 400 });
    const schemeRelative = await raw(port, `//127.0.0.1:${elsewhere.port}/v1/reports/x`, {});
    expect(schemeRelative).toMatchObject({ status: 400 });
    expect(elsewhere.seen).toHaveLength(0);
  });

  it('never follows a redirect: another host is left to the caller (without the credential), its own upstream is pointed back at the route', async () => {
    const away = await raw(port, '/reports/v1/reports/redirect-away', {});
    expect(away).toMatchObject({ status: 302, headers: { location: `${elsewhere.url}/steal` } });
    expect(elsewhere.seen).toHaveLength(0);
    const home = await raw(port, '/reports/v1/reports/redirect-home', {});
    expect(home).toMatchObject({ status: 302, headers: { location: '/reports/v1/reports/home?x=1' } });
    expect(leaks(away as never) || leaks(home as never)).toBe(false);
  });

  it('refuses a body over the limit, declared or streamed, and one too slow to arrive; then serves the next call', async () => {
    const before = upstream.seen.length;
    const declared = await raw(port, '/reports/v1/reports/upload', { 'content-length': 4096 }, { chunks: [Buffer.alloc(4096)] });
    expect('status' in declared ? declared.status : 413).toBe(413);
    expect(upstream.seen.length).toBe(before);
    const streamed = await raw(port, '/reports/v1/reports/upload', { 'transfer-encoding': 'chunked' }, { chunks: [Buffer.alloc(800), Buffer.alloc(800)], stallMs: 50 });
    // Streamed: refused once past the limit (the upstream may have seen the start, never more than the limit).
    expect('status' in streamed ? [413, 502] : [413]).toContain('status' in streamed ? streamed.status : 413);
    for (const s of upstream.seen.slice(before)) expect(s.bytes).toBeLessThanOrEqual(1024);
    const slow = await raw(port, '/reports/v1/reports/slow', { 'content-length': 100 }, { chunks: [Buffer.alloc(10), Buffer.alloc(10)], stallMs: 3000 });
    expect('status' in slow ? [502, 504, 408] : [0]).toContain('status' in slow ? slow.status : 0);
    expect(await raw(port, '/reports/v1/reports/after', {})).toMatchObject({ status: 200 });
  });

  it('forwards no path the rules refuse, whatever the encoding (property)', async () => {
    const route = config.routes[0]!;
    const segment = fc.constantFrom('..', '.', '%2e', '%2E%2e', '%2f', '%5c', '\\', '%25', '%252f', 'secret', 'SECRET', 'v1', 'reports', 'admin', '%73ecret', ';', '%3b', '', 'x', '%00', '~', '%7e');
    const before = upstream.seen.length;
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 6 }), async (segments) => {
        await raw(port, `/reports/v1/reports/${segments.join('/')}`, {});
      }),
      { numRuns: 200 },
    );
    // Whatever reached the upstream, read as a server would (dot segments resolved, then decoded), is a path the rules allow.
    for (const s of upstream.seen.slice(before)) {
      const resolved = decodeURIComponent(new URL(s.url, 'http://upstream').pathname);
      expect(decideCall(route, 'GET', resolved), s.url).toMatchObject({ allow: true });
    }
  });
});
