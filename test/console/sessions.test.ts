/**
 * The console's sessions and their defences, in process against both drivers:
 * the cookie's attributes, the session row (a hash, never the token), the
 * security headers on every response, CSRF refusals, idle and absolute
 * timeouts, logout on one replica ending the session on another, who sees
 * which approvals, self-approval refused, and the live stream.
 */
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { consoleSessions } from '../../src/db/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { CONSOLE_HEADERS, cookieName } from '../../src/console/security.js';
import { startTestBroker, useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';
import { consoleClient, devConsoleConfig, devToken } from './support.js';

const config = await devConsoleConfig({ console: { idle_timeout: '10m', absolute_timeout: '1h' } });

async function gatedRequest(t: TestBroker, role = 'gated', agent = 'agent-1'): Promise<string> {
  const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: agent }, roles: [role], ttl_seconds: 3600 });
  expect(task.status, task.text).toBe(201);
  const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task: task.json.task.id, role });
  expect(res.status, res.text).toBe(202);
  return res.json.approval.id;
}
const approvalStatus = async (t: TestBroker, id: string) => (await t.call('GET', `/v1/approvals/${id}`, { bearer: await devToken(config.data_dir, 'admin') })).json.approval.status;

describe.each(DRIVERS)('console sessions (%s)', (driver) => {
  let t: TestBroker;
  let database: TestDatabase;
  useTestBroker(driver, (db, broker) => ((database = db), (t = broker)), { config });

  it('sends the security headers on every console response, pages, redirects, assets and refusals alike', async () => {
    const c = consoleClient(t);
    const answers = [
      await c.request('GET', '/console/login'),
      await c.request('GET', '/console/approvals'),
      await c.request('GET', '/console/assets/console.js'),
      await c.request('GET', '/console/assets/nothing.js'),
      await c.request('POST', '/console/logout', { csrf: 'x' }),
    ];
    await c.login('admin');
    answers.push(await c.request('GET', '/console/approvals'), await c.request('POST', '/console/logout', { csrf: 'wrong' }));
    for (const res of answers) for (const [name, value] of Object.entries(CONSOLE_HEADERS)) expect(res.headers.get(name), `${name} on ${res.status}`).toBe(value);
    expect(CONSOLE_HEADERS['Content-Security-Policy']).toMatch(/default-src 'self'.*script-src 'self'.*frame-ancestors 'none'/);
    expect(answers[2]!.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    // Answered by the broker's app before the console sees the request: a body over the limit.
    const tooLarge = await c.request('POST', '/console/login', { subject: 'x'.repeat(70 * 1024) });
    expect(tooLarge.status).toBe(413);
    for (const [name, value] of Object.entries(CONSOLE_HEADERS)) expect(tooLarge.headers.get(name), `${name} on 413`).toBe(value);
  });

  it('redirects every page to the login page without a live session, whatever cookie or bearer is sent', async () => {
    const c = consoleClient(t);
    for (const cookie of [undefined, 'tasklease_console=garbage', `tasklease_console=${'A'.repeat(43)}`]) {
      c.cookie = cookie;
      const res = await c.request('GET', '/console/approvals', undefined, { authorization: `Bearer ${await devToken(config.data_dir, 'admin')}` });
      expect({ status: res.status, location: res.headers.get('location') }).toEqual({ status: 302, location: '/console/login' });
    }
  });

  it('logs in through the dev login: an HttpOnly SameSite=Lax cookie, a row keyed by the token hash, an audit event', async () => {
    const c = consoleClient(t);
    const res = await c.login('admin');
    expect(res.setCookie).toMatch(/^tasklease_console=[A-Za-z0-9_-]{43}; Max-Age=3600; Path=\/; HttpOnly; SameSite=Lax$/);
    const token = c.cookie!.split('=')[1]!;
    const rows = await database.db.select().from(consoleSessions).where(eq(consoleSessions.id, sha256Hex(token)));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ issuer: 'dev', subject: 'admin', actor: 'dev/admin', revokedAt: null });
    expect(JSON.stringify(rows)).not.toContain(token);
    const audit = await t.call('GET', '/v1/audit?action=console.login', { bearer: await devToken(config.data_dir, 'admin') });
    expect(audit.json.items.map((e: { actor: string }) => e.actor)).toContain('dev/admin');
    const page = await c.request('GET', '/console/approvals');
    expect(page.text).toContain('dev/admin');
    expect(page.text).toContain('DEV MODE');
  });

  it('refuses to sign in a subject that is nothing to the console, and creates no session', async () => {
    const c = consoleClient(t);
    const before = (await database.db.select().from(consoleSessions)).length;
    const res = await c.request('POST', '/console/login', { subject: 'agent-nobody' });
    expect(res.status).toBe(400);
    expect(res.text).toContain('is not an admin, an orchestrator or an approver of any role, nor an owner of any agent');
    expect(c.cookie).toBeUndefined();
    expect(await database.db.select().from(consoleSessions)).toHaveLength(before);
  });

  it('sets a Secure __Host- cookie off loopback, and outside dev mode on loopback too', () => {
    const at = (url: string) => ({ req: { url } }) as never;
    expect(cookieName(true, at('http://127.0.0.1:8080/console'))).toEqual({ name: 'tasklease_console', secure: false });
    expect(cookieName(true, at('https://console.example.com/console'))).toEqual({ name: '__Host-tasklease_console', secure: true });
    expect(cookieName(false, at('http://127.0.0.1:8080/console'))).toEqual({ name: '__Host-tasklease_console', secure: true });
  });

  it('refuses a cross-site decision: no CSRF token, a wrong one, a foreign Origin or Sec-Fetch-Site, and the request stays pending', async () => {
    const id = await gatedRequest(t);
    const c = consoleClient(t);
    await c.login('admin');
    const csrf = await c.csrf();
    const path = `/console/approvals/${id}/decide`;
    const form = { verdict: 'approve', reason: 'looks fine' };
    for (const [what, body, headers] of [
      ['no token', form, {}],
      ['wrong token', { ...form, csrf: 'f'.repeat(64) }, {}],
      ['foreign origin', { ...form, csrf }, { origin: 'https://evil.example' }],
      ['cross-site fetch', { ...form, csrf }, { 'sec-fetch-site': 'cross-site' }],
      ['opaque origin, no fetch metadata', { ...form, csrf }, { origin: 'null', 'sec-fetch-site': '' }],
      ['foreign origin, no fetch metadata', { ...form, csrf }, { origin: 'https://evil.example', 'sec-fetch-site': '' }],
    ] as const) {
      const res = await c.request('POST', path, body, headers);
      expect(res.status, what).toBe(403);
      expect(res.text, what).toContain('Refused');
    }
    expect(await approvalStatus(t, id)).toBe('pending');

    const ok = await c.request('POST', path, { ...form, csrf });
    expect({ status: ok.status, location: ok.headers.get('location') }).toEqual({ status: 303, location: '/console/approvals?notice=approved' });
    expect(await approvalStatus(t, id)).toBe('approved');
    const audit = await t.call('GET', `/v1/audit?target=approval:${id}&action=approval.approved`, { bearer: await devToken(config.data_dir, 'admin') });
    expect(audit.json.items).toMatchObject([{ actor: 'dev/admin', reason: 'looks fine' }]);
  });

  it("shows an approver only its roles' requests, and refuses nicely when it would decide its own", async () => {
    const mine = await gatedRequest(t, 'gated');
    const other = await gatedRequest(t, 'gated-b');
    const c = consoleClient(t);
    await c.login('approver-a');
    const page = await c.request('GET', '/console/approvals');
    expect(page.text).toContain(mine);
    expect(page.text).not.toContain(other);
    expect(page.text).toContain('deploy:prod');

    // approver-a asks for `gated` itself: the service refuses its own decision, the page says why.
    const task = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'dev', subject: 'approver-a' }, roles: ['gated'], ttl_seconds: 600 });
    const own = await t.call('POST', '/v1/credentials', { bearer: await devToken(config.data_dir, 'approver-a') }, { task: task.json.task.id, role: 'gated' });
    expect(own.status, own.text).toBe(202);
    const res = await c.request('POST', `/console/approvals/${own.json.approval.id}/decide`, { verdict: 'approve', reason: 'mine', csrf: await c.csrf() });
    expect(res.headers.get('location')).toBe('/console/approvals?notice=self_approval');
    expect((await c.request('GET', res.headers.get('location')!)).text).toContain('someone else must decide it');
    expect(await approvalStatus(t, own.json.approval.id)).toBe('pending');

    const denied = await c.request('POST', `/console/approvals/${other}/decide`, { verdict: 'deny', reason: 'not mine', csrf: await c.csrf() });
    expect(denied.headers.get('location')).toBe('/console/approvals?notice=approval_not_found');
    expect(await approvalStatus(t, other)).toBe('pending');
  });

  it('finds decided requests with the status filter', async () => {
    const id = await gatedRequest(t);
    const c = consoleClient(t);
    await c.login('admin');
    await c.request('POST', `/console/approvals/${id}/decide`, { verdict: 'deny', reason: 'no deploys on friday', csrf: await c.csrf() });
    expect((await c.request('GET', '/console/approvals')).text).not.toContain(id);
    const denied = await c.request('GET', '/console/approvals?status=denied');
    expect(denied.text).toContain(id);
    expect(denied.text).toContain('no deploys on friday');
  });

  it('tells a live page when approvals change, and ends the stream at logout', async () => {
    const c = consoleClient(t);
    await c.login('admin');
    const res = await c.request('GET', '/console/approvals/events');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let seen = '';
    const until = async (event: string) => {
      while (!seen.includes(`event: ${event}`)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${event}: ${seen}`);
        seen += value;
      }
      seen = seen.slice(seen.indexOf(`event: ${event}`) + 1);
    };
    await until('ready');
    await gatedRequest(t);
    await until('changed');
    await c.request('POST', '/console/logout', { csrf: csrfFrom(await c.request('GET', '/console/approvals')) });
    await until('ended');
    await reader.cancel();
  });

  it("does not keep an idle session alive by the page's own refreshes on live events", async () => {
    const c = consoleClient(t);
    await c.login('admin');
    // The dev login signs on real time: the clock goes back for the tests after this one.
    const started = t.clock.now();
    try {
      t.clock.advance(9 * 60);
      // console.js marks its refresh: served, but not the person acting.
      expect((await c.request('GET', '/console/approvals', undefined, { 'x-tasklease-live': '1' })).status).toBe(200);
      t.clock.advance(2 * 60);
      expect((await c.request('GET', '/console/approvals')).status).toBe(302);
    } finally {
      t.clock.set(started);
    }
  });

  it('gives one session a few live streams, not every stream of the replica', async () => {
    const c = consoleClient(t);
    await c.login('admin');
    const open = [];
    for (let i = 0; i < 5; i++) {
      const res = await c.request('GET', '/console/approvals/events');
      expect(res.status).toBe(200);
      open.push(res);
    }
    expect((await c.request('GET', '/console/approvals/events')).status).toBe(503);
    // Another session still gets its own.
    const other = consoleClient(t);
    await other.login('admin');
    const theirs = await other.request('GET', '/console/approvals/events');
    expect(theirs.status).toBe(200);
    for (const res of [...open, theirs]) await res.res.body!.cancel();
  });

  it('trusts a request\'s own Host as this site only on loopback (DNS rebinding), and signing in again ends the session held', async () => {
    const rebound = consoleClient(t, 'http://evil.example');
    const res = await rebound.request('POST', '/console/login', { subject: 'admin' });
    expect(res.status).toBe(403);
    expect(rebound.cookie).toBeUndefined();

    const c = consoleClient(t);
    await c.login('admin');
    const first = c.cookie;
    await c.login('admin');
    expect(c.cookie).not.toBe(first);
    c.cookie = first;
    expect((await c.request('GET', '/console/approvals')).status).toBe(302);
  });

  it('ends a session after the idle timeout, and after the absolute timeout however active', async () => {
    const idle = consoleClient(t);
    await idle.login('admin');
    const busy = consoleClient(t);
    await busy.login('admin');
    t.clock.advance(9 * 60);
    expect((await busy.request('GET', '/console/approvals')).status).toBe(200);
    t.clock.advance(2 * 60);
    expect((await idle.request('GET', '/console/approvals')).status).toBe(302);
    // Active every 9 minutes, busy lives until the absolute timeout (1h after login), not a moment longer.
    for (let i = 0; i < 6; i++) {
      expect((await busy.request('GET', '/console/approvals')).status, `after ${11 + 9 * i} minutes`).toBe(200);
      t.clock.advance(9 * 60);
    }
    expect((await busy.request('GET', '/console/approvals')).status).toBe(302);
    expect(await t.broker.consoleSessions.prune()).toBeGreaterThanOrEqual(2);
  });

  it('logout deletes the row: the cookie opens nothing, on another broker over the same database too', async () => {
    // The dev login's tokens are signed in real time: bring the clock back from the timeout test.
    t.clock.set(new Date());
    const other = await startTestBroker(database, { config, clock: t.clock, instanceId: 'replica-2' });
    const here = consoleClient(t);
    await here.login('admin');
    const there = consoleClient(other);
    there.cookie = here.cookie;
    expect((await there.request('GET', '/console/approvals')).status).toBe(200);
    const token = here.cookie!.split('=')[1]!;

    const out = await here.request('POST', '/console/logout', { csrf: await here.csrf() });
    expect({ status: out.status, location: out.headers.get('location') }).toEqual({ status: 303, location: '/console/login' });
    expect(out.setCookie).toMatch(/Max-Age=0/);
    expect(await database.db.select().from(consoleSessions).where(eq(consoleSessions.id, sha256Hex(token)))).toEqual([]);
    expect((await there.request('GET', '/console/approvals')).status).toBe(302);
    here.cookie = `tasklease_console=${token}`;
    expect((await here.request('GET', '/console/approvals')).status).toBe(302);
  });
});

const csrfFrom = (page: { text: string }) => /name="csrf" value="([0-9a-f]{64})"/.exec(page.text)![1]!;
