// The SDK over a tiny local HTTP server: a 503 or 429 is retried (Retry-After
// honoured) within a bounded number of attempts, a 4xx refusal never is, a POST
// only when the broker said nothing was done; the
// token sources (a file re-read per request, the default chain, GitHub Actions OIDC).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient, defaultTokenSource, TaskleaseError, tokenFromFile, tokenFromGitHubActions } from 'tasklease/client';
import { listenLocal } from '../support/listen.js';

const LEASE = {
  id: '0190b9a0-0000-7000-8000-000000000001',
  task: 't',
  role: 'demo',
  backend: 'local',
  issuer: 'test',
  subject: 'agent-1',
  status: 'revoked',
  reason: null,
  credential_ref: 'x',
  issued_at: '2030-01-01T00:00:00.000Z',
  expires_at: '2030-01-01T00:15:00.000Z',
  backend_expires_at: '2030-01-01T00:15:00.000Z',
  revocable: true,
  revoke_requested_at: null,
  ended_at: null,
};

type Answer = { status: number; headers?: Record<string, string>; body: unknown };

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** A server giving `answers` in turn (the last one again once they run out), recording what it was sent. */
async function answering(answers: Answer[]) {
  const seen: { method: string; url: string; authorization: string }[] = [];
  server = createServer((req: IncomingMessage, res) => {
    seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization ?? '' });
    const answer = answers[Math.min(seen.length - 1, answers.length - 1)]!;
    const json = answer.status >= 400 ? 'application/problem+json' : 'application/json';
    res.writeHead(answer.status, { 'content-type': json, ...answer.headers });
    res.end(JSON.stringify(answer.body));
  });
  const port = await listenLocal(server);
  return { url: `http://127.0.0.1:${port}`, seen };
}

const problem = (status: number, code: string, requestId = 'req-1') => ({ status, body: { type: `urn:tasklease:problem:${code}`, title: code, status, code, detail: `${code} here`, request_id: requestId } });

describe('retries', () => {
  it('retries a 503 and then succeeds', async () => {
    const { url, seen } = await answering([problem(503, 'database_unavailable'), { status: 202, body: { lease: LEASE } }]);
    const client = createClient({ url, token: 'tok', retry: { baseDelayMs: 1 } });
    expect(await client.leases.release(LEASE.id)).toMatchObject({ id: LEASE.id });
    expect(seen.map((s) => s.method)).toEqual(['DELETE', 'DELETE']);
  });

  it('honours Retry-After on a 429: waits what it says instead of its own backoff', async () => {
    const { url, seen } = await answering([{ ...problem(429, 'rate_limited'), headers: { 'retry-after': '0' } }, { status: 202, body: { lease: LEASE } }]);
    // A backoff of its own would wait a minute here, past the test's timeout.
    const client = createClient({ url, token: 'tok', retry: { baseDelayMs: 60_000, maxDelayMs: 60_000 } });
    await client.leases.release(LEASE.id);
    expect(seen).toHaveLength(2);
  });

  it('does not retry when Retry-After asks for longer than it may wait', async () => {
    const { url, seen } = await answering([{ ...problem(429, 'quota_exceeded'), headers: { 'retry-after': '3600' } }, { status: 202, body: { lease: LEASE } }]);
    const client = createClient({ url, token: 'tok', retry: { maxDelayMs: 1000 } });
    await expect(client.leases.release(LEASE.id)).rejects.toMatchObject({ code: 'quota_exceeded', status: 429 });
    expect(seen).toHaveLength(1);
  });

  it('gives up after the bounded attempts with the last problem as a TaskleaseError', async () => {
    const { url, seen } = await answering([problem(503, 'backend_unavailable', 'req-9')]);
    const client = createClient({ url, token: 'tok', retry: { attempts: 3, baseDelayMs: 1 } });
    const err = await client.leases.release(LEASE.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskleaseError);
    expect(err).toMatchObject({ code: 'backend_unavailable', status: 503, detail: 'backend_unavailable here', requestId: 'req-9' });
    expect(seen).toHaveLength(3);
  });

  it('never retries a 4xx refusal', async () => {
    for (const [status, code] of [[403, 'role_denied'], [409, 'task_not_open'], [401, 'token_expired'], [404, 'lease_not_found']] as const) {
      const { url, seen } = await answering([problem(status, code), { status: 202, body: { lease: LEASE } }]);
      const client = createClient({ url, token: 'tok', retry: { baseDelayMs: 1 } });
      await expect(client.leases.release(LEASE.id)).rejects.toMatchObject({ code, status });
      expect(seen).toHaveLength(1);
      await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
    }
  });
});

