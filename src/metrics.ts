import { and, count, eq, inArray, isNotNull } from 'drizzle-orm';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Db } from './db/client.js';
import { leases, outbox, OUTBOX_KINDS } from './db/schema.js';

/**
 * Prometheus metrics, one registry per broker (no global state). Lease
 * counts by state are read from the database at scrape time, so every
 * replica reports the same truth and nothing is kept in memory.
 */
export function createMetrics(db: Db, options: { readiness?: () => Promise<Record<string, boolean>> } = {}) {
  const registry = new Registry();
  const { readiness } = options;
  if (readiness) {
    // What /readyz decides, per check, at scrape time: the alert rules' "not ready" (deploy/prometheus/).
    new Gauge({
      name: 'tasklease_ready',
      help: "Readiness by check (1 ready, 0 not): database, migrations, backends; policy 0 while a reload is refused (degraded)",
      labelNames: ['check'],
      registers: [registry],
      async collect() {
        const checks = await readiness().catch(() => ({ database: false, migrations: false, backends: false, policy: false }));
        this.reset();
        for (const [check, ok] of Object.entries(checks)) this.set({ check }, ok ? 1 : 0);
      },
    });
  }
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
  /** An outbox gauge: one kind's undelivered rows, by destination and status. */
  const undelivered = (name: string, help: string, kind: string, label: string) =>
    new Gauge({
      name,
      help,
      labelNames: [label, 'status'],
      registers: [registry],
      async collect() {
        const rows = await db
          .select({ destination: outbox.destination, status: outbox.status, n: count() })
          .from(outbox)
          .where(and(inArray(outbox.status, ['pending', 'failed']), eq(outbox.kind, kind)))
          .groupBy(outbox.destination, outbox.status);
        this.reset();
        for (const row of rows) this.set({ [label]: row.destination, status: row.status }, Number(row.n));
      },
    });
  undelivered('tasklease_notifications_undelivered', "Notifications in the outbox not yet delivered, by destination and status ('failed' gave up fast retries: the alerting one)", OUTBOX_KINDS.approvalRequested, 'destination');
  // Security events (SSF, src/oauth/ssf/), by the receiver's client_id (never its endpoint URL).
  const securityEventsDelivered = new Counter({ name: 'tasklease_security_events_delivered_total', help: 'Security events (SETs) delivered, by receiver (pushed and accepted, or acknowledged by a poll)', labelNames: ['receiver'], registers: [registry] });
  const securityEventFailures = new Counter({
    name: 'tasklease_security_event_failures_total',
    help: 'Security event pushes that failed, and SETs a receiver reported it could not process, by receiver',
    labelNames: ['receiver'],
    registers: [registry],
  });
  undelivered('tasklease_security_events_undelivered', "Security events not yet delivered (or, for a poll receiver, not yet acknowledged), by receiver and status ('failed' gave up fast retries: the alerting one)", OUTBOX_KINDS.securityEvent, 'receiver');
  const policyReloadFailures = new Counter({
    name: 'tasklease_policy_reload_failures_total',
    help: 'Policy reloads refused (the set in force stayed): SIGHUP or a changed file with policies that do not load',
    registers: [registry],
  });
  return { registry, issued, denied, revocations, awsRevocationCutoffs, agentIssued, agentDenied, notificationsDelivered, notificationFailures, securityEventsDelivered, securityEventFailures, policyReloadFailures };
}
export type Metrics = ReturnType<typeof createMetrics>;
