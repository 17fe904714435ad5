/**
 * OpenID Connect login for the console against a real provider (oidc-provider on a loopback port, its
 * dev interactions as login and consent screens): in chromium (playwright-core), an admin signs in
 * through the provider and lands on the Approvals page, a claim-matched approver too, a person who is
 * nothing to the console is refused with no session, logout ends the session (at the provider too, by
 * RP-initiated logout, landing on /console/signed-out), and the callback cannot be replayed. Over HTTP, on
 * both drivers: a wrong or missing state, a callback without the login cookie, and the provider's
 * access_denied each get a 400 page and no session; logout's way to the provider's end_session_endpoint
 * (client_id and post_logout_redirect_uri, no token), and the plain Signed out page without it. Without
 * chromium the browser half fails (test/console/chromium.ts).
 */
import { eq } from 'drizzle-orm';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionStore, csrfTokenOf } from '../../src/console/sessions.js';
import { auditEvents, consoleLogins, consoleSessions } from '../../src/db/schema.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type Driver, type TestDatabase } from '../support/db.js';
import { launchChromium } from './chromium.js';
import { CLIENT_ID, CLIENT_SECRET, freePort, oidcConsoleConfig, serveOn, startProvider } from './oidc-support.js';


/** A provider and a broker configured for it, each on its own loopback port. */
function useOidcBroker(driver: Driver) {
  const env = {} as { t: TestBroker; database: TestDatabase; url: string; provider: string };
  const closers: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    const port = await freePort();
    const brokerUrl = `http://127.0.0.1:${port}`;
    const provider = await startProvider(brokerUrl);
    closers.push(provider.close);
    env.database = await openTestDatabase(driver);
    closers.push(() => env.database.drop());
    env.t = await startTestBroker(env.database, { config: oidcConsoleConfig(brokerUrl, provider.url) });
    const http = await serveOn(env.t, port);
    closers.unshift(http.close);
    env.url = http.url;
    env.provider = provider.url;
  });
  afterAll(async () => {
    for (const close of closers) await close();
  });
  return env;
}

/** Nothing of what the provider sent (code, tokens, the client secret) is in the logs. */
function expectNoTokensLogged(t: TestBroker, codes: string[]) {
  const logs = t.logs.lines.join("\n");
  for (const secret of [CLIENT_SECRET, ...codes]) expect(logs).not.toContain(secret);
  expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
}

