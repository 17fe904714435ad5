// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { AppError } from '../../errors.js';
import { safeText, TaskIdSchema } from '../../http/schemas.js';
import { noticeOf, type ConsoleContext, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { MessagePage } from '../pages/layout.js';
import { TASK_FILTERS, TASK_NOTICES, TaskPage, TasksPage, type TaskFilter, type TaskNotice } from '../pages/tasks.js';
import { leaseCountsByTask } from '../queries.js';

/** A task's outcome as POST /v1/tasks/{id}/complete takes it. */
const OutcomeSchema = safeText(64);

/** Tasks for orchestrators and admins, seen and completed through the task service with the caller's scopes. */
export function taskRoutes(app: ConsoleApp, kit: ConsoleKit) {
  // Who sees what, as the API decides it: GET /v1/tasks/{id} is for orchestrators and admins, and shows an
  // orchestrator the tasks it opened and those whose labels match its scopes (tasks.get with the caller).
  const orchestratorsOnly = (c: ConsoleContext) =>
    c.html(
      <MessagePage title="Orchestrators and admins only" dev={kit.dev} viewer={kit.viewerOf(c)}>
        <p class="error">The tasks pages are for orchestrators and admins.</p>
      </MessagePage>,
      403,
    );
  const mayTask = (c: ConsoleContext) => c.get('person').admin || c.get('person').orchestrator;

  app.get('/tasks', kit.requireSession('page'), async (c) => {
    if (!mayTask(c)) return orchestratorsOnly(c);
    const filter = (TASK_FILTERS as readonly string[]).includes(c.req.query('status') ?? '') ? (c.req.query('status') as TaskFilter) : 'all';
    const cursor = TaskIdSchema.safeParse(c.req.query('cursor'));
    const page = await kit.deps.tasks.list(kit.callerOf(c), filter === 'all' ? undefined : filter, cursor.success ? cursor.data : undefined, 50);
    const counts = await leaseCountsByTask(kit.deps.db, page.items.map((t) => t.id));
    const rows = page.items.map((task) => ({ task, leases: counts.get(task.id) ?? { active: 0, total: 0 } }));
    return c.html(<TasksPage dev={kit.dev} viewer={kit.viewerOf(c)} filter={filter} rows={rows} next={page.nextCursor} now={kit.deps.clock.now()} />);
  });

  /** The task as the caller may see it, or undefined: another's task reads exactly like a missing one. */
  const visibleTask = async (c: ConsoleContext, id: string) => {
    if (!TaskIdSchema.safeParse(id).success) return undefined;
    try {
      return await kit.deps.tasks.get(kit.callerOf(c), id);
    } catch (err) {
      if (err instanceof AppError && err.code === 'task_not_found') return undefined;
      throw err;
    }
  };

  app.get('/tasks/:id', kit.requireSession('page'), async (c) => {
    if (!mayTask(c)) return orchestratorsOnly(c);
    const found = await visibleTask(c, c.req.param('id'));
    if (!found) return kit.notFound(c, 'No such task among those you may see.', '/console/tasks');
    return c.html(
      <TaskPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        task={found.task}
        leases={found.leases}
        now={kit.deps.clock.now()}
        notice={noticeOf(c, TASK_NOTICES)}
      />,
    );
  });

  app.post('/tasks/:id/complete', kit.requireSession('action'), async (c) => {
    if (!mayTask(c)) return orchestratorsOnly(c);
    const id = c.req.param('id');
    const missing = () => kit.notFound(c, 'No such task among those you may see.', '/console/tasks');
    if (!TaskIdSchema.safeParse(id).success) return missing();
    const outcome = OutcomeSchema.safeParse(c.get('form').outcome);
    const back = (notice: TaskNotice) => c.redirect(`/console/tasks/${encodeURIComponent(id)}?notice=${notice}`, 303);
    if (!outcome.success) return (await visibleTask(c, id)) ? back('outcome_required') : missing();
    try {
      await kit.deps.tasks.complete(kit.callerOf(c), id, outcome.data);
    } catch (err) {
      if (err instanceof AppError && err.code === 'task_not_found') return missing();
      throw err;
    }
    return back('completed');
  });
}
