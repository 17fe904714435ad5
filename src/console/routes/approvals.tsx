// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { AppError } from '../../errors.js';
import { requestOf } from '../../http/env.js';
import { UUID_RE } from '../../ids.js';
import { noticeOf, ReasonSchema, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { approvalsFingerprint } from '../live.js';
import { ApprovalPage, ApprovalsPage, NOTICES, STATUS_FILTERS, type Notice, type StatusFilter } from '../pages/approvals.js';
import { taskSummaries } from '../queries.js';

/** The approval queue, one request's page, the decision, and the queue's live stream: the approval service decides. */
export function approvalRoutes(app: ConsoleApp, kit: ConsoleKit) {
  const { policy } = kit.deps;
  app.get('/approvals', kit.requireSession('page'), async (c) => {
    const status = (STATUS_FILTERS as readonly string[]).includes(c.req.query('status') ?? '') ? (c.req.query('status') as StatusFilter) : 'pending';
    const cursor = c.req.query('cursor');
    const page = await kit.deps.approvals.list(c.get('person'), status === 'all' ? undefined : status, cursor && UUID_RE.test(cursor) ? cursor : undefined, 50);
    const tasks = await taskSummaries(kit.deps.db, page.items.map((a) => a.taskId));
    const items = page.items.map((approval) => ({ approval, task: tasks.get(approval.taskId), role: policy.role(approval.role) }));
    return c.html(
      <ApprovalsPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        status={status}
        items={items}
        next={page.nextCursor}
        now={kit.deps.clock.now()}
        notice={noticeOf(c, NOTICES)}
      />,
    );
  });

  app.post('/approvals/:id/decide', kit.requireSession('action'), async (c) => {
    const id = c.req.param('id');
    const form = c.get('form');
    const verdict = form.verdict === 'approve' || form.verdict === 'deny' ? form.verdict : undefined;
    const reason = ReasonSchema.safeParse(form.reason);
    const detail = form.back === 'detail' && UUID_RE.test(id);
    const back = (notice: Notice) => c.redirect(detail ? `/console/approvals/${id}?notice=${notice}` : `/console/approvals?notice=${notice}`, 303);
    // A path that cannot name a request is a 404 page; a well-formed id the person may not decide is a notice.
    if (!UUID_RE.test(id)) return kit.notFound(c, 'No such request among those you may see.', '/console/approvals');
    if (!verdict || !reason.success) return back('reason_required');
    try {
      await kit.deps.approvals.decide(c.get('person'), id, verdict, reason.data, requestOf(c));
    } catch (err) {
      if (err instanceof AppError && err.code in NOTICES) return back(err.code as Notice);
      throw err;
    }
    return back(verdict === 'approve' ? 'approved' : 'denied');
  });

  app.get('/approvals/events', kit.requireSession('stream'), (c) => {
    const person = c.get('person');
    // Only the roles this person may decide: a change elsewhere is none of its business.
    const roles = kit.deps.approvals.approvableRoles(person);
    return kit.live(c, 'approvals', () => approvalsFingerprint(kit.deps.db, roles));
  });

  // After /approvals/events, which this pattern would also match.
  app.get('/approvals/:id', kit.requireSession('page'), async (c) => {
    const id = c.req.param('id');
    const missing = () => kit.notFound(c, 'No such request among those you may see.', '/console/approvals');
    if (!UUID_RE.test(id)) return missing();
    let approval;
    try {
      approval = await kit.deps.approvals.get(c.get('person'), id);
    } catch (err) {
      // One the person may not see reads exactly like one that does not exist.
      if (err instanceof AppError && err.code === 'approval_not_found') return missing();
      throw err;
    }
    const tasks = await taskSummaries(kit.deps.db, [approval.taskId]);
    return c.html(
      <ApprovalPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        item={{ approval, task: tasks.get(approval.taskId), role: policy.role(approval.role) }}
        now={kit.deps.clock.now()}
        notice={noticeOf(c, NOTICES)}
      />,
    );
  });
}
