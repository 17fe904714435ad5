// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Approval } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { requestOf } from '../../http/env.js';
import { UUID_RE } from '../../ids.js';
import { noticeOf, ReasonSchema, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { approvalsFingerprint } from '../live.js';
import { ApprovalPage, ApprovalsPage, NOTICES, STATUS_FILTERS, type ApprovalItem, type Notice, type StatusFilter } from '../pages/approvals.js';
import { activeLeasesByTask, taskSummaries } from '../queries.js';

/** The approval queue, one request's page, the decision, and the queue's live stream: the approval service decides. */
export function approvalRoutes(app: ConsoleApp, kit: ConsoleKit) {
  const { policy, registry, db } = kit.deps;

  /** Everything one screen needs to decide a request: the task, what it already holds, the agent asking, the role. */
  async function itemsOf(found: Approval[]): Promise<ApprovalItem[]> {
    const taskIds = found.map((a) => a.taskId);
    const requesters = [...new Map(found.map((a) => [`${a.issuer}\n${a.subject}`, a])).values()];
    const [tasks, held, agents] = await Promise.all([
      taskSummaries(db, taskIds),
      activeLeasesByTask(db, taskIds),
      Promise.all(requesters.map(async (a) => [`${a.issuer}\n${a.subject}`, (await registry.candidates(a.issuer, a.subject)).agents] as const)).then((e) => new Map(e)),
    ]);
    return found.map((approval) => ({
      approval,
      task: tasks.get(approval.taskId),
      held: held.get(approval.taskId) ?? [],
      agents: agents.get(`${approval.issuer}\n${approval.subject}`) ?? [],
      role: policy.role(approval.role),
    }));
  }
  app.get('/approvals', kit.requireSession('page'), async (c) => {
    const status = (STATUS_FILTERS as readonly string[]).includes(c.req.query('status') ?? '') ? (c.req.query('status') as StatusFilter) : 'pending';
    const cursor = c.req.query('cursor');
    const page = await kit.deps.approvals.list(c.get('person'), status === 'all' ? undefined : status, cursor && UUID_RE.test(cursor) ? cursor : undefined, 50);
    const items = await itemsOf(page.items);
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
    const [item] = await itemsOf([approval]);
    return c.html(
      <ApprovalPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        item={item!}
        now={kit.deps.clock.now()}
        notice={noticeOf(c, NOTICES)}
      />,
    );
  });
}
