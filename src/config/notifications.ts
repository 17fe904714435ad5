import { z } from 'zod';
import { DurationSchema } from './duration.js';
import { NameSchema } from './identity-rule.js';

export const HttpUrlSchema = z
  .string()
  .url('an absolute http(s) URL')
  .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'an http(s) URL');

/**
 * One webhook that hears of new approval requests. `url` and `secret` are
 * credentials (a Slack incoming-webhook URL is its own token): usually
 * `${ENV}` references, never logged, stored or echoed (rows name the webhook).
 */
export const WebhookSchema = z.strictObject({
  name: NameSchema,
  url: HttpUrlSchema,
  /** `json`: the generic signed body (docs/notifications.md); `slack`: an incoming-webhook message. */
  format: z.enum(['json', 'slack']).default('json'),
  /** HMAC-SHA256 key for the `Tasklease-Signature` header (json format). */
  secret: z.string().min(16, 'at least 16 characters').optional(),
  /** Where people open the console; its approval pages are `<console_url>/approvals/<id>`. Default `<public_url>/console`. */
  console_url: HttpUrlSchema.optional(),
});

/** Delivery of notifications from the outbox (src/notify/). */
export const NotificationsSchema = z
  .strictObject({
    webhooks: z.array(WebhookSchema).default([]),
    /** How often each replica looks for due notifications (it is also nudged when one is written). */
    interval: DurationSchema.default(5).refine((s) => s >= 1, 'at least 1s'),
    /** Each POST gives up after this long. */
    timeout: DurationSchema.default(10).refine((s) => s >= 1 && s <= 60, 'between 1s and 60s'),
    /** Fast retries (exponential backoff with jitter) before a notification is marked failed. */
    max_attempts: z.number().int().min(1).max(100).default(8),
    /** A failed notification is still retried, this often. */
    failed_retry_interval: DurationSchema.default(900),
  })
  .refine((n) => new Set(n.webhooks.map((w) => w.name)).size === n.webhooks.length, { message: 'webhook names must be unique', path: ['webhooks'] })
  .refine((n) => n.webhooks.every((w) => w.format !== 'slack' || w.secret === undefined), {
    message: 'a slack webhook is not signed (its URL is its secret): remove `secret`',
    path: ['webhooks'],
  });
export type NotificationsConfig = z.output<typeof NotificationsSchema>;
export type WebhookConfig = NotificationsConfig['webhooks'][number];
