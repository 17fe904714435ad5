// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { ConsoleSession } from '../../db/schema.js';
import { requestOf } from '../../http/env.js';
import { DEV_LOGIN_ISSUER } from '../dev-login.js';
import { FilterText, noticeOf, ReasonSchema, type ConsoleApp, type ConsoleContext, type ConsoleKit } from '../kit.js';
import { SESSION_NOTICES, SessionsPage, type SessionNotice } from '../pages/sessions.js';

/** The page lists at most this many live sessions (newest first). */
const LIMIT = 200;

/** How a session was signed in, as its row tells: an OIDC login keeps the ID token's claims (with `sub`), the dev login none. */
function viaOf(session: ConsoleSession): string | undefined {
  if (typeof session.claims.sub === 'string') return 'OpenID Connect';
  if (session.issuer === DEV_LOGIN_ISSUER) return 'dev login';
  return undefined;
}

/**
 * Admins end console sessions: one, or every session of one person. The
 * session store sets revoked_at and audits it in one transaction, so every
 * replica refuses the cookie at its next request. The id in the form's URL is
 * the row's id, SHA-256 of the cookie's token: it names a session but opens
 * none (find() hashes what the cookie carries), and the page shows a prefix.
 * An admin who revokes its own session is signed out as by logout.
 */
export function sessionRoutes(app: ConsoleApp, kit: ConsoleKit, signedOut: (c: ConsoleContext) => Response | Promise<Response>) {
  app.get('/sessions', kit.requireSession('page'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const own = c.get('session').id;
    const rows = (await kit.deps.sessions.list(LIMIT)).map((session) => ({ session, via: viaOf(session), own: session.id === own }));
    const revoked = c.req.query('revoked');
    return c.html(
      <SessionsPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        rows={rows}
        limit={LIMIT}
        now={kit.deps.clock.now()}
        notice={noticeOf(c, SESSION_NOTICES)}
        revoked={revoked && /^\d{1,9}$/.test(revoked) ? Number(revoked) : undefined}
      />,
    );
  });

  const back = (c: ConsoleContext, notice: SessionNotice, extra = '') => c.redirect(`/console/sessions?notice=${notice}${extra}`, 303);

  app.post('/sessions/:id/revoke', kit.requireSession('action'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const id = c.req.param('id');
    const missing = () => kit.notFound(c, 'No such live session (it may have ended already).', '/console/sessions');
    if (!/^[0-9a-f]{64}$/.test(id)) return missing();
    const reason = ReasonSchema.safeParse(c.get('form').reason);
    if (!reason.success) return back(c, 'reason_required');
    const gone = await kit.deps.sessions.revoke(id, c.get('person').actor, reason.data, requestOf(c));
    if (!gone) return missing();
    if (gone.id === c.get('session').id) return signedOut(c);
    return back(c, 'revoked');
  });

  app.post('/sessions/revoke-actor', kit.requireSession('action'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const form = c.get('form');
    const actor = FilterText.safeParse(typeof form.actor === 'string' ? form.actor.trim() : form.actor);
    if (!actor.success || actor.data === '') return back(c, 'actor_required');
    const reason = ReasonSchema.safeParse(form.reason);
    if (!reason.success) return back(c, 'reason_required');
    const gone = await kit.deps.sessions.revokeActor(actor.data, c.get('person').actor, reason.data, requestOf(c));
    if (gone.length === 0) return back(c, 'no_sessions');
    if (gone.some((s) => s.id === c.get('session').id)) return signedOut(c);
    return back(c, 'revoked_actor', `&revoked=${gone.length}`);
  });
}
