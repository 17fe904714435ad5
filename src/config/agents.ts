import { z } from 'zod';
import { IdentityRuleSchema } from './identity-rule.js';

const AgentName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)');
const RoleName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/);
const Text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !/[\u0000-\u001f\u007f-\u009f]/u.test(s) && s.isWellFormed(), 'must not contain control characters or malformed Unicode');

/** The accountable team or person; `principals` may suspend and resume the agent besides the admins. */
export const AgentOwnerSchema = z.strictObject({
  name: Text(128),
  contact: Text(256),
  principals: z.array(IdentityRuleSchema).max(16).default([]),
});

/**
 * A registered agent: who it is (`match`, the syntax of a role's `allow`
 * rule), who answers for it, why it exists, and the roles it may ever hold
 * (its ceiling), whatever a task lists.
 */
export const AgentSchema = z.strictObject({
  name: AgentName,
  match: IdentityRuleSchema,
  owner: AgentOwnerSchema,
  purpose: Text(500),
  roles: z.array(RoleName).min(1).max(256),
  labels: z.record(z.string().regex(/^[a-z0-9][a-z0-9._/-]{0,62}$/), z.string().max(256)).default({}),
});

export const AgentsConfigSchema = z
  .strictObject({
    /** An identity that matches no registered agent gets no credential, whatever the roles allow. */
    require_registration: z.boolean().default(false),
    register: z.array(AgentSchema).default([]),
  })
  .default({ require_registration: false, register: [] });

export type AgentConfig = z.output<typeof AgentSchema>;
export type AgentInput = z.input<typeof AgentSchema>;
export type AgentsConfig = z.output<typeof AgentsConfigSchema>;
