import { z } from 'zod';

export const NameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)');

function isRegExp(pattern: string): boolean {
  try {
    new RegExp(pattern, 'u');
    return true;
  } catch {
    return false;
  }
}

const ClaimValueSchema = z.union([z.string(), z.number(), z.boolean(), z.array(z.string()).min(1)]);

/** Who a rule matches: an issuer (by name) and the subject or claims of its tokens. */
export const IdentityRuleSchema = z
  .strictObject({
    issuer: NameSchema,
    subject: z.string().min(1).optional(),
    subject_pattern: z.string().min(1).optional(),
    /** The token's `aud` must contain this value. */
    audience: z.string().min(1).optional(),
    claims: z.record(z.string().min(1), ClaimValueSchema).optional(),
    /** String claims that must match a pattern (whole value, like subject_pattern). */
    claim_patterns: z.record(z.string().min(1), z.string().min(1)).optional(),
  })
  .refine((r) => !(r.subject && r.subject_pattern), 'set at most one of subject and subject_pattern')
  .refine((r) => r.subject || r.subject_pattern || r.claims || r.claim_patterns, 'set subject, subject_pattern, claims or claim_patterns')
  .refine((r) => r.subject_pattern === undefined || isRegExp(r.subject_pattern), {
    message: 'subject_pattern is not a valid regular expression',
    path: ['subject_pattern'],
  })
  .refine((r) => Object.values(r.claim_patterns ?? {}).every(isRegExp), {
    message: 'a claim_patterns entry is not a valid regular expression',
    path: ['claim_patterns'],
  });

export type IdentityRule = z.output<typeof IdentityRuleSchema>;
