// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { agentsUse, reviewAgent } from '../../agents/review.js';
import { AppError } from '../../errors.js';
import { NAME_RE, noticeOf, ReasonSchema, type ConsoleApp, type ConsoleKit } from '../kit.js';
import { AGENT_NOTICES, AgentPage, AgentsPage, type AgentNotice } from '../pages/agents.js';
import { activeLeaseCounts } from '../queries.js';

/** The registry and the kill switch: the agent service suspends and resumes, as POST /v1/agents/{name}/suspend does. */
export function agentRoutes(app: ConsoleApp, kit: ConsoleKit) {
  // Who sees what, as the API decides it: GET /v1/agents is for admins, GET /v1/agents/{name} for admins and the
  // agent's owners. Here an owner's list holds the agents it owns.
  app.get('/agents', kit.requireSession('page'), async (c) => {
    const now = kit.deps.clock.now();
    const all = await kit.deps.registry.list();
    const agents = c.get('person').admin ? all : (await Promise.all(all.map(async (a) => ((await kit.mayAct(c, a.name)) ? [a] : [])))).flat();
    const [states, use, active] = await Promise.all([Promise.all(agents.map((a) => kit.deps.registry.get(a.name))), agentsUse(kit.deps.db, agents, now), activeLeaseCounts(kit.deps.db)]);
    const rows = await Promise.all(
      agents.map(async (agent, i) => ({ agent, suspension: states[i]?.suspension, use: use.get(agent.name), active: active.get(agent.name) ?? 0, canAct: await kit.mayAct(c, agent.name) })),
    );
    return c.html(<AgentsPage dev={kit.dev} viewer={kit.viewerOf(c)} rows={rows} now={now} />);
  });

  app.get('/agents/:name', kit.requireSession('page'), async (c) => {
    const name = c.req.param('name');
    // Not an admin nor its owner: the same page whether the agent exists or not.
    const found = NAME_RE.test(name) && (await kit.mayAct(c, name)) ? await kit.deps.registry.get(name) : undefined;
    if (!found) return kit.notFound(c, 'No such agent.', '/console/agents');
    const now = kit.deps.clock.now();
    const review = await reviewAgent(kit.deps.db, found.agent, now);
    return c.html(
      <AgentPage
        dev={kit.dev}
        viewer={kit.viewerOf(c)}
        agent={found.agent}
        suspension={found.suspension}
        review={review}
        canAct={await kit.mayAct(c, name)}
        now={now}
        notice={noticeOf(c, AGENT_NOTICES)}
      />,
    );
  });

  for (const action of ['suspend', 'resume'] as const) {
    app.post(`/agents/:name/${action}`, kit.requireSession('action'), async (c) => {
      const name = c.req.param('name');
      const reason = ReasonSchema.safeParse(c.get('form').reason);
      if (!NAME_RE.test(name) || !(await kit.deps.registry.get(name))) return kit.notFound(c, 'No such agent.', '/console/agents');
      const back = (notice: AgentNotice) => c.redirect(`/console/agents/${name}?notice=${notice}`, 303);
      if (!(await kit.mayAct(c, name))) return back('not_agent_owner');
      if (!reason.success) return back('reason_required');
      try {
        if (action === 'suspend') await kit.deps.agentService.suspend(kit.callerOf(c), name, reason.data);
        else await kit.deps.agentService.resume(kit.callerOf(c), name, reason.data);
      } catch (err) {
        if (err instanceof AppError && err.code === 'agent_not_found') return kit.notFound(c, 'No such agent.', '/console/agents');
        if (err instanceof AppError && err.code in AGENT_NOTICES) return back(err.code as AgentNotice);
        throw err;
      }
      return back(action === 'suspend' ? 'suspended' : 'resumed');
    });
  }
}
