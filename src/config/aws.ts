import { z } from 'zod';
import { BOUND_CHARS, misplacedPlaceholders } from '../backends/aws-session-policy.js';

/** STS limits, from the AssumeRole API reference. */
export const STS_LIMITS = {
  minDuration: 900,
  maxDuration: 43_200,
  sessionPolicyChars: 2048,
  policyArns: 10,
  tags: 50,
  tagKey: 128,
  tagValue: 256,
} as const;

export const AwsStsBackendSchema = z.strictObject({
  type: z.literal('aws-sts'),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS region such as us-east-1'),
  /** Private endpoints (VPC), or a test server. */
  sts_endpoint: z.string().url().optional(),
  iam_endpoint: z.string().url().optional(),
  /**
   * Early revocation: a Deny on the role for the revoked sessions' SourceIdentity,
   * in this inline policy (unique per deployment: each deployment renders it
   * whole from its own database). Without it, a credential works until its
   * lease ends (the session policy's aws:CurrentTime bound).
   */
  revocation: z
    .strictObject({
      policy_name: z.string().regex(/^[\w+=,.@-]{1,100}$/).default('tasklease-revoked'),
      /** IAM's limit on a role's inline policies, in characters without whitespace. */
      max_policy_chars: z.number().int().min(1000).max(10_240).default(10_240),
    })
    .optional(),
});

const TemplateValue: z.ZodType<unknown> = z.lazy(() => z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(TemplateValue), z.record(z.string(), TemplateValue)]));

export const AwsRoleSchema = z
  .strictObject({
    role_arn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, 'an IAM role ARN'),
    external_id: z.string().min(2).max(1224).optional(),
    /** The role's MaxSessionDuration in IAM: the longest session AssumeRole may grant (1 h when chaining roles). */
    max_session_duration: z.number().int().min(STS_LIMITS.minDuration).max(STS_LIMITS.maxDuration).default(3600),
    /** Session policy; `{{task}}`, `{{lease}}`, `{{agent}}` in strings are filled in per credential. */
    session_policy: z.record(z.string(), TemplateValue).optional(),
    policy_arns: z.array(z.string().regex(/^arn:aws[a-z-]*:iam::(\d{12}|aws):policy\/.+$/)).max(STS_LIMITS.policyArns).default([]),
    tags: z.record(z.string(), z.string()).default({}),
  })
  .refine((r) => !r.session_policy || JSON.stringify(r.session_policy).length <= STS_LIMITS.sessionPolicyChars - 200 - BOUND_CHARS, {
    message: `session_policy must stay under ${STS_LIMITS.sessionPolicyChars - BOUND_CHARS} characters once filled in (keep 200 spare for ids; tasklease appends ${BOUND_CHARS} for the lease's end)`,
    path: ['session_policy'],
  })
  .superRefine((r, ctx) => {
    for (const message of r.session_policy ? misplacedPlaceholders(r.session_policy) : []) ctx.addIssue({ code: 'custom', message, path: ['session_policy'] });
  })
  .refine((r) => Object.keys(r.tags).length <= STS_LIMITS.tags - 4, { message: `at most ${STS_LIMITS.tags - 4} static tags (4 are tasklease's)`, path: ['tags'] })
  .refine((r) => !Object.keys(r.tags).some((k) => k.toLowerCase().startsWith('tasklease:')), { message: "tag keys starting with 'tasklease:' are the broker's own", path: ['tags'] });

export type AwsStsBackendConfig = z.output<typeof AwsStsBackendSchema>;
export type AwsRoleConfig = z.output<typeof AwsRoleSchema>;
