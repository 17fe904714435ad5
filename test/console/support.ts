import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { DEV_AUDIENCE, DEV_ISSUER, devIssuerKey, signDevToken } from '../../src/config/dev.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { execRows, type Db } from '../../src/db/client.js';
import { HARNESS_ROLES, type TestBroker } from '../support/broker.js';

const agents = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

/**
 * A test broker in dev mode: the dev issuer (its key under a fresh data dir) beside the harness's `test`
 * issuer, so the console's dev login works as under `npm start`. dev/admin is an admin, dev/approver-a
 * approves `gated` (and may itself ask for it), nobody but admins approves `gated-b`.
 */
export async function devConsoleConfig(extra: Partial<ConfigInput> = {}): Promise<Partial<ConfigInput> & { data_dir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tasklease-console-'));
  const { d: _private, ...publicJwk } = await devIssuerKey(dataDir);
  return {
    dev: true,
    data_dir: dataDir,
    issuers: [{ name: 'dev', issuer: DEV_ISSUER, jwks: { keys: [publicJwk] }, audiences: [DEV_AUDIENCE], algorithms: ['ES256'] }],
    principals: {
      orchestrators: [{ issuer: 'test', subject: 'orchestrator' }],
      admins: [{ issuer: 'dev', subject: 'admin' }],
    },
    roles: [
      ...HARNESS_ROLES,
      {
        name: 'gated',
        backend: 'local',
        allow: [...agents, { issuer: 'dev', subject: 'approver-a' }],
        requires_approval: true,
        approvers: [{ issuer: 'dev', subject: 'approver-a' }],
        jwt: { audience: 'deploy-api', scope: 'deploy:prod' },
      },
      { name: 'gated-b', backend: 'local', allow: agents, requires_approval: true },
    ],
    ...extra,
  };
}

/** A bearer of the dev issuer, as `npx tasklease dev token <subject>` prints. */
export const devToken = (dataDir: string, subject: string) => signDevToken(dataDir, subject);

/** A browser-like client of the console over app.request: one cookie jar, same-origin headers unless told otherwise. */
export function consoleClient(t: Pick<TestBroker, 'broker'>, base = 'http://localhost') {
  let cookie: string | undefined;
  const client = {
    get cookie() {
      return cookie;
    },
    set cookie(value: string | undefined) {
      cookie = value;
    },
    async request(method: string, path: string, form?: Record<string, string>, headers: Record<string, string> = {}) {
      // A header given as '' is left out (a browser that does not send it).
      const all = Object.entries({
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded', origin: base, 'sec-fetch-site': 'same-origin' } : {}),
        ...headers,
      }).filter(([, v]) => v !== '');
      const res = await t.broker.app.request(`${base}${path}`, {
        method,
        headers: Object.fromEntries(all),
        body: form ? new URLSearchParams(form).toString() : undefined,
        redirect: 'manual',
      });
      const setCookie = res.headers.get('set-cookie');
      if (setCookie) {
        const [pair] = setCookie.split(';');
        cookie = /=$/.test(pair!) || /max-age=0/i.test(setCookie) ? undefined : pair;
      }
      return { status: res.status, headers: res.headers, setCookie, text: res.headers.get('content-type')?.includes('event-stream') ? '' : await res.text(), res };
    },
    async login(subject: string) {
      const res = await client.request('POST', '/console/login', { subject });
      expect(res.status, res.text).toBe(303);
      // Where who.ts's landing() sends the person: approvals, tasks (an orchestrator only) or agents (an owner only).
      expect(res.headers.get('location')).toMatch(/^\/console\/(approvals|tasks|agents)$/);
      return res;
    },
    /** The CSRF token the approvals page renders into its forms. */
    async csrf() {
      const page = await client.request('GET', '/console/approvals');
      expect(page.status).toBe(200);
      return /name="csrf" value="([0-9a-f]{64})"/.exec(page.text)![1]!;
    },
  };
  return client;
}

/** A console client signed in as `subject` through the dev login, with its CSRF token at hand. */
export async function signedIn(t: Pick<TestBroker, 'broker'>, subject: string) {
  const c = consoleClient(t);
  await c.login(subject);
  return Object.assign(c, { token: await c.csrf() });
}

/**
 * Every table a console action could change, hashed (sessions: how many are live; audit: how many events,
 * `admin.revoke` left out when `ignoreAdminRevoke`: an admin's revoke of a missing lease is audited, by design).
 * Two equal snapshots: a refused action changed nothing.
 */
export async function consoleTables(db: Db, options: { ignoreAdminRevoke?: boolean } = {}): Promise<Record<string, string>> {
  const hashed = (table: string, key = 'id') => sql.raw(`(select md5(coalesce(string_agg(x::text, '|' order by x.${key}), '')) from ${table} x)`);
  const rows = await execRows<Record<string, string>>(
    db,
    sql`select
      ${hashed('tasks')} as tasks, ${hashed('leases')} as leases, ${hashed('approvals')} as approvals, ${hashed('agents', 'name')} as agents,
      ${hashed('agent_suspensions')} as suspensions, ${hashed('outbox')} as outbox,
      (select count(*)::text from console_sessions where revoked_at is null) as sessions,
      (select generation::text from registry_state) as registry_generation,
      (select count(*)::text from audit_events where ${options.ignoreAdminRevoke ? sql`action <> 'admin.revoke'` : sql`true`}) as audit`,
  );
  return rows[0]!;
}
