import { createHmac } from 'node:crypto';
import type { WebhookConfig } from '../config/notifications.js';
import type { OutboxRow } from '../db/schema.js';
import type { ApprovalFacts } from './outbox.js';

export const TIMESTAMP_HEADER = 'tasklease-timestamp';
export const SIGNATURE_HEADER = 'tasklease-signature';
export const DELIVERY_HEADER = 'tasklease-delivery';

/** `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`: the timestamp is signed with the body, so a replay cannot be re-dated. */
export function signature(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export interface Rendered {
  body: string;
  headers: Record<string, string>;
}

/** The console page of an approval, under the webhook's console_url (default `<public_url>/console`). */
export function approvalLink(webhook: WebhookConfig, publicUrl: string, id: string): string {
  const base = (webhook.console_url ?? `${publicUrl}/console`).replace(/\/$/, '');
  return `${base}/approvals/${encodeURIComponent(id)}`;
}

/** Slack mrkdwn treats `&`, `<` and `>` as control characters: a subject such as `<https://x|click>` must stay text. */
const slackEscape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function slackBody(a: ApprovalFacts, link: string) {
  const who = slackEscape(`${a.requester.issuer}/${a.requester.subject}`);
  const text = `Approval requested: ${who} asks for role ${slackEscape(a.role)} on task ${slackEscape(a.task)}. <${link}|Review it in the console>`;
  const ttl = a.requested_ttl_seconds === null ? 'role default' : `${a.requested_ttl_seconds}s`;
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*Approval requested* for role *${slackEscape(a.role)}*` } },
      {
        type: 'section',
        fields: [
          { type: 'mrkdwn', text: `*Requester*\n${who}` },
          { type: 'mrkdwn', text: `*Task*\n${slackEscape(a.task)}` },
          { type: 'mrkdwn', text: `*Why*\n${slackEscape(a.required_by)}` },
          { type: 'mrkdwn', text: `*TTL asked*\n${ttl}` },
          { type: 'mrkdwn', text: `*Expires*\n${a.expires_at}` },
        ],
      },
      { type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Review' }, url: link }] },
    ],
  };
}

/**
 * The request for one outbox row to one webhook, rendered at delivery: the
 * json format is signed over `${timestamp}.${body}` when the webhook has a
 * secret; the slack format's URL is its own secret.
 */
export function render(row: OutboxRow, webhook: WebhookConfig, publicUrl: string, now: Date): Rendered {
  const approval = row.payload.approval as ApprovalFacts;
  const link = approvalLink(webhook, publicUrl, approval.id);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'tasklease-notifier' };
  if (webhook.format === 'slack') return { body: JSON.stringify(slackBody(approval, link)), headers };
  const body = JSON.stringify({ id: row.id, type: row.kind, approval, console_url: link, sent_at: now.toISOString() });
  const timestamp = Math.floor(now.getTime() / 1000);
  headers[DELIVERY_HEADER] = row.id;
  headers[TIMESTAMP_HEADER] = String(timestamp);
  if (webhook.secret) headers[SIGNATURE_HEADER] = signature(webhook.secret, timestamp, body);
  return { body, headers };
}
