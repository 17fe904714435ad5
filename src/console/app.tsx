// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { readFileSync } from 'node:fs';
import { Hono, type Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { JWTPayload } from 'jose';
import type { ConsoleSession } from '../db/schema.js';
import { requestOf } from '../http/env.js';
import { safeText } from '../http/schemas.js';
import type { Principal } from '../identity/principals.js';
import { AuthError } from '../identity/types.js';
import type { ConsoleDeps, ConsoleEnv, ConsoleKit } from './kit.js';
import { describePerson, describePrincipal, landing as landingOf } from './who.js';
import { createLiveStreams } from './live.js';
import { createLoginLimit } from './login-limit.js';
import { LoginRefused, ProviderUnavailable, TooManyLogins } from './oidc.js';
import { MessagePage, type Viewer } from './pages/layout.js';
import { DevLoginPage, LoginBusyPage, LoginRefusedPage, SignedOutPage, NotConfiguredPage, NotPrincipalPage, ProviderLogoutPage, ProviderUnavailablePage } from './pages/login.js';
import { OverviewPage } from './pages/overview.js';
import { readOverview } from './overview.js';
import { agentRoutes } from './routes/agents.js';
import { approvalRoutes } from './routes/approvals.js';
import { auditRoutes } from './routes/audit.js';
import { sessionRoutes } from './routes/sessions.js';
import { leaseRoutes } from './routes/leases.js';
import { notificationRoutes } from './routes/notifications.js';
import { taskRoutes } from './routes/tasks.js';
import { clearLoginCookie, clearSessionCookie, consoleHeaders, readLoginCookie, readSessionCookie, sameOrigin, setLoginCookie, setSessionCookie } from './security.js';
import { csrfTokenOf, csrfValid } from './sessions.js';

export type { ConsoleDeps } from './kit.js';

const ASSETS: Record<string, string> = { 'console.js': 'text/javascript; charset=utf-8', 'console.css': 'text/css; charset=utf-8', 'favicon.svg': 'image/svg+xml' };
const SubjectSchema = safeText(200);

/** A form body, or undefined when it cannot be parsed (a multipart body without its boundary throws). */
async function readForm(c: Context) {
  try {
    return await c.req.parseBody();
  } catch {
    return undefined;
  }
}

/**
 * The console at /console: server-rendered pages over the same services as
 * the REST routes. Cookie sessions (sessions.ts) stand in for the Bearer
 * token; the person's identity goes through the authenticator's principal
 * matching, so the console and the API agree on who may do what.
 */
export function createConsole(deps: ConsoleDeps) {
  const { sessions } = deps;
  const dev = deps.devLogin !== undefined;
  const oidc = deps.oidc;
  // Cookies without Secure only where the browser talks plain HTTP to this machine: dev mode, or a loopback http public_url (a local try-out).
  const publicUrl = new URL(deps.publicUrl);
  const plain = dev || (publicUrl.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(publicUrl.hostname));
  const pollMs = deps.pollMs ?? 1000;
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: readFileSync(new URL(`./assets/${name}`, import.meta.url), 'utf8') }]));
  const live = createLiveStreams({ sessions, log: deps.log, pollMs });
  const loginLimit = deps.loginLimit
    ? createLoginLimit({ clock: deps.clock, perMinute: deps.loginLimit.per_minute, burst: deps.loginLimit.burst, trustedProxies: deps.loginLimit.trusted_proxies })
    : undefined;

  const app = new Hono<ConsoleEnv>();
  app.use('*', consoleHeaders);

  const toLogin = (c: Context) => c.redirect('/console/login', c.req.method === 'GET' ? 302 : 303);
  const refused = (c: Context, why: string) =>
    c.html(
      <MessagePage title="Refused" dev={dev}>
        <p class="error">{why}</p>
        <p>
          <a href="/console/approvals">Back to the console</a>
        </p>
      </MessagePage>,
      403,
    );
  const personOf = (session: ConsoleSession) =>
    deps.authenticator.principalOf({ issuer: session.issuer, subject: session.subject, claims: session.claims, tokenSha256: session.id, expiresAt: session.expiresAt });

  /**
   * Every page and action needs a live session; without one the answer is the login page. An action
   * (POST) must also come from this origin and carry the session's CSRF token. A live stream is not a
   * person's action, so it does not extend an idle session.
   */
  const requireSession = (kind: 'page' | 'action' | 'stream') =>
    createMiddleware<ConsoleEnv>(async (c, next) => {
      const token = readSessionCookie(plain, c);
      // Without a login configured no session can exist: a row left from another configuration opens nothing.
      const session = token && (dev || oidc) ? await sessions.find(token) : undefined;
      if (!token || !session) return toLogin(c);
      if (kind === 'action') {
        if (!sameOrigin(c, deps.publicUrl)) return refused(c, 'This action came from another site.');
        const form = await readForm(c);
        if (!form) return refused(c, 'This form could not be read (a malformed body). Reload the page and try again.');
        if (!csrfValid(token, form.csrf)) return refused(c, 'This form is out of date or did not come from the console (missing or wrong CSRF token). Reload the page and try again.');
        c.set('form', form);
      }
      // Neither a live stream nor the page refreshing itself on its events is the person acting (console.js
      // marks its refresh; a cross-site request cannot set the header without CORS): they do not extend an idle session.
      if (kind !== 'stream' && c.req.header('x-tasklease-live') !== '1') await sessions.touch(session);
      c.set('session', session);
      c.set('sessionToken', token);
      const person = personOf(session);
      c.set('person', person);
      // Only for a person who is nothing else (an agent's owner): the layout says which agents.
      if (!describePrincipal(person, deps.approvals)) c.set('owns', await deps.registry.ownedBy(person.identity));
      await next();
    });

  /** Signing in again ends the session the browser still holds, rather than leaving it usable until it times out. */
  const endPrevious = async (c: Context<ConsoleEnv>) => {
    const token = readSessionCookie(plain, c);
    const previous = token ? await sessions.find(token) : undefined;
    if (previous) await sessions.end(previous, requestOf(c));
  };

  const viewerOf = (c: Context<ConsoleEnv>): Viewer => ({
    actor: c.get('person').actor,
    what: describePrincipal(c.get('person'), deps.approvals, c.get('owns')),
    csrf: csrfTokenOf(c.get('sessionToken')),
    admin: c.get('person').admin,
    orchestrator: c.get('person').orchestrator,
  });
  /** The caller as the services take it, as the API's callerOf builds it. */
  const callerOf = (c: Context<ConsoleEnv>) => ({ actor: c.get('person').actor, admin: c.get('person').admin, scopes: c.get('person').scopes, ...requestOf(c) });
  const notFound = (c: Context<ConsoleEnv>, what: string, back: string) =>
    c.html(
      <MessagePage title="Not found" dev={dev} viewer={viewerOf(c)}>
        <p class="error">{what}</p>
        <p>
          <a href={back}>Back</a>
        </p>
      </MessagePage>,
      404,
    );
  const adminsOnly = (c: Context<ConsoleEnv>) =>
    c.html(
      <MessagePage title="Admins only" dev={dev} viewer={viewerOf(c)}>
        <p class="error">This page is for admins.</p>
      </MessagePage>,
      403,
    );

  app.get('/assets/:file', (c) => {
    const asset = assets.get(c.req.param('file'));
    if (!asset) return c.text('no such asset', 404);
    return c.body(asset.body, 200, { 'Content-Type': asset.type });
  });

  /** Where a person lands: the Approvals page, or the Agents page for a person who only owns agents. */
  const landing = (person: Principal) => landingOf(person, deps.approvals);

  // The overview, for admins; anyone else goes where landing() says, anyone signed out to the login.
  app.get('/', requireSession('page'), async (c) => {
    if (!c.get('person').admin) return c.redirect(landing(c.get('person')), 302);
    const now = deps.clock.now();
    const [overview, backends] = await Promise.all([readOverview(deps.db, now), deps.checkBackends?.() ?? Promise.resolve({})]);
    return c.html(<OverviewPage dev={dev} viewer={viewerOf(c)} overview={overview} backends={backends} now={now} />);
  });

  /** Sign-in starts are bounded per client address (login-limit.ts): too many answer 429 with Retry-After. */
  const busy = (c: Context, retryAfterSeconds: number, why: 'client' | 'logins') => {
    c.header('Retry-After', String(retryAfterSeconds));
    return c.html(<LoginBusyPage why={why} dev={dev} />, why === 'client' ? 429 : 503);
  };
  const limited = (c: Context) => {
    const taken = loginLimit?.take(c);
    if (taken && !taken.ok) {
      deps.log.info({ reqId: c.get('requestId'), client: loginLimit!.clientOf(c) }, 'console sign-ins from one client limited');
      return busy(c, taken.retryAfterSeconds, 'client');
    }
    return undefined;
  };

  app.get('/login', async (c) => {
    if (deps.devLogin) return c.html(<DevLoginPage suggestions={deps.devLogin.suggestions} />);
    if (!oidc) return c.html(<NotConfiguredPage />, 501);
    const refusal = limited(c);
    if (refusal) return refusal;
    try {
      const { token, url } = await oidc.login.begin();
      setLoginCookie(plain, c, token);
      return c.redirect(url, 302);
    } catch (err) {
      if (err instanceof ProviderUnavailable) return unavailable(c, err);
      if (err instanceof TooManyLogins) {
        deps.log.warn({ reqId: c.get('requestId') }, 'console logins under way at their limit (console.login_limit.max_pending): sign-ins refused');
        return busy(c, 60, 'logins');
      }
      throw err;
    }
  });

  const unavailable = (c: Context, err: Error) => {
    deps.log.warn({ reqId: c.get('requestId'), err: err.message }, 'the console could not reach the identity provider');
    return c.html(<ProviderUnavailablePage />, 502);
  };

  /**
   * The provider sends the browser back here with a code (or an error). The login cookie's row goes
   * whatever the outcome; the person gets a session only when the ID token verifies and the identity is
   * something to the console. Neither the code nor any token is logged or kept.
   */
  app.get('/callback', async (c) => {
    if (!oidc) return c.html(<NotConfiguredPage />, 501);
    const token = readLoginCookie(plain, c);
    clearLoginCookie(plain, c);
    let found: { subject: string; claims: Record<string, unknown> };
    try {
      found = await oidc.login.finish(token, new URL(c.req.url));
    } catch (err) {
      if (err instanceof LoginRefused) {
        deps.log.info({ reqId: c.get('requestId'), reason: err.reason }, 'a console login was refused');
        return c.html(<LoginRefusedPage reason={err.reason} />, 400);
      }
      if (err instanceof ProviderUnavailable) return unavailable(c, err);
      throw err;
    }
    const now = deps.clock.now();
    const person = deps.authenticator.principalOf({ issuer: oidc.issuer, subject: found.subject, claims: found.claims as JWTPayload, tokenSha256: '', expiresAt: now });
    if (!(await describePerson(person, deps.approvals, deps.registry)).what) {
      deps.log.info({ reqId: c.get('requestId'), actor: person.actor }, 'a console login matched no principal');
      return c.html(<NotPrincipalPage actor={person.actor} />, 403);
    }
    await endPrevious(c);
    const { token: session } = await sessions.create({ issuer: oidc.issuer, subject: found.subject, claims: found.claims }, { ...requestOf(c), via: 'oidc' });
    setSessionCookie(plain, c, session, deps.absoluteSeconds);
    return c.redirect(landing(person), 302);
  });

  app.post('/login', async (c) => {
    const devLogin = deps.devLogin;
    if (!devLogin) return c.html(<NotConfiguredPage />, 501);
    const refusal = limited(c);
    if (refusal) return refusal;
    if (!sameOrigin(c, deps.publicUrl)) return refused(c, 'This sign-in came from another site.');
    const form = (await readForm(c)) ?? {};
    const chosen = typeof form.subject === 'string' && form.subject !== '' ? form.subject : form.other;
    const subject = SubjectSchema.safeParse(chosen);
    const again = (error: string) => c.html(<DevLoginPage suggestions={devLogin.suggestions} error={error} />, 400);
    if (!subject.success) return again('Choose a subject, or type one (up to 200 characters).');
    let person: Principal;
    try {
      person = await deps.authenticator.authenticate(await devLogin.sign(subject.data));
    } catch (err) {
      if (err instanceof AuthError) return again('The dev issuer could not sign in this subject.');
      throw err;
    }
    if (!(await describePerson(person, deps.approvals, deps.registry)).what) {
      return again(`${devLogin.issuer}/${subject.data} is not an admin, an orchestrator or an approver of any role, nor an owner of any agent: the console has nothing for it.`);
    }
    await endPrevious(c);
    const { token } = await sessions.create({ issuer: devLogin.issuer, subject: subject.data }, { ...requestOf(c), via: 'dev login' });
    setSessionCookie(plain, c, token, deps.absoluteSeconds);
    return c.redirect(landing(person), 303);
  });

  /** The browser's session has ended (logout, or an admin revoking its own): the cookie goes. */
  const signedOut = async (c: Context<ConsoleEnv>) => {
    clearSessionCookie(plain, c);
    if (dev || !oidc) return c.redirect('/console/login', 303);
    // After an OIDC login the provider's own session lives on, and /console/login would sign the person straight
    // back in: end it there too where the provider offers RP-initiated logout; it returns the browser to /console/signed-out.
    const endSession = await oidc.login.logoutUrl().catch((err: unknown) => {
      if (!(err instanceof ProviderUnavailable)) throw err;
      deps.log.warn({ reqId: c.get('requestId'), err: err.message }, "the console could not end the identity provider's session");
      return undefined;
    });
    if (!endSession) return c.html(<SignedOutPage />);
    // Not a 303: the CSP's form-action 'self' would block the form's redirect to the provider (pages/login.tsx).
    return c.html(<ProviderLogoutPage url={endSession} />, 200, { Refresh: `0; url=${endSession}` });
  };

  app.post('/logout', requireSession('action'), async (c) => {
    await sessions.end(c.get('session'), requestOf(c));
    return signedOut(c);
  });

  // Where the provider returns the browser after its logout (the post-logout redirect URI): a fixed page, no session needed.
  app.get('/signed-out', (c) => c.html(<SignedOutPage returned={true} />));

  const kit: ConsoleKit = { deps, dev, requireSession, viewerOf, callerOf, personOf, notFound, adminsOnly, refused, live };
  approvalRoutes(app, kit);
  agentRoutes(app, kit);
  leaseRoutes(app, kit);
  taskRoutes(app, kit);
  auditRoutes(app, kit);
  notificationRoutes(app, kit);
  sessionRoutes(app, kit, signedOut);

  app.onError((err, c) => {
    deps.log.error({ reqId: c.get('requestId'), err: { name: err.name, stack: err.stack } }, 'console error');
    return c.html(
      <MessagePage title="Something went wrong" dev={dev}>
        <p class="error">The console could not answer. The request id {c.get('requestId') ?? ''} identifies the error in the broker's logs.</p>
      </MessagePage>,
      500,
    );
  });

  return app;
}
