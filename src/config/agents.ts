import { z } from 'zod';
import { subjectProblem } from '../identity/identity-text.js';
import { IdentityRuleSchema } from './identity-rule.js';

const AgentName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)');
const RoleName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/);
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/u;
const plain = (s: string) => !CONTROL_CHARS.test(s) && s.isWellFormed();
const Text = (max: number) => z.string().min(1).max(max).refine(plain, 'must not contain control characters or malformed Unicode');

/**
 * An identity rule the registry stores and shows (an agent's match, its
 * owners, a suspension by rule): a subject, or a subject pattern, must be
 * text a token's `sub` could be (identity/identity-text.ts: bounded, no
 * control, zero-width or bidi characters, no lone surrogate), and every claim
 * name and value plain text. Otherwise a rule no token can ever satisfy, or
 * one that reads in the console as another identity, is registered without a
 * word, and a NUL or a lone surrogate reaches the database, which refuses it
 * as a data error rather than a validation one
 * (test/reliability/hostile-input.test.ts).
 */
export const AgentRuleSchema = IdentityRuleSchema.superRefine((rule, ctx) => {
  for (const key of ['subject', 'subject_pattern'] as const) {
    const value = rule[key];
    const problem = value === undefined ? undefined : subjectProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', path: [key], message: problem });
  }
  const texts = [
    rule.audience,
    ...Object.entries(rule.claims ?? {}).flatMap(([k, v]) => [k, ...(Array.isArray(v) ? v : [v])]),
    ...Object.entries(rule.claim_patterns ?? {}).flat(),
  ];
  if (!texts.every((t) => typeof t !== 'string' || (t.length <= 1024 && plain(t)))) {
    ctx.addIssue({ code: 'custom', message: 'audience, claim names and claim values must be plain text (at most 1024 characters, no control characters or malformed Unicode)' });
  }
});

/** The accountable team or person; `principals` may suspend and resume the agent besides the admins. */
export const AgentOwnerSchema = z.strictObject({
  name: Text(128),
  contact: Text(256),
  principals: z.array(AgentRuleSchema).max(16).default([]),
});

/**
 * A registered agent: who it is (`match`, the syntax of a role's `allow`
 * rule), who answers for it, why it exists, and the roles it may ever hold
 * (its ceiling), whatever a task lists.
 */
export const AgentSchema = z.strictObject({
  name: AgentName,
  match: AgentRuleSchema,
  owner: AgentOwnerSchema,
  purpose: Text(500),
  roles: z.array(RoleName).min(1).max(256),
  labels: z.record(z.string().regex(/^[a-z0-9][a-z0-9._/-]{0,62}$/), z.string().max(256).refine(plain, 'must not contain control characters or malformed Unicode')).default({}),
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
