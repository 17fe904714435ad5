import { z } from 'zod';
import { DurationSchema } from './duration.js';

export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
/** JWT-SVID specification, section 3: the algorithms a JWT-SVID may be signed with. */
export const SPIFFE_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;

type Algorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

/**
 * What each preset sets when the issuer entry does not: allowed algorithms
 * and the claims a token must carry. Documented in docs/identity.md.
 */
export const PRESETS = {
  kubernetes: { algorithms: ['RS256', 'ES256'] as Algorithm[], required_claims: ['kubernetes.io'] },
  'github-actions': { algorithms: ['RS256'] as Algorithm[], required_claims: ['repository', 'ref', 'job_workflow_ref'] },
  spiffe: { algorithms: [...SPIFFE_ALGORITHMS] as Algorithm[], required_claims: ['aud'] },
} as const;

const NameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)');

export const IssuerSchema = z
  .strictObject({
    name: NameSchema,
    /** Compared exactly with the token's `iss`: no trailing-slash or case folding. */
    issuer: z.string().url(),
    preset: z.enum(['kubernetes', 'github-actions', 'spiffe']).optional(),
    jwks_uri: z.string().url().optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
    audiences: z.array(z.string().min(1)).min(1).optional(),
    algorithms: z.array(z.enum(ASYMMETRIC_ALGORITHMS)).min(1).optional(),
    clock_tolerance: DurationSchema.default(30),
    /** Refuse tokens issued (`iat`) longer ago than this; requires `iat`. */
    max_token_age: DurationSchema.optional(),
    required_claims: z.array(z.string().min(1)).default([]),
    jwks_cache_max_age: DurationSchema.default(600),
    jwks_refresh_cooldown: DurationSchema.default(30),
    fetch_timeout: DurationSchema.default(5),
  })
  .refine((i) => !(i.jwks_uri && i.jwks), 'set at most one of jwks_uri and jwks')
  .refine((i) => i.preset !== 'spiffe' || i.audiences, {
    message: 'a spiffe issuer must list its audiences (JWT-SVIDs are audience-bound)',
    path: ['audiences'],
  })
  .refine((i) => i.preset !== 'spiffe' || !i.algorithms || i.algorithms.every((a) => (SPIFFE_ALGORITHMS as readonly string[]).includes(a)), {
    message: `a spiffe issuer may allow only ${SPIFFE_ALGORITHMS.join(', ')}`,
    path: ['algorithms'],
  })
  .transform((i) => {
    const preset = i.preset ? PRESETS[i.preset] : undefined;
    return {
      ...i,
      algorithms: i.algorithms ?? preset?.algorithms ?? (['RS256', 'ES256'] as Algorithm[]),
      required_claims: [...new Set([...(preset?.required_claims ?? []), ...i.required_claims])],
    };
  });
