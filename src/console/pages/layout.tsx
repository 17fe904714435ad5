// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Child } from 'hono/jsx';

export interface Viewer {
  actor: string;
  /** What the person is, as the principals say: admin, orchestrator, approver of ... */
  what: string;
  csrf: string;
  /** An admin: the Leases page and every agent's switches are its. */
  admin: boolean;
  /** An orchestrator: the Tasks page is its (and admins'). */
  orchestrator?: boolean;
}

/** A page's filters (and a cursor) as a query string, empty values left out: for links, forms' returns and redirects. */
export function queryString(q: object, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams(Object.entries({ ...q, ...extra }).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1] !== ''));
  const s = params.toString();
  return s ? `?${s}` : '';
}

export type Section = 'overview' | 'approvals' | 'agents' | 'leases' | 'tasks' | 'audit' | 'notifications' | 'sessions';

/** Every console page: the dev-mode banner, the navigation, who is signed in, and the logout form. */
export function Layout(props: { title: string; dev: boolean; viewer?: Viewer; active?: Section; children: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{props.title} · tasklease console</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <link rel="icon" href="/console/assets/favicon.svg" />
        <script src="/console/assets/console.js" defer></script>
      </head>
      <body>
        {props.dev ? (
          <div class="dev-banner" role="note">
            DEV MODE: anyone who can reach this port can sign in as anyone. Never expose it.
          </div>
        ) : null}
        <header>
          <span class="brand">tasklease</span>
          {props.viewer ? (
            <nav>
              {props.viewer.admin ? (
                <a href="/console" class={props.active === 'overview' ? 'active' : undefined}>
                  Overview
                </a>
              ) : null}
              <a href="/console/approvals" class={props.active === 'approvals' ? 'active' : undefined}>
                Approvals
              </a>
              <a href="/console/agents" class={props.active === 'agents' ? 'active' : undefined}>
                Agents
              </a>
              {props.viewer.admin || props.viewer.orchestrator ? (
                <a href="/console/tasks" class={props.active === 'tasks' ? 'active' : undefined}>
                  Tasks
                </a>
              ) : null}
              {props.viewer.admin ? (
                <a href="/console/leases" class={props.active === 'leases' ? 'active' : undefined}>
                  Leases
                </a>
              ) : null}
              {props.viewer.admin ? (
                <a href="/console/audit" class={props.active === 'audit' ? 'active' : undefined}>
                  Audit
                </a>
              ) : null}
              {props.viewer.admin ? (
                <a href="/console/notifications" class={props.active === 'notifications' ? 'active' : undefined}>
                  Notifications
                </a>
              ) : null}
              {props.viewer.admin ? (
                <a href="/console/sessions" class={props.active === 'sessions' ? 'active' : undefined}>
                  Sessions
                </a>
              ) : null}
            </nav>
          ) : null}
          {props.viewer ? (
            <form method="post" action="/console/logout" class="whoami">
              <span title={props.viewer.what}>{props.viewer.actor}</span>
              <input type="hidden" name="csrf" value={props.viewer.csrf} />
              <button type="submit">Log out</button>
            </form>
          ) : null}
        </header>
        <main>{props.children}</main>
      </body>
    </html>
  );
}

/** A short page with a heading and a message: refusals, the not-configured page. */
export function MessagePage(props: { title: string; dev: boolean; viewer?: Viewer; children: Child }) {
  return (
    <Layout title={props.title} dev={props.dev} viewer={props.viewer}>
      <h1>{props.title}</h1>
      {props.children}
    </Layout>
  );
}
