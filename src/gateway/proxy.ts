import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decodeJwt } from 'jose';
import { TaskleaseError } from '../client/errors.js';
import { createCallReporter, type CallRecord } from './calls.js';
import type { GatewayConfig, Route } from './config.js';
import { buffersBody, inject, injectionFor, type Outgoing } from './inject.js';
import type { Asker, GatewayLeases } from './leases.js';
import { decideCall, safePath } from './rules.js';

/** Headers that end at this hop (RFC 9110 section 7.6.1), and those the gateway always sets or keeps to itself. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
/** What a caller may not send upstream: a credential of its own (dummy AWS keys sign with these), or the gateway's own headers. */
const CALLER_CREDENTIALS = new Set(['authorization', 'x-vault-token', 'x-amz-security-token', 'x-amz-date', 'x-amz-content-sha256', 'tasklease-task', 'cookie']);
export const TASK_HEADER = 'tasklease-task';

class GatewayRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly rule?: string,
  ) {
    super(message);
  }
}

/** Counts bytes as they stream, and stops the stream past `max`. */
class Meter extends Transform {
  bytes = 0;
  constructor(
    private readonly max: number,
    private readonly what: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.bytes += chunk.length;
    if (this.bytes > this.max) done(new GatewayRefusal(413, 'body_too_large', `the ${this.what} is over ${this.max} bytes`));
    else done(null, chunk);
  }
}

