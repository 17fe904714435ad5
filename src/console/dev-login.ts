import type { Config } from '../config/schema.js';

/** The dev login's issuer: dev mode's own (config/dev.ts). */
export const DEV_LOGIN_ISSUER = 'dev';

/** The subjects the dev login offers: the dev issuer's exact subjects among admins, orchestrators, approvers and agents' owners. */
export function devSuggestions(config: Config): { subject: string; what: string }[] {
  const found = new Map<string, Set<string>>();
  const add = (rule: unknown, what: string) => {
    const r = rule as { issuer?: string; subject?: string };
    if (r.issuer !== DEV_LOGIN_ISSUER || !r.subject) return;
    found.set(r.subject, (found.get(r.subject) ?? new Set()).add(what));
  };
  for (const p of config.principals.admins) add(p, 'admin');
  for (const p of config.principals.orchestrators) add(p, 'orchestrator');
  for (const role of config.roles) for (const a of role.approvers) add(a, `approver of ${role.name}`);
  for (const agent of config.agents.register) for (const p of agent.owner.principals) add(p, `owner of ${agent.name}`);
  return [...found].map(([subject, what]) => ({ subject, what: [...what].join(', ') }));
}
