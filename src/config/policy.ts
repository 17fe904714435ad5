import { z } from 'zod';
import { DurationSchema } from './duration.js';

const RoleName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/);
const Labels = z.record(z.string().min(1).max(63), z.string().max(256));

/**
 * Label rules that make a role's requests need approval, e.g. every role on
 * `environment: production` tasks, or every request of agents labelled
 * `data_class: restricted` (the registered agent's labels, docs/agents.md).
 */
export const ApprovalRuleSchema = z
  .strictObject({
    name: z.string().min(1).max(63),
    /** The task's labels contain these. */
    labels: Labels.default({}),
    /** The requesting agent's labels contain these (an identity no agent matches has none). */
    agent_labels: Labels.default({}),
    /** Only these roles; all roles when absent. */
    roles: z.array(RoleName).min(1).optional(),
  })
  .refine((r) => Object.keys(r.labels).length + Object.keys(r.agent_labels).length > 0, 'name at least one label or agent label');

/** Roles that are harmless apart and harmful together: one scope may not hold all of them at once. */
export const ConflictSchema = z.strictObject({
  name: z.string().min(1).max(63),
  roles: z.array(RoleName).min(2),
  /** `task`: within one task; `agent`: across all tasks of one agent. */
  scope: z.enum(['task', 'agent']).default('task'),
});

export const PolicySchema = z
  .strictObject({
    approvals: z
      .strictObject({
        /** How long an approval request waits for a decision, and an approval for its redemption. */
        ttl: DurationSchema.default(900),
        rules: z.array(ApprovalRuleSchema).default([]),
      })
      .default({ ttl: 900, rules: [] }),
    conflicts: z.array(ConflictSchema).default([]),
    quotas: z
      .strictObject({
        max_active_per_agent: z.number().int().min(1).optional(),
        max_active_per_task: z.number().int().min(1).optional(),
      })
      .default({}),
    /** The operator's own Cedar policies (docs/policy.md), relative to the config file; validated at start-up. */
    cedar: z.strictObject({ files: z.array(z.string().min(1)).default([]) }).default({ files: [] }),
    /** Credential requests per agent: a token bucket, per replica. */
    rate_limit: z
      .strictObject({ per_agent_per_second: z.number().positive(), burst: z.number().int().min(1) })
      .optional(),
  })
  .default({ approvals: { ttl: 900, rules: [] }, conflicts: [], quotas: {}, cedar: { files: [] } });

export type PolicyConfig = z.output<typeof PolicySchema>;
export type ConflictConfig = z.output<typeof ConflictSchema>;
