// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { ConsoleSession } from '../../db/schema.js';
import { Time } from './approvals.js';
import { Layout, type Viewer } from './layout.js';

export const SESSION_NOTICES = {
  revoked: { kind: 'ok', text: 'Session revoked: it opens nothing on any replica, and its live pages end within a second.' },
  revoked_actor: { kind: 'ok', text: 'Sessions revoked: they open nothing on any replica.' },
  no_sessions: { kind: 'error', text: 'That person has no live session: nothing was revoked.' },
  reason_required: { kind: 'error', text: 'Give a reason (up to 500 characters, no control characters) for the revocation.' },
  actor_required: { kind: 'error', text: 'Name the person (issuer/subject, as the Actor column shows it) whose sessions to revoke.' },
} as const;
export type SessionNotice = keyof typeof SESSION_NOTICES;

/** How many characters of a session's id the page shows: enough to tell sessions apart, the full id only in the form's URL. */
export const SHOWN_ID = 12;

export interface SessionRow {
  session: ConsoleSession;
  /** How the person signed in, when the row tells: the dev login or OpenID Connect. */
  via?: string;
  /** The viewer's own session. */
  own: boolean;
}

export function SessionsPage(props: { dev: boolean; viewer: Viewer; rows: SessionRow[]; limit: number; now: Date; notice?: SessionNotice; revoked?: number }) {
  const notice = props.notice ? SESSION_NOTICES[props.notice] : undefined;
  return (
    <Layout title="Sessions" dev={props.dev} viewer={props.viewer} active="sessions">
      <h1>Sessions</h1>
      {notice ? (
        <p class={notice.kind === 'ok' ? 'notice' : 'error'} role={notice.kind === 'ok' ? 'status' : 'alert'}>
          {notice.text}
          {props.notice === 'revoked_actor' && props.revoked !== undefined ? ` ${props.revoked} revoked.` : null}
        </p>
      ) : null}
      <p class="muted">
        Live console sessions, newest first{props.rows.length === props.limit ? ` (the newest ${props.limit})` : ''}. Revoking one ends it on every
        replica at once; the person signs in again to come back.
      </p>
      {props.rows.length === 0 ? (
        <p class="empty">No live sessions.</p>
      ) : (
        <table class="grid sessions">
          <thead>
            <tr>
              <th>Session</th>
              <th>Actor</th>
              <th>Signed in with</th>
              <th>Created</th>
              <th>Last seen</th>
              <th>Expires</th>
              <th>Revoke</th>
            </tr>
          </thead>
          <tbody>
            {props.rows.map(({ session: s, via, own }) => (
              <tr id={`session-${s.id.slice(0, SHOWN_ID)}`} class={own ? 'own' : undefined}>
                <td>
                  <code>{s.id.slice(0, SHOWN_ID)}</code>
                  {own ? <span class="badge own"> yours</span> : null}
                </td>
                <td>{s.actor}</td>
                <td>{via ?? <span class="muted">unknown</span>}</td>
                <td>
                  <Time at={s.createdAt} now={props.now} />
                </td>
                <td>
                  <Time at={s.lastSeenAt} now={props.now} />
                </td>
                <td>
                  <Time at={s.expiresAt} now={props.now} />
                </td>
                <td>
                  {/* One form, two actions: this session, or every session of its person (the button's formaction). */}
                  <form method="post" action={`/console/sessions/${s.id}/revoke`} class="decide">
                    <input type="hidden" name="csrf" value={props.viewer.csrf} />
                    <input type="hidden" name="actor" value={s.actor} />
                    <input name="reason" required maxlength={500} placeholder="Reason" aria-label="Reason" autocomplete="off" />
                    <button type="submit" class="deny">
                      {own ? 'Revoke (signs you out)' : 'Revoke'}
                    </button>{' '}
                    <button type="submit" class="deny" formaction="/console/sessions/revoke-actor">
                      All of {s.actor}
                    </button>
                  </form>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Every session of one person</h2>
      <form method="post" action="/console/sessions/revoke-actor" class="filter">
        <input type="hidden" name="csrf" value={props.viewer.csrf} />
        <label>
          Actor <input name="actor" required maxlength={1088} placeholder="corp/00u1abcd" autocomplete="off" />
        </label>{' '}
        <label>
          Reason <input name="reason" required maxlength={500} autocomplete="off" />
        </label>{' '}
        <button type="submit" class="deny">
          Revoke all
        </button>
      </form>
    </Layout>
  );
}