describe('retries of a POST', () => {
  const open = (client: ReturnType<typeof createClient>) => client.tasks.open({ subject: 'agent-1', ttl_seconds: 600 } as never);

  it('never repeats a POST after a 503 request_timeout or a 503 without a problem: its work may still commit', async () => {
    for (const answer of [problem(503, 'request_timeout'), { status: 503, body: 'Service Unavailable' }]) {
      const { url, seen } = await answering([answer]);
      const client = createClient({ url, token: 'tok', retry: { baseDelayMs: 1 } });
      const err = await client.credentials('t', 'demo').catch((e: unknown) => e);
      await expect(open(client)).rejects.toMatchObject({ status: 503 });
      expect(err).toMatchObject({ status: 503 });
      expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['POST /v1/credentials', 'POST /v1/tasks']);
      await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
    }
  });

  it('repeats a POST after a 429 or a 503 that says nothing was done', async () => {
    for (const code of ['rate_limited', 'database_unavailable', 'backend_unavailable', 'issuer_unavailable']) {
      const { url, seen } = await answering([problem(code === 'rate_limited' ? 429 : 503, code)]);
      const client = createClient({ url, token: 'tok', retry: { attempts: 3, baseDelayMs: 1 } });
      await expect(client.credentials('t', 'demo')).rejects.toMatchObject({ code });
      expect(seen.map((s) => s.method)).toEqual(['POST', 'POST', 'POST']);
      await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
    }
  });

  it('repeats an idempotent request after any 503, request_timeout included', async () => {
    const { url, seen } = await answering([problem(503, 'request_timeout'), { status: 503, body: 'Service Unavailable' }, { status: 202, body: { lease: LEASE } }]);
    const client = createClient({ url, token: 'tok', retry: { baseDelayMs: 1 } });
    await client.leases.release(LEASE.id);
    expect(seen.map((s) => s.method)).toEqual(['DELETE', 'DELETE', 'DELETE']);
  });
});

describe('token sources', () => {
  it('re-reads a token file for every request (Kubernetes rotates projected tokens)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tasklease-token-')), 'token');
    writeFileSync(path, 'first-token\n');
    const { url, seen } = await answering([problem(503, 'database_unavailable'), { status: 202, body: { lease: LEASE } }]);
    const client = createClient({ url, token: tokenFromFile(path), retry: { baseDelayMs: 1 } });
    await client.leases.release(LEASE.id);
    writeFileSync(path, 'rotated-token\n');
    await client.leases.release(LEASE.id);
    expect(seen.map((s) => s.authorization)).toEqual(['Bearer first-token', 'Bearer first-token', 'Bearer rotated-token']);
  });

  it('refuses to send a request without a token, in one clear error', async () => {
    const { url, seen } = await answering([{ status: 202, body: { lease: LEASE } }]);
    const client = createClient({ url, token: tokenFromFile('/nonexistent/token') });
    await expect(client.leases.release(LEASE.id)).rejects.toMatchObject({ code: 'client_no_token', status: 0 });
    expect(seen).toHaveLength(0);
  });
});

describe('the default token chain', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tasklease-chain-'));
  const file = join(dir, 'token-file');
  const kubernetes = join(dir, 'k8s-token');
  writeFileSync(file, 'from-file');
  writeFileSync(kubernetes, 'from-kubernetes');

  it('takes the token file, then TASKLEASE_TOKEN, then the Kubernetes token, then GitHub Actions', async () => {
    const { url, seen } = await answering([{ status: 200, body: { value: 'from-github' } }]);
    const github = { ACTIONS_ID_TOKEN_REQUEST_URL: `${url}/token?api-version=2.0`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-secret' };
    const chain = (env: NodeJS.ProcessEnv, tokenFile?: string, kubernetesTokenPath = join(dir, 'absent')) =>
      defaultTokenSource({ env, tokenFile, kubernetesTokenPath, audience: 'https://tasklease.test' }).token();
    const all = { TASKLEASE_TOKEN: 'from-env', ...github };
    expect(await chain(all, file, kubernetes)).toBe('from-file');
    expect(await chain(all, undefined, kubernetes)).toBe('from-env');
    expect(await chain(github, undefined, kubernetes)).toBe('from-kubernetes');
    expect(await chain(github)).toBe('from-github');
    await expect(chain({})).rejects.toMatchObject({ code: 'client_no_token' });
    // The runner is asked for the broker's audience, with its own bearer.
    expect(seen).toEqual([{ method: 'GET', url: '/token?api-version=2.0&audience=https%3A%2F%2Ftasklease.test', authorization: 'bearer runner-secret' }]);
  });

  it('keeps a GitHub Actions token until shortly before it expires', async () => {
    const jwt = (exp: number) => `e30.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.sig`;
    const { url, seen } = await answering([{ status: 200, body: { value: jwt(Math.floor(Date.now() / 1000) + 30) } }, { status: 200, body: { value: jwt(Math.floor(Date.now() / 1000) + 3600) } }]);
    const source = tokenFromGitHubActions({ audience: 'aud', env: { ACTIONS_ID_TOKEN_REQUEST_URL: `${url}/t`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'r' } });
    await source.token(); // expires within a minute: asked for again
    const long = await source.token();
    expect(await source.token()).toBe(long);
    expect(seen).toHaveLength(2);
  });
});
