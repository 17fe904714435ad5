// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { LEASE_STATUSES } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { UUID_RE } from '../../ids.js';
import { queryString } from '../pages/layout.js';
import { filterText, NAME_RE, noticeOf, ReasonSchema, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { BULK_FIELDS, BULK_SCHEMAS, BulkRevokePage, type BulkField, LEASE_NOTICES, LeasesPage, type BulkFilter, type LeaseNotice, type LeaseQuery } from '../pages/leases.js';

/** The leases page's filters from a query string or a form: a value that could match nothing is dropped, never an error page. */
function leaseQueryFrom(read: (name: string) => unknown): LeaseQuery {
  const text = (name: string) => filterText(read, name);
  const status = read('status');
  const role = text('role');
  const backend = text('backend');
  const agent = text('agent');
  return {
    ...(typeof status === 'string' && (LEASE_STATUSES as readonly string[]).includes(status) ? { status: status as LeaseQuery['status'] } : {}),
    ...(text('task') ? { task: text('task') } : {}),
    ...(text('subject') ? { subject: text('subject') } : {}),
    ...(role && NAME_RE.test(role) ? { role } : {}),
    ...(backend && NAME_RE.test(backend) ? { backend } : {}),
    ...(agent && NAME_RE.test(agent) ? { agent } : {}),
  };
}

/** Leases for admins: filters, revoke one, bulk revoke behind a counted confirmation, as the lease service does it. */
export function leaseRoutes(app: ConsoleApp, kit: ConsoleKit) {
  app.get('/leases', kit.requireSession('page'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const query = leaseQueryFrom((name) => c.req.query(name));
    const cursor = c.req.query('cursor');
    const page = await kit.deps.leases.list(query, cursor && UUID_RE.test(cursor) ? cursor : undefined, 50);
    // Credentials the broker could not revoke may still work: they lead the page whatever the filter.
    const failed = (await kit.deps.leases.list({ status: 'revoke_failed' }, undefined, 100)).items;
    return c.html(
      <LeasesPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        query={query}
        leases={page.items}
        failed={failed}
        next={page.nextCursor}
        now={kit.deps.clock.now()}
        notice={noticeOf(c, LEASE_NOTICES)}
        revoked={/^\d{1,9}$/.test(c.req.query('revoked') ?? '') ? Number(c.req.query('revoked')) : undefined}
      />,
    );
  });

  app.post('/leases/:id/revoke', kit.requireSession('action'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const id = c.req.param('id');
    const reason = ReasonSchema.safeParse(c.get('form').reason);
    const back = (notice: LeaseNotice) => c.redirect(`/console/leases${queryString(leaseQueryFrom((name) => c.req.query(name)), { notice })}`, 303);
    const missing = () => kit.notFound(c, 'No such lease.', '/console/leases');
    if (!UUID_RE.test(id)) return missing();
    if (!reason.success) return back('reason_required');
    try {
      await kit.deps.leases.adminRevoke(id, kit.callerOf(c), reason.data);
    } catch (err) {
      if (err instanceof AppError && err.code === 'lease_not_found') return missing();
      throw err;
    }
    return back('revoking');
  });

  /**
   * Bulk revocation's filter (subject, role, task, agent), from the confirmation's query or the confirmed form,
   * read with the REST route's schemas. Unlike the list's filters, a value that cannot be read is never dropped:
   * dropping it would widen a destructive action (`subject=alice&role=Bad` is not "every lease of alice").
   */
  const bulkFilterOf = (read: (name: string) => unknown): { filter: BulkFilter; invalid: BulkField[] } => {
    const filter: BulkFilter = {};
    const invalid: BulkField[] = [];
    for (const field of BULK_FIELDS) {
      const raw = read(field);
      if (raw === undefined || raw === '') continue;
      const parsed = BULK_SCHEMAS[field].safeParse(raw);
      if (parsed.success) filter[field] = parsed.data;
      else invalid.push(field);
    }
    return { filter, invalid };
  };
  const isEmpty = (f: BulkFilter) => BULK_FIELDS.every((k) => f[k] === undefined);

  // The confirmation: a read, so a GET; it counts what leases.bulkRevoke would move now.
  app.get('/leases/bulk-revoke', kit.requireSession('page'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const { filter, invalid } = bulkFilterOf((name) => c.req.query(name));
    const refused = isEmpty(filter) || invalid.length > 0;
    const [count, sample] = refused ? [0, []] : await Promise.all([kit.deps.leases.countActive(filter), kit.deps.leases.list({ ...filter, status: 'active' }, undefined, 20).then((p) => p.items)]);
    return c.html(<BulkRevokePage dev={kit.dev} viewer={kit.viewerOf(c)} filter={filter} invalid={invalid} count={count} sample={sample} now={kit.deps.clock.now()} />, refused ? 400 : 200);
  });

  app.post('/leases/bulk-revoke', kit.requireSession('action'), async (c) => {
    if (!c.get('person').admin) return kit.adminsOnly(c);
    const form = c.get('form');
    const { filter, invalid } = bulkFilterOf((name) => form[name]);
    const reason = ReasonSchema.safeParse(form.reason);
    // Never everything at once, nor more than was asked: an empty filter or one with a value that cannot be read revokes nothing.
    if (invalid.length > 0) return c.redirect(`/console/leases?notice=bulk_filter_invalid`, 303);
    if (isEmpty(filter)) return c.redirect(`/console/leases?notice=bulk_filter_required`, 303);
    if (!reason.success) return c.redirect(`/console/leases/bulk-revoke${queryString(filter)}`, 303);
    const revoked = await kit.deps.leases.bulkRevoke(filter, kit.callerOf(c), reason.data);
    return c.redirect(`/console/leases${queryString({ ...filter, status: 'revoking' }, { notice: 'bulk_revoking', revoked: String(revoked) })}`, 303);
  });
}