function forwardable(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((h) => h.trim()));
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || CALLER_CREDENTIALS.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function problem(res: ServerResponse, status: number, code: string, detail: string, rule?: string) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ type: `urn:tasklease:problem:${code}`, title: code.replace(/_/g, ' '), status, code, detail, ...(rule ? { rule } : {}) });
  res.writeHead(status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

async function readAll(stream: IncomingMessage, max: number): Promise<Buffer> {
  const meter = new Meter(max, 'request body');
  const chunks: Buffer[] = [];
  await pipeline(stream, meter, async function* (source) {
    for await (const chunk of source) chunks.push(chunk as Buffer);
  });
  return Buffer.concat(chunks);
}

/**
 * The gateway (docs/gateway.md): `/<route>/<path>` is forwarded to the route's
 * upstream with the task's credential attached, after the route's rules allow
 * it; the caller never receives the credential. A call names its task
 * (`Tasklease-Task`, or the sidecar's task) and, in shared mode, its identity
 * (`Proxy-Authorization: Bearer`). Bodies stream both ways, counted against
 * the configured maxima; a redirect is never followed (the caller gets it, a
 * same-origin Location pointed back at the route). Every call, allowed or
 * refused, is reported to the broker's audit trail. Invariants, proved by
 * test/gateway/: no credential in anything the caller receives; no call
 * reaches a path a rule denies or no rule allows; none goes to a host other
 * than its route's upstream; none uses a credential of a task known closed.
 */
export function createGateway(deps: {
  config: GatewayConfig;
  leases: GatewayLeases;
  /** Sidecar mode: the identity and task to use when a call names none. */
  sidecar?: { asker: Asker; task?: string };
  log: (line: Record<string, unknown>, msg: string) => void;
}) {
  const { config, leases } = deps;
  const routes = new Map(config.routes.map((r) => [r.name, r]));
  const ca = config.ca_file ? readFileSync(config.ca_file) : undefined;
  // Connections to the upstreams are kept and reused: a call costs no new TCP or TLS handshake.
  const agents = { http: new HttpAgent({ keepAlive: true, maxSockets: 256 }), https: new HttpsAgent({ keepAlive: true, maxSockets: 256, ...(ca ? { ca } : {}) }) };
  const reporter = createCallReporter({ log: deps.log });

  function askerOf(req: IncomingMessage): Asker {
    const proxyAuth = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(req.headers['proxy-authorization'] ?? '')?.[1];
    if (proxyAuth) {
      // The broker verified these very bytes when it issued what is cached for them; past their `exp` they open nothing here either.
      let exp: unknown;
      try {
        exp = decodeJwt(proxyAuth).exp;
      } catch {
        throw new GatewayRefusal(401, 'token_invalid', 'the Proxy-Authorization token is not a JWT');
      }
      if (typeof exp !== 'number' || exp * 1000 <= Date.now()) throw new GatewayRefusal(401, 'token_expired', 'the Proxy-Authorization token has expired');
      return leases.askerFor(proxyAuth);
    }
    if (deps.sidecar) return deps.sidecar.asker;
    throw new GatewayRefusal(401, 'token_missing', 'send the agent identity token as Proxy-Authorization: Bearer');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const target = req.url ?? '';
    const call: CallRecord = { task: '', route: '', method: req.method ?? 'GET', path: '', status: 0, decision: 'deny', bytes_in: 0, bytes_out: 0, ms: 0, at: new Date().toISOString(), count: 1 };
    let asker: Asker | undefined;
    try {
      // Origin-form only: an absolute-form target (a proxy request for another host) or `*` is refused.
      if (!target.startsWith('/') || target.startsWith('//')) throw new GatewayRefusal(400, 'target_refused', 'send the request to /<route>/<path>; absolute-form targets are refused');
      if (req.headers.upgrade) throw new GatewayRefusal(501, 'upgrade_refused', 'protocol upgrades are not forwarded');
      const q = target.indexOf('?');
      const rawPath = q < 0 ? target : target.slice(0, q);
      const query = q < 0 ? '' : target.slice(q);
      const slash = rawPath.indexOf('/', 1);
      const route = routes.get(slash < 0 ? rawPath.slice(1) : rawPath.slice(1, slash));
      if (!route) throw new GatewayRefusal(404, 'route_not_found', 'no such route');
      call.route = route.name;
      const rest = slash < 0 ? '/' : rawPath.slice(slash);
      const safe = safePath(rest);
      if ('refused' in safe) throw new GatewayRefusal(400, 'path_refused', safe.refused, 'path_refused');
      call.path = safe.decoded;
      asker = askerOf(req);
      const task = (req.headers[TASK_HEADER] as string | undefined) ?? deps.sidecar?.task;
      if (!task) throw new GatewayRefusal(400, 'task_missing', `name the task in the ${TASK_HEADER} header`);
      call.task = task;
      const decision = decideCall(route, call.method, safe.decoded);
      if (!decision.allow) throw new GatewayRefusal(403, 'call_denied', `${call.method} ${safe.decoded} is refused on route ${route.name}: ${decision.rule}`, decision.rule);
      if (leases.isClosed(asker, task)) throw new GatewayRefusal(403, 'task_not_open', 'the task is no longer open', 'task_not_open');
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > config.max_request_bytes) throw new GatewayRefusal(413, 'body_too_large', `the request body is over ${config.max_request_bytes} bytes`);
      const credentials = await leases.credentials(asker, task, route.role).catch((err: unknown) => {
        if (err instanceof TaskleaseError) throw new GatewayRefusal(err.status >= 500 || err.status === 0 ? 502 : 403, err.code, `the broker refused the credential: ${err.message}`, err.code);
        throw new GatewayRefusal(502, 'broker_unavailable', 'the broker could not be reached');
      });
      const injection = injectionFor(credentials);
      if (!injection || (injection === 'sigv4' && !route.service)) throw new GatewayRefusal(502, 'credential_not_injectable', `route ${route.name}'s credential cannot be attached to a call (${String(credentials.type)})`);
      call.decision = 'allow';
      call.rule = decision.rule;
      await forward(route, injection, credentials, req, res, `${route.upstream}${rest}${query}`, call);
    } catch (err) {
      const refusal = err instanceof GatewayRefusal ? err : new GatewayRefusal(502, 'upstream_failed', 'the upstream could not be reached or failed mid-way');
      if (refusal.rule) call.rule = refusal.rule;
      call.status = refusal.status;
      if (call.decision === 'allow' && refusal.status >= 500) call.rule = refusal.code;
      problem(res, refusal.status, refusal.code, refusal.message, refusal.rule);
      req.resume();
    } finally {
      call.ms = Math.round((performance.now() - started) * 100) / 100;
      if (asker && call.task) reporter.record(asker, call);
    }
  }

  async function forward(route: Route, injection: ReturnType<typeof injectionFor> & string, credentials: Record<string, unknown>, req: IncomingMessage, res: ServerResponse, url: string, call: CallRecord) {
    const upstream = new URL(url);
    const out: Outgoing = { method: call.method, url: upstream, headers: forwardable(req.headers) };
    const buffered = buffersBody(route, injection) ? await readAll(req, config.max_request_bytes) : undefined;
    if (buffered) {
      out.body = buffered;
      out.headers['content-length'] = String(buffered.length);
      call.bytes_in = buffered.length;
    }
    await inject(route, injection, credentials, out);
    const send = upstream.protocol === 'https:' ? httpsRequest : httpRequest;
    const agent = upstream.protocol === 'https:' ? agents.https : agents.http;
    const upstreamReq = send(upstream.href, { method: out.method, headers: { ...out.headers, host: upstream.host }, timeout: config.timeout * 1000, agent });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      upstreamReq.once('response', resolve);
      upstreamReq.once('error', reject);
      upstreamReq.once('timeout', () => upstreamReq.destroy(new GatewayRefusal(504, 'upstream_timeout', `the upstream did not answer within ${config.timeout}s`)));
    });
    const inMeter = new Meter(config.max_request_bytes, 'request body');
    // No body (no length, not chunked): the request is sent whole at once, as a client would.
    const bodiless = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
    const sent = buffered
      ? new Promise<void>((resolve, reject) => upstreamReq.end(buffered, () => resolve()).once('error', reject))
      : bodiless
        ? new Promise<void>((resolve) => (req.resume(), upstreamReq.end(() => resolve())))
        : pipeline(req, inMeter, upstreamReq);
    sent.catch((err: unknown) => upstreamReq.destroy(err instanceof Error ? err : undefined));
    const upstreamRes = await answered;
    if (!buffered) call.bytes_in = inMeter.bytes;
    const headers = forwardable(upstreamRes.headers);
    delete headers['set-cookie'];
    if (upstreamRes.headers['set-cookie']) headers['set-cookie'] = upstreamRes.headers['set-cookie'];
    // A redirect is the caller's to follow: back through this route when it stays on the upstream, as is elsewhere (no credential goes with it).
    const location = upstreamRes.headers.location;
    if (location && URL.canParse(location, upstream.href)) {
      const to = new URL(location, upstream);
      const base = new URL(route.upstream);
      if (to.origin === base.origin && to.pathname.startsWith(base.pathname)) headers.location = `/${route.name}${to.pathname.slice(base.pathname.replace(/\/$/, '').length)}${to.search}`;
    }
    call.status = upstreamRes.statusCode ?? 502;
    res.writeHead(call.status, headers);
    upstreamRes.setTimeout(config.timeout * 1000, () => upstreamRes.destroy(new GatewayRefusal(504, 'upstream_timeout', 'the upstream stalled mid-body')));
    // Counted as it streams (a listener, not a stream stage: a call's cost is mostly node's HTTP, keep the rest small).
    upstreamRes.on('data', (chunk: Buffer) => {
      call.bytes_out += chunk.length;
      if (call.bytes_out > config.max_response_bytes) upstreamRes.destroy(new GatewayRefusal(502, 'body_too_large', `the response body is over ${config.max_response_bytes} bytes`));
    });
    await new Promise<void>((resolve, reject) => {
      upstreamRes.once('error', reject);
      res.once('close', () => (res.writableFinished ? resolve() : reject(new GatewayRefusal(499, 'caller_gone', 'the caller closed the connection'))));
      upstreamRes.pipe(res);
    }).finally(() => upstreamRes.destroyed || upstreamRes.resume());
    await sent.catch(() => {});
  }

  const requestTimeout = (config.timeout + 5) * 1000;
  const server: Server = createServer({ requestTimeout, headersTimeout: Math.min(20_000, requestTimeout) }, (req, res) => void handle(req, res));
  return {
    server,
    async listen(port = config.listen?.port ?? 7070, host = config.listen?.host ?? '127.0.0.1'): Promise<number> {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      return (server.address() as { port: number }).port;
    },
    /** Stops taking calls, waits for those in flight, sends the last call records, releases every lease. */
    async stop(): Promise<void> {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await reporter.stop();
      await leases.stop();
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}
export type Gateway = ReturnType<typeof createGateway>;
