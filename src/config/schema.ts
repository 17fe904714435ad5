import { z } from 'zod';
import { DurationSchema } from './duration.js';
import { IssuerSchema } from './issuer.js';
import { MetricsSchema } from './metrics.js';
import { NotificationsSchema } from './notifications.js';
import { OAuthSchema } from './oauth.js';
import { AwsRoleSchema, AwsStsBackendSchema } from './aws.js';
import { PolicySchema } from './policy.js';
import { VaultBackendSchema, VaultRoleSchema } from './vault.js';
import { AgentsConfigSchema } from './agents.js';
import { ConsoleSchema } from './console.js';
import { IdentityRuleSchema, NameSchema as BaseNameSchema } from './identity-rule.js';

export { IssuerSchema, IdentityRuleSchema };

const NameSchema = BaseNameSchema;

/** Orchestrators may act on the tasks they opened, and on tasks whose labels match their scope. */
const ScopeSchema = z.strictObject({ labels: z.record(z.string().min(1), z.string()) }).optional();

const StaticPrincipalSchema = z.strictObject({
  name: NameSchema,
  token_sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex digits'),
  scope: ScopeSchema,
});
const RulePrincipalSchema = IdentityRuleSchema.and(z.object({ name: NameSchema.optional(), scope: ScopeSchema }));

/**
 * A static token (it has `token_sha256`) or an identity rule. The key picks the shape before
 * validating, so an error names the missing or stray key: a plain union says only "Invalid input".
 */
export const PrincipalSchema = z
  .custom<z.input<typeof StaticPrincipalSchema> | z.input<typeof RulePrincipalSchema>>()
  .transform((value, ctx): z.output<typeof StaticPrincipalSchema> | z.output<typeof RulePrincipalSchema> => {
    const isStatic = typeof value === 'object' && value !== null && 'token_sha256' in value;
    const result = (isStatic ? StaticPrincipalSchema : RulePrincipalSchema).safeParse(value);
    if (result.success) return result.data;
    // Both halves of the rule's intersection report a value that is not an object: say it once.
    const seen = new Set<string>();
    for (const issue of result.error.issues) {
      const key = `${issue.path.join('.')}\0${issue.message}`;
      if (!seen.has(key)) ctx.addIssue({ ...issue, continue: false });
      seen.add(key);
    }
    return z.NEVER;
  });

export const JwtBackendSchema = z.strictObject({
  type: z.literal('jwt'),
  /** Rotate the signing key once it is this old; old keys stay published until their tokens expire. */
  key_rotation: DurationSchema.default(7 * 86400),
});

export const BackendSchema = z.discriminatedUnion('type', [JwtBackendSchema, AwsStsBackendSchema, VaultBackendSchema]);

export const RoleSchema = z
  .strictObject({
    name: NameSchema,
    backend: NameSchema,
    ttl: DurationSchema.default(900),
    max_ttl: DurationSchema.default(3600),
    allow: z.array(IdentityRuleSchema).min(1),
    jwt: z
      .strictObject({
        audience: z.string().min(1).optional(),
        scope: z.string().optional(),
        /**
         * Every service that accepts this role's tokens asks POST /v1/introspect, so a revoked lease's
         * token stops working at once. Left false, a token works wherever its signature is checked until
         * its `exp`, and its lease counts toward quotas and conflicts until then.
         */
        relying_parties_introspect: z.boolean().default(false),
        /** Only a request with a valid DPoP proof (RFC 9449) gets this role's token, bound to the proof's key (`cnf.jkt`). */
        require_dpop: z.boolean().default(false),
      })
      .optional(),
    aws: AwsRoleSchema.optional(),
    vault: VaultRoleSchema.optional(),
    /** Every request needs an approver's decision first. */
    requires_approval: z.boolean().default(false),
    /** Kinds of access (`sensitivity: high`, `access: write`), so that Cedar policies need not name roles: the Role's tags. */
    labels: z.record(z.string().min(1).max(63), z.string().max(256)).default({}),
    /** Who besides the admins may approve this role's requests. */
    approvers: z.array(IdentityRuleSchema).default([]),
    /**
     * The people who may delegate this role to an agent (RFC 8693 token exchange with an `actor_token`,
     * docs/oauth.md): the issued token is the person's, acted by the agent. Empty: nobody.
     */
    delegable_by: z.array(IdentityRuleSchema).default([]),
    /** At most this many active leases of the role at once, across all agents. */
    max_active: z.number().int().min(1).optional(),
  })
  .refine((r) => r.ttl >= 1 && r.ttl <= r.max_ttl, 'ttl must be between 1s and max_ttl');

export const SweeperSchema = z.strictObject({
  interval: DurationSchema.default(5),
  batch_size: z.number().int().min(1).max(10_000).default(500),
  concurrency: z.number().int().min(1).max(256).default(16),
  max_attempts: z.number().int().min(1).max(100).default(8),
  claim_timeout: DurationSchema.default(60),
  failed_retry_interval: DurationSchema.default(300),
});

export const ConfigSchema = z.strictObject({
  /** The broker's own URL: `iss` of its tokens, default audience. Defaults to http://localhost:<port>. */
  public_url: z.string().url().optional(),
  host: z.string().default('127.0.0.1'),
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  database_url: z.string().optional(),
  data_dir: z.string().default('./.tasklease'),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  issuers: z.array(IssuerSchema).default([]),
  principals: z
    .strictObject({
      orchestrators: z.array(PrincipalSchema).default([]),
      admins: z.array(PrincipalSchema).default([]),
    })
    .default({ orchestrators: [], admins: [] }),
  backends: z.record(NameSchema, BackendSchema).default({}),
  roles: z.array(RoleSchema).default([]),
  tasks: z.strictObject({ max_ttl: DurationSchema.default(86400) }).default({ max_ttl: 86400 }),
  policy: PolicySchema,
  agents: AgentsConfigSchema,
  sweeper: SweeperSchema.default(SweeperSchema.parse({})),
  metrics: MetricsSchema.prefault({}),
  /** Who hears of what needs a person (new approval requests): docs/notifications.md. */
  notifications: NotificationsSchema.prefault({}),
  console: ConsoleSchema.prefault({}),
  oauth: OAuthSchema,
  /** Set only by dev mode: enables the dev issuer and its warnings. */
  dev: z.boolean().default(false),
}).transform((c) => ({ ...c, public_url: (c.public_url ?? `http://localhost:${c.port}`).replace(/\/$/, '') }));

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type IssuerConfig = Config['issuers'][number];
export type RoleConfig = Config['roles'][number];
export type IdentityRule = z.output<typeof IdentityRuleSchema>;
export type PrincipalConfig = z.output<typeof PrincipalSchema>;
export type BackendConfig = z.output<typeof BackendSchema>;
