// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { listAudit } from '../../audit/query.js';
import { createChainCheck } from '../chain-check.js';
import { filterText, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { AuditPage, type AuditQuery } from '../pages/audit.js';

/** The audit page's filters: a value that could match nothing is dropped, never an error page. */
function auditQueryOf(read: (name: string) => unknown): AuditQuery {
  const text = (name: string) => filterText(read, name);
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

/** The audit trail for admins, and the chain's verification on demand (chain-check.ts). */
export function auditRoutes(app: ConsoleApp, kit: ConsoleKit) {
  const chain = createChainCheck({ db: kit.deps.db, clock: kit.deps.clock });
  app.get('/audit', kit.requireSession('page'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const query = auditQueryOf((name) => c.req.query(name));
    const after = c.req.query('after');
    const seq = after && /^[0-9]{1,15}$/.test(after) ? Number(after) : undefined;
    const page = await listAudit(kit.deps.db, { ...query, since: query.since ? new Date(query.since) : undefined }, seq, 50);
    return c.html(<AuditPage dev={kit.dev} viewer={kit.viewerOf(c)} query={query} events={page.items} next={page.nextCursor} head={await chain.head()} check={chain.last()} now={kit.deps.clock.now()} />);
  });

  // Walks the whole chain, on demand only (chain-check.ts): the result shows on the audit page.
  app.post('/audit/verify', kit.requireSession('action'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    await chain.run();
    return c.redirect('/console/audit#chain', 303);
  });
}
