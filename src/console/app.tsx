// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { readFileSync } from 'node:fs';
import { Hono, type Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { streamSSE } from 'hono/streaming';
import type { AgentRegistry } from '../agents/registry.js';
import { agentsUse, reviewAgent } from '../agents/review.js';
import type { AgentService } from '../agents/service.js';
import type { ApprovalService } from '../approvals/service.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { LEASE_STATUSES, type ConsoleSession } from '../db/schema.js';
import type { LeaseService } from '../leases/service.js';
import type { TaskService } from '../tasks/service.js';
import { AppError } from '../errors.js';
import { requestOf, type AppEnv } from '../http/env.js';
import { safeText, TaskIdSchema } from '../http/schemas.js';
import type { Authenticator, Principal } from '../identity/principals.js';
import { AuthError } from '../identity/types.js';
import type { JWTPayload } from 'jose';
import { UUID_RE } from '../ids.js';
import type { Logger } from '../log.js';
import type { Policy } from '../policy/decide.js';
import { describePrincipal } from './dev-login.js';
import { approvalsFingerprint } from './live.js';
import { AGENT_NOTICES, AgentPage, AgentsPage, type AgentNotice } from './pages/agents.js';
import { ApprovalPage, ApprovalsPage, NOTICES, STATUS_FILTERS, type Notice, type StatusFilter } from './pages/approvals.js';
import { MessagePage, type Viewer } from './pages/layout.js';
import { DevLoginPage, LoginRefusedPage, SignedOutPage, NotConfiguredPage, NotPrincipalPage, ProviderUnavailablePage } from './pages/login.js';
import { BULK_FIELDS, BulkRevokePage, LEASE_NOTICES, LeasesPage, leaseQueryString, type BulkFilter, type LeaseNotice, type LeaseQuery } from './pages/leases.js';
import { TASK_FILTERS, TASK_NOTICES, TaskPage, TasksPage, type TaskFilter, type TaskNotice } from './pages/tasks.js';
import { LoginRefused, ProviderUnavailable, type OidcLogin } from './oidc.js';
import { activeLeaseCounts, leaseCountsByTask, taskSummaries } from './queries.js';
import { AuditPage, type AuditQuery } from './pages/audit.js';
import { OverviewPage, type BackendStatus } from './pages/overview.js';
import { createChainCheck } from './chain-check.js';
import { readOverview } from './overview.js';
import { listAudit } from '../audit/query.js';
import { clearLoginCookie, clearSessionCookie, consoleHeaders, readLoginCookie, readSessionCookie, sameOrigin, setLoginCookie, setSessionCookie } from './security.js';
import { csrfTokenOf, csrfValid, type SessionStore } from './sessions.js';

export interface ConsoleDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  approvals: ApprovalService;
  registry: AgentRegistry;
  agentService: AgentService;
  leases: LeaseService;
  tasks: TaskService;
  policy: Policy;
  authenticator: Authenticator;
  sessions: SessionStore;
  publicUrl: string;
  absoluteSeconds: number;
  /** Dev mode's login: signs a dev-issuer token for a subject, which the authenticator then reads as any API token. Absent: no login is configured. */
  devLogin?: { issuer: string; sign(subject: string): Promise<string>; suggestions: { subject: string; what: string }[] };
  /** OpenID Connect login for people (console.oidc): `issuer` is the name of the entry of `issuers` their identities belong to. */
  oidc?: { issuer: string; login: OidcLogin };
  /** How often a live page's stream looks for changes. */
  pollMs?: number;
  /** The broker's backend permission checks (cached 30 s there), for the overview. Absent: none shown. */
  checkBackends?: () => Promise<BackendStatus>;
}

type ConsoleEnv = {
  Variables: AppEnv['Variables'] & { session: ConsoleSession; sessionToken: string; person: Principal; form: Record<string, string | File | (string | File)[]> };
};

/** Live pages per replica, and how long one stream lasts before the browser reconnects: both bounded. */
const MAX_STREAMS = 200;
const MAX_STREAMS_PER_SESSION = 5;
const STREAM_MS = 10 * 60_000;

const ASSETS: Record<string, string> = { 'console.js': 'text/javascript; charset=utf-8', 'console.css': 'text/css; charset=utf-8', 'favicon.svg': 'image/svg+xml' };
const SubjectSchema = safeText(200);
const ReasonSchema = safeText(500);
/** A task's outcome as POST /v1/tasks/{id}/complete takes it. */
const OutcomeSchema = safeText(64);
/** Agent and role names as the config spells them; anything else names nothing. */
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const FilterText = safeText(200);

