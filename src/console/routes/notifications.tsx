// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { UUID_RE } from '../../ids.js';
import { listOutbox, retryNow, summarizeOutbox } from '../../notify/outbox.js';
import { noticeOf, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { NOTIFICATION_NOTICES, NotificationsPage } from '../pages/notifications.js';

/** Rows of each list the page shows. */
const LIMIT = 50;

/** The notification outbox for admins (src/notify/), and "Retry now" for a failing delivery. */
export function notificationRoutes(app: ConsoleApp, kit: ConsoleKit) {
  app.get('/notifications', kit.requireSession('page'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const [summary, lists] = await Promise.all([summarizeOutbox(kit.deps.db), listOutbox(kit.deps.db, LIMIT)]);
    return c.html(
      <NotificationsPage dev={kit.dev} viewer={kit.viewerOf(c)} summary={summary} {...lists} limit={LIMIT} now={kit.deps.clock.now()} notice={noticeOf(c, NOTIFICATION_NOTICES)} />,
    );
  });

  app.post('/notifications/:id/retry', kit.requireSession('action'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const id = c.req.param('id');
    const missing = () => kit.notFound(c, 'No such notification.', '/console/notifications');
    if (!UUID_RE.test(id)) return missing();
    const outcome = await retryNow(kit.deps.db, id, kit.callerOf(c), kit.deps.clock.now());
    if (outcome === 'not_found') return missing();
    if (outcome === 'scheduled') kit.deps.nudgeNotifier?.();
    return c.redirect(`/console/notifications?notice=${outcome === 'scheduled' ? 'retry_scheduled' : 'not_failing'}`, 303);
  });
}
