// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Context, Hono, MiddlewareHandler } from 'hono';
import type { AgentRegistry } from '../agents/registry.js';
import type { AgentService } from '../agents/service.js';
import type { ApprovalService } from '../approvals/service.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import type { ConsoleSession } from '../db/schema.js';
import type { AppEnv, callerOf as apiCallerOf } from '../http/env.js';
import { safeText } from '../http/schemas.js';
import { MAX_SUBJECT_LENGTH } from '../identity/identity-text.js';
import type { Authenticator, Principal } from '../identity/principals.js';
import type { LeaseService } from '../leases/service.js';
import type { Logger } from '../log.js';
import type { Policy } from '../policy/decide.js';
import type { TaskService } from '../tasks/service.js';
import type { OidcLogin } from './oidc.js';
import type { BackendStatus } from './pages/overview.js';
import type { Viewer } from './pages/layout.js';
import type { LiveStreams } from './live.js';
import type { SessionStore } from './sessions.js';

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
  /** Sign-in starts per client address (login-limit.ts); absent: unlimited. */
  loginLimit?: { per_minute: number; burst: number; trusted_proxies: string[] };
  /** Dev mode's login: signs a dev-issuer token for a subject, which the authenticator then reads as any API token. Absent: no login is configured. */
  devLogin?: { issuer: string; sign(subject: string): Promise<string>; suggestions: { subject: string; what: string }[] };
  /** OpenID Connect login for people (console.oidc): `issuer` is the name of the entry of `issuers` their identities belong to. */
  oidc?: { issuer: string; login: OidcLogin };
  /** How often a live page's stream looks for changes. */
  pollMs?: number;
  /** The broker's backend permission checks (cached 30 s there), for the overview. Absent: none shown. */
  checkBackends?: () => Promise<BackendStatus>;
  /** Wakes this replica's notifier after "Retry now" (without it, the row is sent on the notifier's next pass). */
  nudgeNotifier?: () => void;
}

export type ConsoleEnv = {
  Variables: AppEnv['Variables'] & { session: ConsoleSession; sessionToken: string; person: Principal; form: Record<string, string | File | (string | File)[]>; owns?: string[] };
};
export type ConsoleApp = Hono<ConsoleEnv>;
export type ConsoleContext = Context<ConsoleEnv>;

/**
 * What every group of console routes shares, built once by createConsole: the
 * session guard and the answers every page gives alike. Route modules
 * (routes/*.tsx) receive it with the app and add their routes.
 */
export interface ConsoleKit {
  deps: ConsoleDeps;
  dev: boolean;
  /** A page and an action need a live session; an action also this origin and the CSRF token; a stream does not extend an idle session. */
  requireSession(kind: 'page' | 'action' | 'stream'): MiddlewareHandler<ConsoleEnv>;
  /** The signed-in person as the layout shows it. */
  viewerOf(c: ConsoleContext): Viewer;
  /** The caller as the services take it, as the API's callerOf builds it. */
  callerOf(c: ConsoleContext): ReturnType<typeof apiCallerOf>;
  /** The principal a session's identity is, read afresh by the authenticator. */
  personOf(session: ConsoleSession): Principal;
  notFound(c: ConsoleContext, what: string, back: string): Response | Promise<Response>;
  adminsOnly(c: ConsoleContext): Response | Promise<Response>;
  refused(c: Context, why: string): Response | Promise<Response>;
  /** Serves a live page's event stream over a fingerprint of what it shows (live.ts). */
  live: LiveStreams;
}

export const ReasonSchema = safeText(500);
/** Long enough for any actor (`issuer/subject`: a 64-character issuer name and a subject at its longest) and any id. */
export const FilterText = safeText(64 + MAX_SUBJECT_LENGTH);
/** Agent and role names as the config spells them; anything else names nothing. */
export const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** A filter's text value, or undefined when it is empty or could match nothing: never an error page. */
export function filterText(read: (name: string) => unknown, name: string): string | undefined {
  const parsed = FilterText.safeParse(read(name));
  return parsed.success && parsed.data !== '' ? parsed.data : undefined;
}

/** A notice named in a query string, when the page knows it; anything else shows none. */
export function noticeOf<N extends string>(c: Context, known: Record<N, unknown>): N | undefined {
  const notice = c.req.query('notice');
  return notice && notice in known ? (notice as N) : undefined;
}