/** The leases page's filters from a query string: a value that could match nothing is dropped, never an error page. */
function leaseQueryOf(c: Context): LeaseQuery {
  return leaseQueryFrom((name) => c.req.query(name));
}
function leaseQueryFrom(read: (name: string) => unknown): LeaseQuery {
  const text = (name: string) => {
    const parsed = FilterText.safeParse(read(name));
    return parsed.success && parsed.data !== '' ? parsed.data : undefined;
  };
  const status = read('status');
  const role = text('role');
  const agent = text('agent');
  return {
    ...(typeof status === 'string' && (LEASE_STATUSES as readonly string[]).includes(status) ? { status: status as LeaseQuery['status'] } : {}),
    ...(text('task') ? { task: text('task') } : {}),
    ...(text('subject') ? { subject: text('subject') } : {}),
    ...(role && NAME_RE.test(role) ? { role } : {}),
    ...(agent && NAME_RE.test(agent) ? { agent } : {}),
  };
}

/** The audit page's filters: a value that could match nothing is dropped, never an error page. */
function auditQueryOf(c: Context): AuditQuery {
  const text = (name: string) => {
    const parsed = FilterText.safeParse(c.req.query(name));
    return parsed.success && parsed.data !== '' ? parsed.data : undefined;
  };
  const since = text('since');
  const at = since ? new Date(since) : undefined;
  return {
    ...(text('actor') ? { actor: text('actor') } : {}),
    ...(text('action') ? { action: text('action') } : {}),
    ...(text('target') ? { target: text('target') } : {}),
    // A year PostgreSQL's timestamps cannot hold (JavaScript's go to 275760) would be a database error, not a filter.
    ...(at && !Number.isNaN(at.getTime()) && at.getUTCFullYear() >= 1970 && at.getUTCFullYear() <= 9999 ? { since: at.toISOString() } : {}),
  };
}

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
  const { sessions, policy } = deps;
  const dev = deps.devLogin !== undefined;
  const oidc = deps.oidc;
  // Cookies without Secure only where the browser talks plain HTTP to this machine: dev mode, or a loopback http public_url (a local try-out).
  const publicUrl = new URL(deps.publicUrl);
  const plain = dev || (publicUrl.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(publicUrl.hostname));
  const pollMs = deps.pollMs ?? 1000;
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: readFileSync(new URL(`./assets/${name}`, import.meta.url), 'utf8') }]));
  let streams = 0;
  const perSession = new Map<string, number>();
  const chain = createChainCheck({ db: deps.db, clock: deps.clock });

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
      c.set('person', personOf(session));
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
    what: describePrincipal(c.get('person'), policy),
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
  /** An admin, or one of the agent's owners as its owner principals say: who may suspend and resume it. */
  const mayAct = async (c: Context<ConsoleEnv>, name: string) => c.get('person').admin || (await deps.registry.isOwner(name, c.get('person').identity));

  app.get('/assets/:file', (c) => {
    const asset = assets.get(c.req.param('file'));
    if (!asset) return c.text('no such asset', 404);
    return c.body(asset.body, 200, { 'Content-Type': asset.type });
  });

  // Admins land on the overview; everyone else (and anyone signed out) on the approvals, as before.
  app.get('/', async (c, next) => {
    const token = readSessionCookie(plain, c);
    const session = token && (dev || oidc) ? await sessions.find(token) : undefined;
    if (!session || !personOf(session).admin) return c.redirect('/console/approvals', 302);
    await next();
  });
  app.get('/', requireSession('page'), async (c) => {
    const now = deps.clock.now();
    const [overview, backends] = await Promise.all([readOverview(deps.db, now), deps.checkBackends?.() ?? Promise.resolve({})]);
    return c.html(<OverviewPage dev={dev} viewer={viewerOf(c)} overview={overview} backends={backends} now={now} />);
  });

  app.get('/login', async (c) => {
    if (deps.devLogin) return c.html(<DevLoginPage suggestions={deps.devLogin.suggestions} />);
    if (!oidc) return c.html(<NotConfiguredPage />, 501);
    try {
      const { token, url } = await oidc.login.begin();
      setLoginCookie(plain, c, token);
      return c.redirect(url, 302);
    } catch (err) {
      if (err instanceof ProviderUnavailable) return unavailable(c, err);
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
    if (!describePrincipal(person, policy)) {
      deps.log.info({ reqId: c.get('requestId'), actor: person.actor }, 'a console login matched no principal');
      return c.html(<NotPrincipalPage actor={person.actor} />, 403);
    }
    await endPrevious(c);
    const { token: session } = await sessions.create({ issuer: oidc.issuer, subject: found.subject, claims: found.claims }, { ...requestOf(c), via: 'oidc' });
    setSessionCookie(plain, c, session, deps.absoluteSeconds);
    return c.redirect('/console/approvals', 302);
  });

  app.post('/login', async (c) => {
    const devLogin = deps.devLogin;
    if (!devLogin) return c.html(<NotConfiguredPage />, 501);
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
    if (!describePrincipal(person, policy)) return again(`${devLogin.issuer}/${subject.data} is not an admin, an orchestrator or an approver of any role: the console has nothing for it.`);
    await endPrevious(c);
    const { token } = await sessions.create({ issuer: devLogin.issuer, subject: subject.data }, { ...requestOf(c), via: 'dev login' });
    setSessionCookie(plain, c, token, deps.absoluteSeconds);
    return c.redirect('/console/approvals', 303);
  });

  app.post('/logout', requireSession('action'), async (c) => {
    await sessions.end(c.get('session'), requestOf(c));
    clearSessionCookie(plain, c);
    // After an OIDC login the provider's own session lives on: /console/login would sign the person straight back in.
    if (!dev && oidc) return c.html(<SignedOutPage />);
    return c.redirect('/console/login', 303);
  });

  app.get('/approvals', requireSession('page'), async (c) => {
    const status = (STATUS_FILTERS as readonly string[]).includes(c.req.query('status') ?? '') ? (c.req.query('status') as StatusFilter) : 'pending';
    const cursor = c.req.query('cursor');
    const notice = c.req.query('notice');
    const page = await deps.approvals.list(c.get('person'), status === 'all' ? undefined : status, cursor && UUID_RE.test(cursor) ? cursor : undefined, 50);
    const tasks = await taskSummaries(deps.db, page.items.map((a) => a.taskId));
    const items = page.items.map((approval) => ({ approval, task: tasks.get(approval.taskId), role: policy.role(approval.role) }));
    return c.html(
      <ApprovalsPage
        dev={dev}
        viewer={viewerOf(c)}
        status={status}
        items={items}
        next={page.nextCursor}
        now={deps.clock.now()}
        notice={notice && notice in NOTICES ? (notice as Notice) : undefined}
      />,
    );
  });

  app.post('/approvals/:id/decide', requireSession('action'), async (c) => {
    const id = c.req.param('id');
    const form = c.get('form');
    const verdict = form.verdict === 'approve' || form.verdict === 'deny' ? form.verdict : undefined;
    const reason = ReasonSchema.safeParse(form.reason);
    const detail = form.back === 'detail' && UUID_RE.test(id);
    const back = (notice: Notice) => c.redirect(detail ? `/console/approvals/${id}?notice=${notice}` : `/console/approvals?notice=${notice}`, 303);
    // A path that cannot name a request is a 404 page; a well-formed id the person may not decide is a notice.
    if (!UUID_RE.test(id)) return notFound(c, 'No such request among those you may see.', '/console/approvals');
    if (!verdict || !reason.success) return back('reason_required');
    try {
      await deps.approvals.decide(c.get('person'), id, verdict, reason.data, requestOf(c));
    } catch (err) {
      if (err instanceof AppError && err.code in NOTICES) return back(err.code as Notice);
      throw err;
    }
    return back(verdict === 'approve' ? 'approved' : 'denied');
  });

  app.get('/approvals/events', requireSession('stream'), async (c) => {
    const sessionId = c.get('session').id;
    // One session cannot take every stream of the replica: a few tabs each.
    if (streams >= MAX_STREAMS || (perSession.get(sessionId) ?? 0) >= MAX_STREAMS_PER_SESSION) {
      return c.text('too many live pages; close some, or reload later', 503);
    }
    const person = c.get('person');
    const identity = person.identity;
    // Only the roles this person may decide: a change elsewhere is none of its business.
    const roles = person.admin ? undefined : identity ? policy.roleNames().filter((r) => policy.isApprover(r, identity)) : [];
    const token = c.get('sessionToken');
    streams += 1;
    perSession.set(sessionId, (perSession.get(sessionId) ?? 0) + 1);
    return streamSSE(
      c,
      async (stream) => {
        // Real time bounds the connection, whatever the broker's clock says.
        const started = performance.now();
        try {
          let last = await approvalsFingerprint(deps.db, roles);
          await stream.writeSSE({ event: 'ready', data: 'ok', retry: 3000 });
          for (let tick = 1; !stream.aborted && performance.now() - started < STREAM_MS; tick++) {
            await stream.sleep(pollMs);
            if (stream.aborted) break;
            // Logout on any replica, or a timeout, ends the stream within a tick.
            if (!(await sessions.find(token))) {
              await stream.writeSSE({ event: 'ended', data: 'session ended' });
              break;
            }
            const now = await approvalsFingerprint(deps.db, roles);
            if (now !== last) {
              last = now;
              await stream.writeSSE({ event: 'changed', data: 'approvals' });
            } else if (tick % 15 === 0) {
              await stream.write(': keep-alive\n\n');
            }
          }
        } finally {
          streams -= 1;
          const left = (perSession.get(sessionId) ?? 1) - 1;
          if (left > 0) perSession.set(sessionId, left);
          else perSession.delete(sessionId);
        }
      },
      async (err) => {
        // A database outage ends the stream; the browser reconnects after `retry`.
        deps.log.warn({ err: err.name }, 'a console live stream ended on an error');
      },
    );
  });

  // After /approvals/events, which this pattern would also match.
  app.get('/approvals/:id', requireSession('page'), async (c) => {
    const id = c.req.param('id');
    const missing = () => notFound(c, 'No such request among those you may see.', '/console/approvals');
    if (!UUID_RE.test(id)) return missing();
    let approval;
    try {
      approval = await deps.approvals.get(c.get('person'), id);
    } catch (err) {
      // One the person may not see reads exactly like one that does not exist.
      if (err instanceof AppError && err.code === 'approval_not_found') return missing();
      throw err;
    }
    const tasks = await taskSummaries(deps.db, [approval.taskId]);
    const notice = c.req.query('notice');
    return c.html(
      <ApprovalPage
        dev={dev}
        viewer={viewerOf(c)}
        item={{ approval, task: tasks.get(approval.taskId), role: policy.role(approval.role) }}
        now={deps.clock.now()}
        notice={notice && notice in NOTICES ? (notice as Notice) : undefined}
      />,
    );
  });

  // Who sees what, as the API decides it: GET /v1/agents is for admins, GET /v1/agents/{name} for admins and the
  // agent's owners. Here an owner's list holds the agents it owns.
  app.get('/agents', requireSession('page'), async (c) => {
    const now = deps.clock.now();
    const all = await deps.registry.list();
    const agents = c.get('person').admin ? all : (await Promise.all(all.map(async (a) => ((await mayAct(c, a.name)) ? [a] : [])))).flat();
    const [states, use, active] = await Promise.all([Promise.all(agents.map((a) => deps.registry.get(a.name))), agentsUse(deps.db, agents, now), activeLeaseCounts(deps.db)]);
    const rows = await Promise.all(
      agents.map(async (agent, i) => ({ agent, suspension: states[i]?.suspension, use: use.get(agent.name), active: active.get(agent.name) ?? 0, canAct: await mayAct(c, agent.name) })),
    );
    return c.html(<AgentsPage dev={dev} viewer={viewerOf(c)} rows={rows} now={now} />);
  });

  app.get('/agents/:name', requireSession('page'), async (c) => {
    const name = c.req.param('name');
    // Not an admin nor its owner: the same page whether the agent exists or not.
    const found = NAME_RE.test(name) && (await mayAct(c, name)) ? await deps.registry.get(name) : undefined;
    if (!found) return notFound(c, 'No such agent.', '/console/agents');
    const now = deps.clock.now();
    const review = await reviewAgent(deps.db, found.agent, now);
    const notice = c.req.query('notice');
    return c.html(
      <AgentPage
        dev={dev}
        viewer={viewerOf(c)}
        agent={found.agent}
        suspension={found.suspension}
        review={review}
        canAct={await mayAct(c, name)}
        now={now}
        notice={notice && notice in AGENT_NOTICES ? (notice as AgentNotice) : undefined}
      />,
    );
  });

  for (const action of ['suspend', 'resume'] as const) {
    app.post(`/agents/:name/${action}`, requireSession('action'), async (c) => {
      const name = c.req.param('name');
      const reason = ReasonSchema.safeParse(c.get('form').reason);
      if (!NAME_RE.test(name) || !(await deps.registry.get(name))) return notFound(c, 'No such agent.', '/console/agents');
      const back = (notice: AgentNotice) => c.redirect(`/console/agents/${name}?notice=${notice}`, 303);
      if (!(await mayAct(c, name))) return back('not_agent_owner');
      if (!reason.success) return back('reason_required');
      try {
        if (action === 'suspend') await deps.agentService.suspend(callerOf(c), name, reason.data);
        else await deps.agentService.resume(callerOf(c), name, reason.data);
      } catch (err) {
        if (err instanceof AppError && err.code === 'agent_not_found') return notFound(c, 'No such agent.', '/console/agents');
        if (err instanceof AppError && err.code in AGENT_NOTICES) return back(err.code as AgentNotice);
        throw err;
      }
      return back(action === 'suspend' ? 'suspended' : 'resumed');
    });
  }

  app.get('/leases', requireSession('page'), async (c) => {
    if (!c.get('person').admin) return adminsOnly(c);
    const query = leaseQueryOf(c);
    const cursor = c.req.query('cursor');
    const notice = c.req.query('notice');
    const page = await deps.leases.list(query, cursor && UUID_RE.test(cursor) ? cursor : undefined, 50);
    // Credentials the broker could not revoke may still work: they lead the page whatever the filter.
    const failed = (await deps.leases.list({ status: 'revoke_failed' }, undefined, 100)).items;
    return c.html(
      <LeasesPage
        dev={dev}
        viewer={viewerOf(c)}
        query={query}
        leases={page.items}
        failed={failed}
        next={page.nextCursor}
        now={deps.clock.now()}
        notice={notice && notice in LEASE_NOTICES ? (notice as LeaseNotice) : undefined}
        revoked={/^\d{1,9}$/.test(c.req.query('revoked') ?? '') ? Number(c.req.query('revoked')) : undefined}
      />,
    );
  });

  app.post('/leases/:id/revoke', requireSession('action'), async (c) => {
    if (!c.get('person').admin) return adminsOnly(c);
    const id = c.req.param('id');
    const reason = ReasonSchema.safeParse(c.get('form').reason);
    const back = (notice: LeaseNotice) => c.redirect(`/console/leases${leaseQueryString(leaseQueryOf(c), { notice })}`, 303);
    const missing = () => notFound(c, 'No such lease.', '/console/leases');
    if (!UUID_RE.test(id)) return missing();
    if (!reason.success) return back('reason_required');
    try {
      await deps.leases.adminRevoke(id, callerOf(c), reason.data);
    } catch (err) {
      if (err instanceof AppError && err.code === 'lease_not_found') return missing();
      throw err;
    }
    return back('revoking');
  });

  /** Bulk revocation's filter (subject, role, task, agent), from the confirmation's query or the confirmed form. */
  const bulkFilterOf = (read: (name: string) => unknown): BulkFilter => {
    const q = leaseQueryFrom(read);
    return Object.fromEntries(BULK_FIELDS.flatMap((k) => (q[k] !== undefined ? [[k, q[k]]] : [])));
  };
  const isEmpty = (f: BulkFilter) => BULK_FIELDS.every((k) => f[k] === undefined);

  // The confirmation: a read, so a GET; it counts what leases.bulkRevoke would move now.
  app.get('/leases/bulk-revoke', requireSession('page'), async (c) => {
    if (!c.get('person').admin) return adminsOnly(c);
    const filter = bulkFilterOf((name) => c.req.query(name));
    const empty = isEmpty(filter);
    const [count, sample] = empty ? [0, []] : await Promise.all([deps.leases.countActive(filter), deps.leases.list({ ...filter, status: 'active' }, undefined, 20).then((p) => p.items)]);
    return c.html(<BulkRevokePage dev={dev} viewer={viewerOf(c)} filter={filter} count={count} sample={sample} now={deps.clock.now()} />, empty ? 400 : 200);
  });

  app.post('/leases/bulk-revoke', requireSession('action'), async (c) => {
    if (!c.get('person').admin) return adminsOnly(c);
    const form = c.get('form');
    const filter = bulkFilterOf((name) => form[name]);
    const reason = ReasonSchema.safeParse(form.reason);
    // Never everything at once: an empty filter is refused here rather than revoking every lease.
    if (isEmpty(filter)) return c.redirect(`/console/leases?notice=bulk_filter_required`, 303);
    if (!reason.success) return c.redirect(`/console/leases/bulk-revoke${leaseQueryString(filter)}`, 303);
    const revoked = await deps.leases.bulkRevoke(filter, callerOf(c), reason.data);
    return c.redirect(`/console/leases${leaseQueryString({ ...filter, status: 'revoking' }, { notice: 'bulk_revoking', revoked: String(revoked) })}`, 303);
  });

  // Who sees what, as the API decides it: GET /v1/tasks/{id} is for orchestrators and admins, and shows an
  // orchestrator the tasks it opened and those whose labels match its scopes (tasks.get with the caller).
  const orchestratorsOnly = (c: Context<ConsoleEnv>) =>
    c.html(
      <MessagePage title="Orchestrators and admins only" dev={dev} viewer={viewerOf(c)}>
        <p class="error">The tasks pages are for orchestrators and admins.</p>
      </MessagePage>,
      403,
    );
  const mayTask = (c: Context<ConsoleEnv>) => c.get('person').admin || c.get('person').orchestrator;

  app.get('/tasks', requireSession('page'), async (c) => {
    if (!mayTask(c)) return orchestratorsOnly(c);
    const filter = (TASK_FILTERS as readonly string[]).includes(c.req.query('status') ?? '') ? (c.req.query('status') as TaskFilter) : 'all';
    const cursor = TaskIdSchema.safeParse(c.req.query('cursor'));
    const page = await deps.tasks.list(callerOf(c), filter === 'all' ? undefined : filter, cursor.success ? cursor.data : undefined, 50);
    const counts = await leaseCountsByTask(deps.db, page.items.map((t) => t.id));
    const rows = page.items.map((task) => ({ task, leases: counts.get(task.id) ?? { active: 0, total: 0 } }));
    return c.html(<TasksPage dev={dev} viewer={viewerOf(c)} filter={filter} rows={rows} next={page.nextCursor} now={deps.clock.now()} />);
  });

  /** The task as the caller may see it, or undefined: another's task reads exactly like a missing one. */
  const visibleTask = async (c: Context<ConsoleEnv>, id: string) => {
    if (!TaskIdSchema.safeParse(id).success) return undefined;
    try {
      return await deps.tasks.get(callerOf(c), id);
    } catch (err) {
      if (err instanceof AppError && err.code === 'task_not_found') return undefined;
      throw err;
    }
  };

  app.get('/tasks/:id', requireSession('page'), async (c) => {
    if (!mayTask(c)) return orchestratorsOnly(c);
    const found = await visibleTask(c, c.req.param('id'));
    if (!found) return notFound(c, 'No such task among those you may see.', '/console/tasks');
    const notice = c.req.query('notice');
    return c.html(
      <TaskPage
        dev={dev}
        viewer={viewerOf(c)}
        task={found.task}
        leases={found.leases}
        now={deps.clock.now()}
        notice={notice && notice in TASK_NOTICES ? (notice as TaskNotice) : undefined}
      />,
    );
  });

  app.post('/tasks/:id/complete', requireSession('action'), async (c) => {
    if (!mayTask(c)) return orchestratorsOnly(c);
    const id = c.req.param('id');
    const missing = () => notFound(c, 'No such task among those you may see.', '/console/tasks');
    if (!TaskIdSchema.safeParse(id).success) return missing();
    const outcome = OutcomeSchema.safeParse(c.get('form').outcome);
    const back = (notice: TaskNotice) => c.redirect(`/console/tasks/${encodeURIComponent(id)}?notice=${notice}`, 303);
    if (!outcome.success) return (await visibleTask(c, id)) ? back('outcome_required') : missing();
    try {
      await deps.tasks.complete(callerOf(c), id, outcome.data);
    } catch (err) {
      if (err instanceof AppError && err.code === 'task_not_found') return missing();
      throw err;
    }
    return back('completed');
  });

  app.get('/audit', requireSession('page'), async (c) => {
    if (!c.get('person').admin) return adminsOnly(c);
    const query = auditQueryOf(c);
    const after = c.req.query('after');
    const seq = after && /^[0-9]{1,15}$/.test(after) ? Number(after) : undefined;
    const page = await listAudit(deps.db, { ...query, since: query.since ? new Date(query.since) : undefined }, seq, 50);
    return c.html(<AuditPage dev={dev} viewer={viewerOf(c)} query={query} events={page.items} next={page.nextCursor} head={await chain.head()} check={chain.last()} now={deps.clock.now()} />);
  });

  // Walks the whole chain, on demand only (chain-check.ts): the result shows on the audit page.
  app.post('/audit/verify', requireSession('action'), async (c) => {
    if (!c.get('person').admin) return adminsOnly(c);
    await chain.run();
    return c.redirect('/console/audit#chain', 303);
  });

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