describe('console OIDC login in chromium (postgres)', () => {
  const env = useOidcBroker('postgres');
  let browser: Browser;
  const errors: string[] = [];
  const codes: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A fresh browser (no provider session) that goes to the console and signs in at the provider as `login`. */
  async function signIn(login: string): Promise<{ context: BrowserContext; page: Page; callback: string }> {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    let callback = '';
    page.on('request', (r) => {
      if (r.url().startsWith(`${env.url}/console/callback`)) {
        callback = r.url();
        codes.push(new URL(callback).searchParams.get('code') ?? '');
      }
    });
    await page.goto(`${env.url}/console`);
    // The provider's login screen: the broker sent the browser there with state, nonce and an S256 challenge.
    expect(page.url().startsWith(env.provider)).toBe(true);
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'anything');
    await page.click('button[type=submit]');
    // Its consent screen, then back to the broker's callback.
    await page.click('button[type=submit]');
    await page.waitForURL((u) => u.href.startsWith(env.url) && u.pathname !== '/console/callback');
    return { context, page, callback };
  }

  it('signs an admin in through the provider onto the Approvals page, audited, with no token kept; logout ends the session, here and at the provider', async () => {
    const { context, page, callback } = await signIn('alice');
    expect(new URL(page.url()).pathname).toBe('/console/approvals');
    expect(await page.textContent('.whoami span')).toBe('corp/alice');
    expect(await page.getAttribute('.whoami span', 'title')).toBe('admin');
    const authorize = new URL(callback);
    expect(authorize.searchParams.get('code')).toBeTruthy();

    const rows = await env.database.db.select().from(consoleSessions).where(eq(consoleSessions.actor, 'corp/alice'));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.claims).toMatchObject({ sub: 'alice', email: 'alice@example.com', iss: env.provider, aud: 'tasklease-console' });
    expect(JSON.stringify(rows[0])).not.toMatch(/eyJ/);
    expect(await env.database.db.select().from(consoleLogins)).toEqual([]);
    const [login] = await env.database.db.select().from(auditEvents).where(eq(auditEvents.action, 'console.login'));
    expect(login).toMatchObject({ actor: 'corp/alice', decision: 'allow', details: { via: 'oidc' } });

    // The callback again (a replayed code): the login it belonged to is gone.
    const replay = await page.goto(callback);
    expect(replay!.status()).toBe(400);
    expect(await page.textContent('body')).toContain('already used');
    await page.goto(`${env.url}/console/approvals`);
    expect(new URL(page.url()).pathname).toBe('/console/approvals');

    // While the provider's session lives, signing in again goes straight through, with no prompt.
    await page.goto(`${env.url}/console/login`);
    await page.waitForURL(`${env.url}/console/approvals`);

    const [cookie] = (await context.cookies(env.url)).filter((c) => c.name === 'tasklease_console');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
    // Logout ends the console's session, then sends the browser to the provider's end_session_endpoint, whose
    // confirmation (no id_token_hint: the broker keeps none) ends its session and returns to /console/signed-out.
    await page.click('form[action="/console/logout"] button');
    await page.waitForURL((u) => u.href.startsWith(`${env.provider}/session/end`));
    expect(await env.database.db.select().from(consoleSessions).where(eq(consoleSessions.actor, 'corp/alice'))).toEqual([]);
    await page.click('button[name=logout][value=yes]');
    await page.waitForURL(`${env.url}/console/signed-out`);
    expect(await page.textContent('h1')).toBe('Signed out');
    const [logout] = await env.database.db.select().from(auditEvents).where(eq(auditEvents.action, 'console.logout'));
    expect(logout).toMatchObject({ actor: 'corp/alice' });
    // The provider's session has ended too: signing in now shows its login prompt again.
    await page.goto(`${env.url}/console/login`);
    expect(page.url().startsWith(env.provider)).toBe(true);
    await page.waitForSelector('input[name=login]');
    // The old cookie opens nothing now: back to the login.
    const old = await fetch(`${env.url}/console/approvals`, { redirect: 'manual', headers: { cookie: `${cookie!.name}=${cookie!.value}` } });
    expect({ status: old.status, location: old.headers.get('location') }).toEqual({ status: 302, location: '/console/login' });
    await context.close();
  });

  it('matches a claim rule: bob@example.com approves gated, on every page after login too', async () => {
    const { context, page } = await signIn('bob');
    expect(new URL(page.url()).pathname).toBe('/console/approvals');
    expect(await page.getAttribute('.whoami span', 'title')).toBe('approver of gated');
    await page.reload();
    expect(await page.getAttribute('.whoami span', 'title')).toBe('approver of gated');
    await context.close();
  });

  it('refuses a person who matches no principal with a 403 page and no session', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    let status = 0;
    page.on('response', (r) => {
      if (r.url().startsWith(`${env.url}/console/callback`)) status = r.status();
    });
    await page.goto(`${env.url}/console/login`);
    await page.fill('input[name=login]', 'mallory');
    await page.fill('input[name=password]', 'anything');
    await page.click('button[type=submit]');
    await page.click('button[type=submit]');
    await page.waitForURL((u) => u.href.startsWith(`${env.url}/console/callback`));
    expect(status).toBe(403);
    expect(await page.textContent('body')).toContain('corp/mallory');
    expect(await page.textContent('body')).toContain('not an admin');
    expect(await env.database.db.select().from(consoleSessions).where(eq(consoleSessions.actor, 'corp/mallory'))).toEqual([]);
    await context.close();
  });

  it('logged no code, token or secret, and the pages raised no script error', () => {
    expectNoTokensLogged(env.t, codes.filter(Boolean));
    expect(errors).toEqual([]);
  });
});

