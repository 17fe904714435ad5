/**
 * The console's Sessions page for admins (revoke one session, or every
 * session of a person, across replicas, audited), sign-in for a person who
 * only owns agents, and the sign-in rate limit per client address (counted
 * over real HTTP, never timed) with the cap on OIDC logins under way.
 */
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsoleLoginLimitSchema } from '../../src/config/console.js';
import { createLoginLimit } from '../../src/console/login-limit.js';
import { consoleLogins, consoleSessions } from '../../src/db/schema.js';
import { sha256Hex } from '../../src/ids.js';
import { startTestBroker, useTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { freePort, oidcConsoleConfig, serveOn, startProvider } from './oidc-support.js';
import { consoleClient, devConsoleConfig, devToken, signedIn } from './support.js';

const owner = (name: string, subject: string) => ({ name, contact: `${name}@example.com`, principals: [{ issuer: 'dev', subject }] });
const config = await devConsoleConfig({
  agents: {
    register: [
      { name: 'bot-o', match: { issuer: 'test', subject: 'agent-o' }, owner: owner('team-o', 'owner-o'), purpose: 'owned by owner-o', roles: ['demo'] },
      { name: 'bot-x', match: { issuer: 'test', subject: 'agent-x' }, owner: owner('team-x', 'owner-x'), purpose: 'owned by someone else', roles: ['demo'] },
    ],
  },
  console: { login_limit: { per_minute: 60, burst: 3, trusted_proxies: ['127.0.0.1'] } },
});

const tokenOf = (c: { cookie?: string }) => c.cookie!.split('=')[1]!;
const idOf = (c: { cookie?: string }) => sha256Hex(tokenOf(c));

describe.each(DRIVERS)('console sessions for admins (%s)', (driver) => {
  let t: TestBroker;
  let database: TestDatabase;
  useTestBroker(driver, (db, broker) => ((database = db), (t = broker)), { config });
  /** owner-o only owns bot-o: its login lands on the Agents page, which renders its CSRF token too. */
  const ownerSignedIn = async () => {
    const c = consoleClient(t);
    expect((await c.request('POST', '/console/login', { subject: 'owner-o' })).headers.get('location')).toBe('/console/agents');
    const page = await c.request('GET', '/console/agents');
    return Object.assign(c, { token: /name="csrf" value="([0-9a-f]{64})"/.exec(page.text)![1]! });
  };
  const audit = async (query: string) => (await t.call('GET', `/v1/audit?${query}`, { bearer: await devToken(config.data_dir, 'admin') })).json.items;

  it("lists live sessions to an admin, newest first, its own marked, with a prefix of the id and the full id only in the form's URL", async () => {
    const approver = await signedIn(t, 'approver-a');
    // The manual clock stands still: move it, so the two logins have an order.
    t.clock.set(new Date(t.clock.now().getTime() + 1000));
    const admin = await signedIn(t, 'admin');
    const page = await admin.request('GET', '/console/sessions');
    expect(page.status).toBe(200);
    expect(page.text).toContain('href="/console/sessions" class="active"');
    const mine = idOf(admin);
    const theirs = idOf(approver);
    expect(page.text).toContain(`action="/console/sessions/${theirs}/revoke"`);
    expect(page.text).toContain(`<code>${theirs.slice(0, 12)}</code>`);
    expect(page.text).toContain('dev login');
    // Newest first: the admin signed in after the approver; only its own row says "yours".
    expect(page.text.indexOf(`session-${mine.slice(0, 12)}`)).toBeLessThan(page.text.indexOf(`session-${theirs.slice(0, 12)}`));
    expect(page.text.match(/ yours</g)).toHaveLength(1);
    expect(page.text).toContain('Revoke (signs you out)');
    // The cookie's token is nowhere on the page.
    expect(page.text).not.toContain(tokenOf(approver));
    expect(page.text).not.toContain(tokenOf(admin));
  });

  it("revokes one session: the approver's next page is the login, on another broker over the same database too; audited", async () => {
    t.clock.set(new Date());
    const other = await startTestBroker(database, { config, clock: t.clock, instanceId: 'replica-2' });
    const approver = await signedIn(t, 'approver-a');
    const untouched = await signedIn(t, 'approver-a');
    const there = consoleClient(other);
    there.cookie = approver.cookie;
    expect((await there.request('GET', '/console/approvals')).status).toBe(200);

    const admin = await signedIn(t, 'admin');
    const noReason = await admin.request('POST', `/console/sessions/${idOf(approver)}/revoke`, { csrf: admin.token, reason: '' });
    expect(noReason.headers.get('location')).toBe('/console/sessions?notice=reason_required');
    expect((await approver.request('GET', '/console/approvals')).status).toBe(200);

    const res = await admin.request('POST', `/console/sessions/${idOf(approver)}/revoke`, { csrf: admin.token, reason: 'laptop lost' });
    expect({ status: res.status, location: res.headers.get('location') }).toEqual({ status: 303, location: '/console/sessions?notice=revoked' });
    for (const c of [approver, there]) expect(await c.request('GET', '/console/approvals').then((r) => [r.status, r.headers.get('location')])).toEqual([302, '/console/login']);
    expect((await untouched.request('GET', '/console/approvals')).status).toBe(200);
    const [row] = await database.db.select().from(consoleSessions).where(eq(consoleSessions.id, idOf(approver)));
    expect(row?.revokedAt).toBeInstanceOf(Date);
    expect(await audit(`action=console.session_revoked&target=console:dev/approver-a`)).toMatchObject([{ actor: 'dev/admin', decision: 'allow', reason: 'laptop lost', details: { reason: 'laptop lost', sessions: 1 } }]);

    // Already revoked: nothing left to revoke, the same 404 page as an id that names no session.
    for (const id of [idOf(approver), 'a'.repeat(64), 'not-an-id']) expect((await admin.request('POST', `/console/sessions/${id}/revoke`, { csrf: admin.token, reason: 'again' })).status).toBe(404);
    expect(await audit(`action=console.session_revoked&target=console:dev/approver-a`)).toHaveLength(1);
  });

  it('revokes every session of one person at once, and an admin revoking its own session is signed out', async () => {
    const a = await signedIn(t, 'approver-a');
    const b = await signedIn(t, 'approver-a');
    const admin = await signedIn(t, 'admin');
    const before = (await audit('action=console.session_revoked&target=console:dev/approver-a')).length;
    const res = await admin.request('POST', '/console/sessions/revoke-actor', { csrf: admin.token, actor: 'dev/approver-a', reason: 'left the team' });
    expect(res.headers.get('location')).toMatch(/^\/console\/sessions\?notice=revoked_actor&revoked=\d+$/);
    const n = Number(/revoked=(\d+)/.exec(res.headers.get('location')!)![1]);
    expect(n).toBeGreaterThanOrEqual(2);
    for (const c of [a, b]) expect((await c.request('GET', '/console/approvals')).status).toBe(302);
    const events = await audit('action=console.session_revoked&target=console:dev/approver-a');
    expect(events).toHaveLength(before + 1);
    expect(events.at(-1)).toMatchObject({ actor: 'dev/admin', details: { reason: 'left the team', sessions: n } });
    expect((await database.db.select().from(consoleSessions).where(eq(consoleSessions.actor, 'dev/approver-a'))).every((s) => s.revokedAt !== null)).toBe(true);

    const none = await admin.request('POST', '/console/sessions/revoke-actor', { csrf: admin.token, actor: 'dev/approver-a', reason: 'again' });
    expect(none.headers.get('location')).toBe('/console/sessions?notice=no_sessions');
    expect((await admin.request('POST', '/console/sessions/revoke-actor', { csrf: admin.token, actor: '', reason: 'x' })).headers.get('location')).toBe('/console/sessions?notice=actor_required');

    const held = admin.cookie;
    const self = await admin.request('POST', `/console/sessions/${idOf(admin)}/revoke`, { csrf: admin.token, reason: 'done for today' });
    expect({ status: self.status, location: self.headers.get('location') }).toEqual({ status: 303, location: '/console/login' });
    expect(self.setCookie).toMatch(/Max-Age=0/);
    admin.cookie = held;
    expect((await admin.request('GET', '/console/sessions')).status).toBe(302);
  });

  it('refuses non-admins (403, nothing changes) and a missing or wrong CSRF token (403)', async () => {
    const victim = await signedIn(t, 'admin');
    const approver = await signedIn(t, 'approver-a');
    const owner = await ownerSignedIn();
    const count = async () => (await audit('action=console.session_revoked')).length;
    const before = await count();
    for (const who of [approver, owner]) {
      expect((await who.request('GET', '/console/sessions')).status).toBe(403);
      expect((await who.request('GET', '/console/approvals')).text).not.toContain('href="/console/sessions"');
      expect((await who.request('POST', `/console/sessions/${idOf(victim)}/revoke`, { csrf: who.token, reason: 'mine now' })).status).toBe(403);
      expect((await who.request('POST', '/console/sessions/revoke-actor', { csrf: who.token, actor: 'dev/admin', reason: 'mine now' })).status).toBe(403);
    }
    const admin = await signedIn(t, 'admin');
    const forms: Record<string, string>[] = [{ reason: 'no token' }, { reason: 'wrong token', csrf: 'f'.repeat(64) }, { reason: "another's token", csrf: approver.token }];
    for (const form of forms) {
      expect((await admin.request('POST', `/console/sessions/${idOf(victim)}/revoke`, form)).status).toBe(403);
      expect((await admin.request('POST', '/console/sessions/revoke-actor', { ...form, actor: 'dev/approver-a' })).status).toBe(403);
    }
    expect(await count()).toBe(before);
    for (const c of [victim, approver]) expect((await c.request('GET', '/console/approvals')).status).toBe(200);
  });

  it('signs in a person who only owns an agent: lands on the Agents page, sees only its agents, suspends its own', async () => {
    const c = consoleClient(t);
    const login = await c.request('POST', '/console/login', { subject: 'owner-o' });
    expect({ status: login.status, location: login.headers.get('location') }).toEqual({ status: 303, location: '/console/agents' });
    expect((await c.request('GET', '/console')).headers.get('location')).toBe('/console/agents');
    const page = await c.request('GET', '/console/agents');
    expect(page.status).toBe(200);
    expect(page.text).toContain('bot-o');
    expect(page.text).not.toContain('bot-x');
    expect(page.text).toContain('title="owner of bot-o"');
    expect((await c.request('GET', '/console/agents/bot-x')).status).toBe(404);
    const csrf = /name="csrf" value="([0-9a-f]{64})"/.exec(page.text)![1]!;
    const done = await c.request('POST', '/console/agents/bot-o/suspend', { csrf, reason: 'acting up' });
    expect(done.headers.get('location')).toBe('/console/agents/bot-o?notice=suspended');
    expect((await t.broker.registry.get('bot-o'))?.suspension).toMatchObject({ reason: 'acting up', suspendedBy: 'dev/owner-o' });
    expect((await c.request('POST', '/console/agents/bot-x/suspend', { csrf, reason: 'not mine' })).status).toBe(404);
    // The dev login offers owners too; a subject that is nothing is still refused.
    expect((await consoleClient(t).request('GET', '/console/login')).text).toContain('owner of bot-o');
    const nobody = await consoleClient(t).request('POST', '/console/login', { subject: 'agent-nobody' });
    expect(nobody.status).toBe(400);
    expect(nobody.text).toContain('nor an owner of any agent');
  });

  it('limits sign-ins per client address over HTTP: 429 with Retry-After, X-Forwarded-For believed only from a trusted proxy', async () => {
    t.clock.set(new Date());
    const http = await serveOn(t, await freePort());
    try {
      const login = async (forwardedFor?: string) => {
        const res = await fetch(`${http.url}/console/login`, {
          method: 'POST',
          redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: http.url, ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
          body: 'subject=agent-nobody',
        });
        return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
      };
      // The peer (127.0.0.1) is a trusted proxy: the client is the rightmost address it does not trust.
      for (let i = 0; i < 3; i++) expect((await login('203.0.113.7')).status).toBe(400);
      const limited = await login('203.0.113.7');
      expect(limited.status).toBe(429);
      expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(limited.text).toContain('Too many sign-ins');
      // A client cannot escape its bucket by writing its own X-Forwarded-For in front.
      expect((await login('198.51.100.1, 203.0.113.7')).status).toBe(429);
      expect((await login('198.51.100.1, 127.0.0.1, 203.0.113.7')).status).toBe(429);
      // Another client has its own bucket; one IPv6 /64 is one client.
      expect((await login('203.0.113.8')).status).toBe(400);
      for (let i = 0; i < 3; i++) expect((await login(`2001:db8:1:2::${i + 1}`)).status).toBe(400);
      expect((await login('2001:db8:1:2:ffff::9')).status).toBe(429);
      // The bucket fills again as the broker's clock moves (60 a minute: one a second).
      t.clock.set(new Date(t.clock.now().getTime() + 2000));
      expect((await login('203.0.113.7')).status).toBe(400);
      // In process (no peer address) nothing is limited: the other tests of this file sign in freely.
      expect((await consoleClient(t).request('POST', '/console/login', { subject: 'agent-nobody' })).status).toBe(400);
    } finally {
      await http.close();
    }
  });
});

describe('the client address of a sign-in (login-limit.ts)', () => {
  const at = (peer: string | undefined, xff?: string) =>
    ({ env: peer ? { incoming: { socket: { remoteAddress: peer } } } : undefined, req: { header: (name: string) => (name === 'x-forwarded-for' ? xff : undefined) } }) as never;
  const clock = { now: () => new Date() };

  it('ignores X-Forwarded-For from an untrusted peer, walks it from the right behind trusted proxies, groups IPv6 by /64', () => {
    const none = createLoginLimit({ clock, perMinute: 1, burst: 1, trustedProxies: [] });
    expect(none.clientOf(at('192.0.2.1', '203.0.113.7'))).toBe('192.0.2.1');
    expect(none.clientOf(at('::ffff:192.0.2.1'))).toBe('192.0.2.1');
    expect(none.clientOf(at(undefined))).toBeUndefined();
    const behind = createLoginLimit({ clock, perMinute: 1, burst: 1, trustedProxies: ['10.0.0.0/8', 'fd00::/8'] });
    expect(behind.clientOf(at('10.1.2.3', '198.51.100.1, 203.0.113.7, 10.9.9.9'))).toBe('203.0.113.7');
    expect(behind.clientOf(at('10.1.2.3'))).toBe('10.1.2.3');
    expect(behind.clientOf(at('10.1.2.3', 'garbage, 203.0.113.7'))).toBe('203.0.113.7');
    // A hop that is no address is its own bucket, never the proxy's (everyone behind it); ports and brackets are not part of an address.
    expect(behind.clientOf(at('10.1.2.3', '203.0.113.7, garbage'))).toBe('hop:garbage');
    expect(behind.clientOf(at('10.1.2.3', '203.0.113.7:5678'))).toBe('203.0.113.7');
    expect(behind.clientOf(at('10.1.2.3', '[2001:db8:1:2::9]:443'))).toBe('2001:db8:1:2::/64');
    expect(behind.clientOf(at('fd00::1', '2001:db8:a:b:c:d:e:f'))).toBe('2001:db8:a:b::/64');
    expect(behind.clientOf(at('2001:db8::1', '203.0.113.7'))).toBe('2001:db8:0:0::/64');
  });

  it('reads console.login_limit: defaults, and trusted_proxies only as addresses or CIDR ranges', () => {
    expect(ConsoleLoginLimitSchema.parse({})).toEqual({ per_minute: 30, burst: 10, max_pending: 10_000, trusted_proxies: [] });
    expect(ConsoleLoginLimitSchema.safeParse({ trusted_proxies: ['10.0.0.0/8', '192.0.2.1', 'fd00::/8'] }).success).toBe(true);
    for (const bad of ['10.0.0.0/33', 'proxy.example', '10.0.0.0/8/1', 'fd00::/129', '10.0.0.0/x']) expect(ConsoleLoginLimitSchema.safeParse({ trusted_proxies: [bad] }).success, bad).toBe(false);
  });
});

describe.each(DRIVERS)('the cap on OIDC logins under way (%s)', (driver) => {
  let database: TestDatabase;
  let t: TestBroker;
  let closeProvider: () => Promise<void>;
  beforeAll(async () => {
    const brokerUrl = `http://127.0.0.1:${await freePort()}`;
    const provider = await startProvider(brokerUrl);
    closeProvider = provider.close;
    database = await openTestDatabase(driver);
    const base = oidcConsoleConfig(brokerUrl, provider.url);
    t = await startTestBroker(database, { config: { ...base, console: { ...base.console, login_limit: { max_pending: 3 } } } });
  });
  afterAll(async () => {
    await closeProvider?.();
    await database?.drop();
  });

  it('refuses a login beyond max_pending unexpired logins (503, Retry-After, no row), and takes them again once they expire', async () => {
    const begin = () => t.broker.app.request('http://localhost/console/login', { redirect: 'manual' });
    for (let i = 0; i < 3; i++) expect((await begin()).status).toBe(302);
    const refused = await begin();
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('60');
    expect(await refused.text()).toContain('Too many sign-ins are under way');
    expect(await database.db.select().from(consoleLogins)).toHaveLength(3);
    t.clock.set(new Date(t.clock.now().getTime() + 11 * 60_000));
    expect((await begin()).status).toBe(302);
  });
});
