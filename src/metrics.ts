import { and, count, eq, inArray, isNotNull } from 'drizzle-orm';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Db } from './db/client.js';
import { leases, outbox } from './db/schema.js';

/**
 * Prometheus metrics, one registry per broker (no global state). Lease
 * counts by state are read from the database at scrape time, so every
 * replica reports the same truth and nothing is kept in memory.
 */
export function createMetrics(db: Db) {
  const registry = new Registry();
  const issued = new Counter({ name: 'tasklease_credentials_issued_total', help: 'Credentials issued', labelNames: ['role', 'backend'], registers: [registry] });
  const denied = new Counter({ name: 'tasklease_credentials_denied_total', help: 'Credential requests refused, by code', labelNames: ['code'], registers: [registry] });
  const revocations = new Counter({ name: 'tasklease_revocations_total', help: 'Revocation attempts by outcome', labelNames: ['outcome'], registers: [registry] });
  const awsRevocationCutoffs = new Counter({
    name: 'tasklease_aws_revocation_cutoffs_total',
    help: "Cut-offs a full AWS deny policy forced: scope 'agent' ends one agent's older sessions, 'role' every older session of the role (agent: the heaviest)",
    labelNames: ['role_arn', 'scope', 'agent'],
    registers: [registry],
  });
  new Gauge({
    name: 'tasklease_leases',
    help: 'Leases not yet ended, by status (revoke_failed is the alerting one)',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const rows = await db
        .select({ status: leases.status, n: count() })
        .from(leases)
        .where(inArray(leases.status, ['active', 'revoking', 'revoke_failed']))
        .groupBy(leases.status);
      this.reset();
      for (const status of ['active', 'revoking', 'revoke_failed']) this.set({ status }, Number(rows.find((r) => r.status === status)?.n ?? 0));
    },
  });
  // Per agent: the registry bounds the label's values ('-' counts identities no agent matches).
  const agentIssued = new Counter({ name: 'tasklease_agent_credentials_issued_total', help: 'Credentials issued, by agent', labelNames: ['agent'], registers: [registry] });
  const agentDenied = new Counter({
    name: 'tasklease_agent_credentials_denied_total',
    help: 'Credential requests refused, by agent and code',
    labelNames: ['agent', 'code'],
    registers: [registry],
  });
  new Gauge({
    name: 'tasklease_agent_leases_active',
    help: 'Active leases, by agent',
    labelNames: ['agent'],
    registers: [registry],
    async collect() {
      const rows = await db
        .select({ agent: leases.agent, n: count() })
        .from(leases)
        .where(and(eq(leases.status, 'active'), isNotNull(leases.agent)))
        .groupBy(leases.agent);
      this.reset();
      for (const row of rows) this.set({ agent: row.agent! }, Number(row.n));
    },
  });
  // Notifications (src/notify/), by the webhook's configured name (never its URL).
  const notificationsDelivered = new Counter({ name: 'tasklease_notifications_delivered_total', help: 'Notifications delivered, by destination', labelNames: ['destination'], registers: [registry] });
  const notificationFailures = new Counter({
    name: 'tasklease_notification_failures_total',
    help: 'Notification delivery attempts that failed, by destination',
    labelNames: ['destination'],
    registers: [registry],
  });
  new Gauge({
    name: 'tasklease_notifications_undelivered',
    help: "Notifications in the outbox not yet delivered, by destination and status ('failed' gave up fast retries: the alerting one)",
    labelNames: ['destination', 'status'],
    registers: [registry],
    async collect() {
      const rows = await db
        .select({ destination: outbox.destination, status: outbox.status, n: count() })
        .from(outbox)
        .where(inArray(outbox.status, ['pending', 'failed']))
        .groupBy(outbox.destination, outbox.status);
      this.reset();
      for (const row of rows) this.set({ destination: row.destination, status: row.status }, Number(row.n));
    },
  });
  const policyReloadFailures = new Counter({
    name: 'tasklease_policy_reload_failures_total',
    help: 'Policy reloads refused (the set in force stayed): SIGHUP or a changed file with policies that do not load',
    registers: [registry],
  });
  return { registry, issued, denied, revocations, awsRevocationCutoffs, agentIssued, agentDenied, notificationsDelivered, notificationFailures, policyReloadFailures };
}
export type Metrics = ReturnType<typeof createMetrics>;