describe.each(DRIVERS)('console OIDC callback refusals over HTTP (%s)', (driver) => {
  const env = useOidcBroker(driver);

  /** GET /console/login: the provider's URL and the login cookie. */
  async function begin() {
    const res = await fetch(`${env.url}/console/login`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    const cookie = res.headers.get('set-cookie')!;
    return { location, cookie: cookie.split(';')[0]!, setCookie: cookie };
  }
  const callback = (query: Record<string, string>, cookie?: string) =>
    fetch(`${env.url}/console/callback?${new URLSearchParams(query)}`, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  const sessionCount = async () => (await env.database.db.select().from(consoleSessions)).length;

  it('sends the browser to the provider with state, nonce and an S256 challenge, the login in an HttpOnly cookie and never in the URL', async () => {
    const { location, cookie, setCookie } = await begin();
    expect(`${location.origin}${location.pathname}`).toBe(`${env.provider}/auth`);
    const p = location.searchParams;
    expect({ response_type: p.get('response_type'), client_id: p.get('client_id'), redirect_uri: p.get('redirect_uri'), scope: p.get('scope'), method: p.get('code_challenge_method') }).toEqual({
      response_type: 'code',
      client_id: 'tasklease-console',
      redirect_uri: `${env.url}/console/callback`,
      scope: 'openid email',
      method: 'S256',
    });
    for (const key of ['state', 'nonce', 'code_challenge']) expect(p.get(key)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Lax/i);
    expect(setCookie).toMatch(/Max-Age=600/);
    expect(location.href).not.toContain(cookie.split('=')[1]!);
  });

  it('refuses a wrong state, a missing one, and a callback without the login cookie (400, no session), and the login is then used up', async () => {
    const { location, cookie } = await begin();
    const wrong = await callback({ code: 'x', state: 'wrong', iss: env.provider }, cookie);
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain('does not belong to the sign-in this browser started');
    // The login is single-use: even the right state now finds nothing.
    const again = await callback({ code: 'x', state: location.searchParams.get('state')!, iss: env.provider }, cookie);
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('already used');

    const second = await begin();
    const missing = await callback({ code: 'x', iss: env.provider }, second.cookie);
    expect(missing.status).toBe(400);
    const noCookie = await callback({ code: 'x', state: second.location.searchParams.get('state')!, iss: env.provider });
    expect(noCookie.status).toBe(400);
    expect(await sessionCount()).toBe(0);
  });

  it("refuses the provider's access_denied and a code the provider does not know with a clear 400, never a 500", async () => {
    const denied = await begin();
    const res = await callback({ error: 'access_denied', state: denied.location.searchParams.get('state')!, iss: env.provider }, denied.cookie);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('access denied');

    const bogus = await begin();
    const code = await callback({ code: 'not-a-code-the-provider-issued', state: bogus.location.searchParams.get('state')!, iss: env.provider }, bogus.cookie);
    expect(code.status).toBe(400);
    expect(await code.text()).toContain('did not confirm who you are');
    expect(await sessionCount()).toBe(0);
    expectNoTokensLogged(env.t, ['not-a-code-the-provider-issued']);
  });

  /** A session for corp/alice as the callback would make, and a same-origin logout with its CSRF token, on `app`. */
  async function logout(app: { request: TestBroker['broker']['app']['request'] } = env.t.broker.app) {
    const store = createSessionStore({ db: env.database.db, clock: env.t.clock, idleSeconds: 1800, absoluteSeconds: 3600 });
    const { token } = await store.create({ issuer: 'corp', subject: 'alice', claims: { sub: 'alice' } }, { via: 'oidc' });
    const res = await app.request(`${env.url}/console/logout`, {
      method: 'POST',
      headers: { cookie: `tasklease_console=${token}`, 'content-type': 'application/x-www-form-urlencoded', origin: env.url, 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams({ csrf: csrfTokenOf(token) }).toString(),
      redirect: 'manual',
    });
    return { res, text: await res.text(), token };
  }

  it("logout ends the session, then sends the browser to the provider's end_session_endpoint with client_id and post_logout_redirect_uri, and no token", async () => {
    const { res, text } = await logout();
    expect(res.status).toBe(200);
    expect(await sessionCount()).toBe(0);
    // A Refresh, not a 303: the console's CSP (form-action 'self') would block the logout form's redirect to another origin.
    const refresh = /^0; url=(.+)$/.exec(res.headers.get('refresh') ?? '');
    expect(refresh).not.toBeNull();
    const end = new URL(refresh![1]!);
    expect(`${end.origin}${end.pathname}`).toBe(`${env.provider}/session/end`);
    expect(Object.fromEntries(end.searchParams)).toEqual({ client_id: CLIENT_ID, post_logout_redirect_uri: `${env.url}/console/signed-out` });
    expect(end.href).not.toMatch(/eyJ|id_token_hint/);
    expect(text).toContain(`href="${end.href.replaceAll('&', '&amp;')}"`);
    const [audited] = await env.database.db.select().from(auditEvents).where(eq(auditEvents.action, 'console.logout'));
    expect(audited).toMatchObject({ actor: 'corp/alice' });
    // The provider takes the request (the post-logout redirect URI is registered): its confirmation, not an error.
    expect((await fetch(end)).status).toBe(200);

    // Where the provider returns the browser: the Signed out page, with no session.
    const signedOut = await fetch(`${env.url}/console/signed-out`, { redirect: 'manual' });
    expect(signedOut.status).toBe(200);
    expect(await signedOut.text()).toContain('Signed out');
  });

  it('logout shows the Signed out page as before with logout: local, a provider without end_session_endpoint, or one out of reach', async () => {
    const plain = await startProvider(env.url, { endSession: false });
    try {
      const withLocal = oidcConsoleConfig(env.url, env.provider);
      withLocal.console!.oidc!.logout = 'local';
      const local = await startTestBroker(env.database, { clock: env.t.clock, config: withLocal });
      const noEndpoint = await startTestBroker(env.database, { clock: env.t.clock, config: oidcConsoleConfig(env.url, plain.url) });
      const unreachable = await startTestBroker(env.database, { clock: env.t.clock, config: oidcConsoleConfig(env.url, `http://127.0.0.1:${await freePort()}`) });
      for (const broker of [local, noEndpoint, unreachable]) {
        const { res, text } = await logout(broker.broker.app);
        expect(res.status).toBe(200);
        expect(res.headers.get('refresh')).toBeNull();
        expect(text).toContain('Signed out');
        expect(text).toContain('You may still be signed in at your identity provider');
        expect(await sessionCount()).toBe(0);
        // Only the provider out of reach is a warning: the others are configurations, not failures.
        expect(broker.logs.lines.some((l) => l.includes("could not end the identity provider's session"))).toBe(broker === unreachable);
      }
    } finally {
      await plain.close();
    }
  });
});
