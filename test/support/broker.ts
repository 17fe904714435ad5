import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import { createBroker } from '../../src/broker.js';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import type { Database } from '../../src/db/client.js';
import { sha256Hex } from '../../src/ids.js';
import { createLogger } from '../../src/log.js';
import { createFakeBackend } from './fake-backend.js';
import { openTestDatabase, type Driver, type TestDatabase } from './db.js';
import { collectSecrets, trackBroker } from './scan.js';
import { createTestIssuer } from './issuer.js';

export const ADMIN_STATIC_TOKEN = 'tl-admin-static-token-for-tests-only';

/** Collects every log line the broker writes, so tests can search them for secrets. */
export function captureLogs() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, stream };
}

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
/** The roles every test broker has; a test that passes `config.roles` replaces them, so it can spread these in. */
export const HARNESS_ROLES = [
  { name: 'demo', backend: 'local', ttl: '15m', max_ttl: '1h', allow: AGENTS, jwt: { audience: 'demo-api', scope: 'demo:read' } },
  { name: 'flaky', backend: 'fake', ttl: '10m', max_ttl: '30m', allow: AGENTS },
  { name: 'special', backend: 'local', allow: [{ issuer: 'test', subject: 'agent-special' }] },
];

export interface TestBrokerOptions {
  clock?: ManualClock;
  config?: Partial<ConfigInput>;
  instanceId?: string;
  /** The broker's own AWS credentials, for an aws-sts backend pointed at the AWS fake. */
  awsCredentials?: { accessKeyId: string; secretAccessKey: string };
}

/**
 * A broker wired like production (real database, real jwt backend) with a test
 * issuer, a fake backend for the `flaky` role, a manual clock and captured logs.
 */
export async function startTestBroker(database: Database, options: TestBrokerOptions = {}) {
  const issuer = await createTestIssuer();
  const clock = options.clock ?? createManualClock(new Date());
  const fake = createFakeBackend('fake');
  const logs = captureLogs();
  const config = parseConfig(
    {
      public_url: 'https://tasklease.test',
      data_dir: mkdtempSync(join(tmpdir(), 'tasklease-test-')),
      log_level: 'debug',
      principals: {
        orchestrators: [{ issuer: 'test', subject: 'orchestrator' }, { issuer: 'test', subject: 'orchestrator-2' }],
        admins: [{ issuer: 'test', subject: 'admin' }, { name: 'ops', token_sha256: sha256Hex(ADMIN_STATIC_TOKEN) }],
      },
      roles: HARNESS_ROLES,
      sweeper: { max_attempts: 3, batch_size: 50 },
      ...options.config,
      backends: { local: { type: 'jwt' }, fake: { type: 'jwt' }, ...options.config?.backends },
      // Extra issuers join the harness's own rather than replacing it.
      issuers: [issuer.config, ...(options.config?.issuers ?? [])],
    },
    'test config',
  );
  const broker = await createBroker({
    config,
    database,
    clock,
    log: createLogger('debug', logs.stream),
    instanceId: options.instanceId ?? 'test-replica',
    backends: new Map([['fake', fake.backend]]),
    awsCredentials: options.awsCredentials,
    awsPruneIntervalSeconds: 0,
  });
  // Every secret this broker hands out or is handed, for the end-of-suite scan (test/global-setup.ts).
  const issuedSecrets = new Set<string>([ADMIN_STATIC_TOKEN]);
  if ('drop' in database) trackBroker(database as TestDatabase, issuedSecrets, logs.lines);
  // One token per subject, reused like a real agent reuses its token, and re-signed once the clock has moved on.
  const tokens = new Map<string, { token: string; at: number }>();
  const tokenFor = async (subject: string) => {
    const cached = tokens.get(subject);
    if (!cached || clock.now().getTime() - cached.at > 30 * 60_000) {
      tokens.set(subject, { token: await issuer.sign(subject, {}, clock.now()), at: clock.now().getTime() });
      collectSecrets(issuedSecrets, { token: tokens.get(subject)!.token });
    }
    return tokens.get(subject)!.token;
  };

  /** Calls the app in-process as `subject` (a test-issuer identity) or with a raw bearer. */
  async function call(method: string, path: string, as: { subject?: string; bearer?: string }, body?: unknown, contentType = 'application/json') {
    const headers: Record<string, string> = {};
    const bearer = as.bearer ?? (as.subject ? await tokenFor(as.subject) : undefined);
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers['content-type'] = contentType;
    const res = await broker.app.request(path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (json?.credentials) collectSecrets(issuedSecrets, json.credentials);
    return { status: res.status, json, text, headers: res.headers };
  }

  return { broker, config, clock, issuer, fake, logs, call, tokenFor };
}
export type TestBroker = Awaited<ReturnType<typeof startTestBroker>>;

let seq = 0;
/** A name no other test uses (an external id, a ghost task id, a prefix). */
export const freshId = (prefix = 'task') => `${prefix}-${process.pid}-${Date.now().toString(36)}-${(seq++).toString(36)}`;

/**
 * Registers the per-file hooks every integration test uses: a fresh database
 * on `driver` and a broker over it, handed to `use` before the tests run and
 * dropped after.
 */
export function useTestBroker(driver: Driver, use: (database: TestDatabase, broker: TestBroker) => void, options?: TestBrokerOptions) {
  let database: TestDatabase | undefined;
  beforeAll(async () => {
    database = await openTestDatabase(driver);
    use(database, await startTestBroker(database, options));
  });
  afterAll(() => database?.drop());
}
