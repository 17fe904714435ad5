import { z } from 'zod';
import { DurationSchema } from './duration.js';

const Mount = z.string().regex(/^[\w.-]+(\/[\w.-]+)*$/);

export const VaultBackendSchema = z.strictObject({
  type: z.literal('vault'),
  address: z.string().url(),
  /** Vault Enterprise / OpenBao namespace, sent as X-Vault-Namespace. */
  namespace: z.string().min(1).optional(),
  /** PEM file of the CA that signed Vault's TLS certificate. */
  ca_file: z.string().min(1).optional(),
  request_timeout: DurationSchema.default(10),
  /** How the broker logs in to Vault itself. */
  auth: z.discriminatedUnion('method', [
    z.strictObject({ method: z.literal('token'), token_file: z.string().min(1) }),
    z.strictObject({ method: z.literal('approle'), role_id_file: z.string().min(1), secret_id_file: z.string().min(1), mount: Mount.default('approle') }),
    z.strictObject({ method: z.literal('jwt'), role: z.string().min(1), jwt_file: z.string().min(1), mount: Mount.default('jwt') }),
    z.strictObject({
      method: z.literal('kubernetes'),
      role: z.string().min(1),
      jwt_file: z.string().min(1).default('/var/run/secrets/kubernetes.io/serviceaccount/token'),
      mount: Mount.default('kubernetes'),
    }),
  ]),
});

export const VaultRoleSchema = z.discriminatedUnion('mode', [
  /** Dynamic secrets: read `path` (e.g. database/creds/readonly); Vault's lease is revoked with the task. */
  z.strictObject({ mode: z.literal('dynamic'), path: Mount }),
  /** A Vault token with these policies; the broker keeps its accessor, never the token. */
  z.strictObject({
    mode: z.literal('token'),
    token_role: z.string().regex(/^[\w.-]+$/).optional(),
    policies: z.array(z.string().min(1)).min(1),
    num_uses: z.number().int().min(0).default(0),
    renewable: z.boolean().default(true),
  }),
]);

export type VaultBackendConfig = z.output<typeof VaultBackendSchema>;
export type VaultRoleConfig = z.output<typeof VaultRoleSchema>;
