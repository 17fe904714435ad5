// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { agentsUse, reviewAgent } from '../../agents/review.js';
import { AppError } from '../../errors.js';
import { NAME_RE, noticeOf, ReasonSchema, type ConsoleApp, type ConsoleContext, type ConsoleKit } from '../kit.js';
import { AGENT_NOTICES, AgentPage, AgentsPage, type AgentNotice } from '../pages/agents.js';
import { activeLeaseCounts } from '../queries.js';

/** The registry and the kill switch: the agent service suspends and resumes, as POST /v1/agents/{name}/suspend does. */
export function agentRoutes(app: ConsoleApp, kit: ConsoleKit) {
  const { registry, agentService } = kit.deps;
  /** The agent as agentService.forAdminOrOwner gives it, or undefined: not theirs reads exactly like a missing one. */
  const visible = async (c: ConsoleContext, name: string) => {
    if (!NAME_RE.test(name)) return undefined;
    try {
      return await agentService.forAdminOrOwner(c.get('person'), name);
    } catch (err) {
      if (err instanceof AppError && (err.code === 'not_agent_owner' || err.code === 'agent_not_found')) return undefined;
      throw err;
    }
  };
  const missing = (c: ConsoleContext) => kit.notFound(c, 'No such agent.', '/console/agents');

  // Who sees what, as the API decides it: GET /v1/agents is for admins, GET /v1/agents/{name} for admins and the
  // agent's owners. Here an owner's list holds the agents it owns, each of which it may suspend and resume.
  app.get('/agents', kit.requireSession('page'), async (c) => {
    const now = kit.deps.clock.now();
    const person = c.get('person');
    const all = await registry.list();
    const owned = person.admin ? undefined : new Set(await registry.ownedBy(person.identity));
    const agents = owned ? all.filter((a) => owned.has(a.name)) : all;
    const [states, use, active] = await Promise.all([Promise.all(agents.map((a) => registry.get(a.name))), agentsUse(kit.deps.db, agents, now), activeLeaseCounts(kit.deps.db)]);
    const rows = agents.map((agent, i) => ({ agent, suspension: states[i]?.suspension, use: use.get(agent.name), active: active.get(agent.name) ?? 0 }));
    return c.html(<AgentsPage dev={kit.dev} viewer={kit.viewerOf(c)} rows={rows} now={now} />);
  });

  app.get('/agents/:name', kit.requireSession('page'), async (c) => {
    const found = await visible(c, c.req.param('name'));
    if (!found) return missing(c);
    const now = kit.deps.clock.now();
    const review = await reviewAgent(kit.deps.db, found.agent, now);
    return c.html(<AgentPage dev={kit.dev} viewer={kit.viewerOf(c)} agent={found.agent} suspension={found.suspension} review={review} now={now} notice={noticeOf(c, AGENT_NOTICES)} />);
  });

  for (const action of ['suspend', 'resume'] as const) {
    app.post(`/agents/:name/${action}`, kit.requireSession('action'), async (c) => {
      const name = c.req.param('name');
      // Ownership before existence, as the API: another's agent and a missing one answer the same page.
      if (!(await visible(c, name))) return missing(c);
      const back = (notice: AgentNotice) => c.redirect(`/console/agents/${name}?notice=${notice}`, 303);
      const reason = ReasonSchema.safeParse(c.get('form').reason);
      if (!reason.success) return back('reason_required');
      try {
        if (action === 'suspend') await agentService.suspend(kit.callerOf(c), name, reason.data);
        else await agentService.resume(kit.callerOf(c), name, reason.data);
      } catch (err) {
        if (err instanceof AppError && err.code === 'agent_not_found') return missing(c);
        if (err instanceof AppError && err.code in AGENT_NOTICES) return back(err.code as AgentNotice);
        throw err;
      }
      return back(action === 'suspend' ? 'suspended' : 'resumed');
    });
  }
}
