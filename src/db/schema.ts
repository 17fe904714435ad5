import { sql } from 'drizzle-orm';
import { bigint, boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const TASK_STATUSES = ['open', 'completed'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const tasks = pgTable(
  'tasks',
  {
    /** Assigned by the broker (UUIDv7); rows from before external ids keep the id their orchestrator chose. */
    id: text('id').primaryKey(),
    /** The orchestrator's own reference for the task, unique among its tasks only: another orchestrator's tasks stay invisible. */
    externalId: text('external_id'),
    agentIssuer: text('agent_issuer'),
    agentSubject: text('agent_subject').notNull(),
    roles: text('roles').array().notNull(),
    status: text('status').$type<TaskStatus>().notNull(),
    outcome: text('outcome'),
    createdBy: text('created_by').notNull(),
    createdAt: ts('created_at').notNull(),
    deadline: ts('deadline').notNull(),
    completedAt: ts('completed_at'),
    /** Labels the orchestrator set (environment, team, ...), matched by approval rules and orchestrator scopes. */
    labels: jsonb('labels').$type<Record<string, string>>().notNull().default({}),
    /** Why the task exists (free text, audited) and who answers for it: both visible to policy (docs/policy.md). */
    purpose: text('purpose'),
    owner: text('owner'),
    /** How many credentials the task may be issued in all; null for no limit. */
    maxLeases: integer('max_leases'),
  },
  (t) => [index('tasks_agent_idx').on(t.agentSubject, t.status), uniqueIndex('tasks_external_id_idx').on(t.createdBy, t.externalId)],
);

export const LEASE_STATUSES = ['active', 'revoking', 'revoke_failed', 'revoked', 'expired'] as const;
export type LeaseStatus = (typeof LEASE_STATUSES)[number];

export const leases = pgTable(
  'leases',
  {
    id: uuid('id').primaryKey(),
    taskId: text('task_id')
      .notNull()
      .references(() => tasks.id),
    role: text('role').notNull(),
    backend: text('backend').notNull(),
    issuer: text('issuer').notNull(),
    subject: text('subject').notNull(),
    /** SHA-256 of the identity token the agent presented: attribution without keeping the token. */
    tokenSha256: text('token_sha256').notNull(),
    status: text('status').$type<LeaseStatus>().notNull(),
    reason: text('reason'),
    /** The backend's reference to the credential (JWT jti, STS session name, Vault lease id); never the secret. */
    credentialRef: text('credential_ref').notNull(),
    issuedAt: ts('issued_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    /** When the backend itself stops honouring the credential, whatever the broker does. */
    backendExpiresAt: ts('backend_expires_at').notNull(),
    /** False when the backend cannot cut the credential off early: it works until backend_expires_at. */
    revocable: boolean('revocable').notNull().default(true),
    revokeRequestedAt: ts('revoke_requested_at'),
    endedAt: ts('ended_at'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: ts('next_attempt_at'),
    lastError: text('last_error'),
    claimedBy: text('claimed_by'),
    claimUntil: ts('claim_until'),
    /** The registered agent the identity was when the lease was issued (null: none matched), and its owner then. */
    agent: text('agent'),
    agentOwner: text('agent_owner'),
    /** A delegated credential (RFC 8693 `actor_token`): the person (`issuer/subject`) the agent acts for. */
    onBehalfOf: text('on_behalf_of'),
  },
  (t) => [
    // The sweeper's two claim queries each walk one small partial index.
    index('leases_due_active_idx').on(t.expiresAt).where(sql`${t.status} = 'active'`),
    index('leases_due_revoking_idx').on(t.nextAttemptAt).where(sql`${t.status} in ('revoking', 'revoke_failed')`),
    // The lease listing (newest first, by a cursor on the id) reads one page of an index per filter: these end in
    // the id, so a page costs the same whatever the table holds; one task's leases are few, read whole and sorted.
    // test/leases/list-plans.test.ts holds every filter to an index. drizzle/0013 also adds MCV statistics on
    // (role, backend), which drizzle cannot declare: a role has one backend, so most pairs match nothing.
    index('leases_task_idx').on(t.taskId),
    index('leases_subject_idx').on(t.subject, t.id),
    index('leases_status_idx').on(t.status, t.id),
    index('leases_role_idx').on(t.role, t.id),
    index('leases_backend_idx').on(t.backend, t.id),
    // Also the agent's review (30 days of ids, which are time-ordered UUIDv7) and a suspension.
    index('leases_agent_idx').on(t.agent, t.id).where(sql`${t.agent} is not null`),
    // AWS adoption, before every deny-policy write: leases that ended while their session may still work.
    index('leases_ended_live_idx').on(t.backend, t.backendExpiresAt).where(sql`${t.revocable} and ${t.status} <> 'active'`),
  ],
);

export const APPROVAL_STATUSES = ['pending', 'approved', 'denied', 'expired', 'redeemed'] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];

export const approvals = pgTable(
  'approvals',
  {
    id: uuid('id').primaryKey(),
    taskId: text('task_id')
      .notNull()
      .references(() => tasks.id),
    role: text('role').notNull(),
    issuer: text('issuer').notNull(),
    subject: text('subject').notNull(),
    tokenSha256: text('token_sha256').notNull(),
    requestedTtl: integer('requested_ttl'),
    status: text('status').$type<ApprovalStatus>().notNull(),
    /** Why approval is needed (the role, or the label rule that matched). */
    requiredBy: text('required_by').notNull(),
    decidedBy: text('decided_by'),
    decisionReason: text('decision_reason'),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    decidedAt: ts('decided_at'),
    leaseId: uuid('lease_id'),
  },
  (t) => [
    index('approvals_pending_idx').on(t.expiresAt).where(sql`${t.status} in ('pending', 'approved')`),
    index('approvals_role_idx').on(t.role, t.status, t.id),
    // Renewal reads the approval a lease was redeemed from (its approved TTL caps the lease).
    index('approvals_lease_idx').on(t.leaseId).where(sql`${t.leaseId} is not null`),
  ],
);

export const auditEvents = pgTable(
  'audit_events',
  {
    seq: bigint('seq', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    at: ts('at').notNull(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    target: text('target').notNull(),
    decision: text('decision').$type<'allow' | 'deny' | 'info'>().notNull(),
    reason: text('reason'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    requestId: text('request_id'),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
  },
  (t) => [
    index('audit_target_idx').on(t.target, t.seq),
    index('audit_actor_idx').on(t.actor, t.seq),
    index('audit_action_idx').on(t.action, t.seq),
  ],
);

/**
 * The head of the audit chain, one row. Appending takes it FOR UPDATE, which
 * both orders appends and, in one statement, reads the newest head (a row
 * locked after waiting is re-read at its latest version).
 */
export const auditHead = pgTable('audit_head', {
  id: integer('id').primaryKey(),
  hash: text('hash').notNull(),
});

/**
 * AWS sessions revoked early, per IAM role: the source of truth for the role's
 * deny policy, which is rendered whole from these rows and written (IAM is
 * never read back, so its eventual consistency cannot lose an entry). A row
 * is inserted, and committed, before the policy write that carries it; it is
 * useless once AWS has ended the session (`expires_at`) and pruned then.
 */
export const awsRevocations = pgTable(
  'aws_revocations',
  {
    roleArn: text('role_arn').notNull(),
    /** The session's SourceIdentity (`tl-<lease id>`), which the Deny names. */
    sourceIdentity: text('source_identity').notNull(),
    /** The agent (`issuer/subject`) the session was issued to: its share of the policy is bounded. */
    agent: text('agent').notNull(),
    expiresAt: ts('expires_at').notNull(),
    createdAt: ts('created_at').notNull(),
    /**
     * The session may lack the transitive agent tag (issued before this role's
     * `aws_tagged_since`): only a role-wide cut-off may replace its entry. Rows
     * from before the column existed are such rows; the store always sets it.
     */
    untagged: boolean('untagged').notNull().default(true),
  },
  (t) => [primaryKey({ columns: [t.roleArn, t.sourceIdentity] }), index('aws_revocations_role_idx').on(t.roleArn, t.expiresAt)],
);

/**
 * Since when every session the broker issues for a role carries the agent tag
 * as a transitive tag (and a session policy bound to its lease's end): the
 * first AssumeRole of this version for the role. A lease issued before it
 * may have a session without the tag.
 */
export const awsTaggedSince = pgTable('aws_tagged_since', {
  roleArn: text('role_arn').primaryKey(),
  since: ts('since').notNull(),
});

/**
 * Cut-offs that replaced entries when a role's deny policy was full: every
 * session of one agent (or of the role, agent '*') issued before `cutoff_at`
 * is denied, until `expires_at`, when all of them have ended at AWS.
 */
export const awsRevocationCutoffs = pgTable(
  'aws_revocation_cutoffs',
  {
    roleArn: text('role_arn').notNull(),
    /** `issuer/subject`, or '*' for every session of the role. */
    agent: text('agent').notNull(),
    cutoffAt: ts('cutoff_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.roleArn, t.agent] })],
);

/**
 * Agents registered through the API (those in the config file live there).
 * `definition` is the AgentSchema document (match, owner, purpose, ceiling,
 * labels) as the admin sent it.
 */
export const agents = pgTable('agents', {
  name: text('name').primaryKey(),
  definition: jsonb('definition').$type<Record<string, unknown>>().notNull(),
  createdBy: text('created_by').notNull(),
  createdAt: ts('created_at').notNull(),
});

/**
 * Suspensions, current and past: of a registered agent (`agent`), or of the
 * identities an identity rule matches (`rule`). One is in force until
 * `resumed_at` is set; at most one per agent at a time.
 */
export const agentSuspensions = pgTable(
  'agent_suspensions',
  {
    id: uuid('id').primaryKey(),
    agent: text('agent'),
    rule: jsonb('rule').$type<{ issuer: string; subject?: string; subject_pattern?: string }>(),
    reason: text('reason').notNull(),
    suspendedBy: text('suspended_by').notNull(),
    /** An admin suspended it (or joined an owner's suspension): only an admin may resume it. */
    suspendedByAdmin: boolean('suspended_by_admin').notNull().default(false),
    suspendedAt: ts('suspended_at').notNull(),
    /** How many active leases the suspension revoked. */
    revoked: integer('revoked').notNull().default(0),
    resumedBy: text('resumed_by'),
    resumedAt: ts('resumed_at'),
    resumeReason: text('resume_reason'),
  },
  (t) => [
    uniqueIndex('agent_suspensions_current_idx').on(t.agent).where(sql`${t.resumedAt} is null and ${t.agent} is not null`),
    index('agent_suspensions_agent_idx').on(t.agent, t.suspendedAt),
    index('agent_suspensions_in_force_idx').on(t.suspendedAt).where(sql`${t.resumedAt} is null`),
  ],
);

/**
 * One row: the registry's generation, moved by every change to agents and
 * suspensions in the transaction that makes it. The commit that records a
 * lease reads it FOR SHARE and compares it with the generation its decision
 * was made on (agents/registry.ts), so a change and a lease are ordered.
 */
export const registryState = pgTable('registry_state', {
  id: integer('id').primaryKey(),
  generation: bigint('generation', { mode: 'number' }).notNull(),
});

export const OUTBOX_STATUSES = ['pending', 'delivered', 'failed'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];
/** What an outbox row carries: an approval request for a webhook (src/notify/), or a security event for an SSF receiver (src/oauth/ssf/). */
export const OUTBOX_KINDS = { approvalRequested: 'approval.requested', securityEvent: 'security_event' } as const;

/**
 * Notifications and security events waiting to leave (DESIGN.md promise 9):
 * one row per message and destination, written in the transaction of the
 * change it reports and delivered at least once by src/notify/delivery.ts (or
 * handed to an SSF receiver's poll). `payload` holds the facts only (no
 * secret, no token, no destination URL): the body is rendered and signed at
 * delivery from the destination's current config. `failed` rows gave up
 * their fast retries and are retried slowly, like revoke_failed leases.
 */
export const outbox = pgTable(
  'outbox',
  {
    id: uuid('id').primaryKey(),
    kind: text('kind').notNull(),
    /** The webhook's name in the config (`notifications.webhooks[].name`) or the SSF receiver's client_id, never a URL. */
    destination: text('destination').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    status: text('status').$type<OutboxStatus>().notNull().default('pending'),
    createdAt: ts('created_at').notNull(),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: ts('next_attempt_at').notNull(),
    deliveredAt: ts('delivered_at'),
    lastError: text('last_error'),
    claimedBy: text('claimed_by'),
    claimUntil: ts('claim_until'),
  },
  (t) => [
    // The delivery worker's claim walks this small partial index; delivered rows leave it.
    index('outbox_due_idx').on(t.nextAttemptAt).where(sql`${t.status} in ('pending', 'failed')`),
  ],
);

/**
 * Console sessions (src/console/sessions.ts). The id is the SHA-256 of the
 * session token the cookie carries: the token itself is never stored. A row
 * gone (logout, pruning) or revoked ends the session on every replica.
 */
export const consoleSessions = pgTable(
  'console_sessions',
  {
    id: text('id').primaryKey(),
    issuer: text('issuer').notNull(),
    subject: text('subject').notNull(),
    actor: text('actor').notNull(),
    /** The ID token's claims at login (OIDC login; empty for the dev login), so claim rules match as they did then. */
    claims: jsonb('claims').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: ts('created_at').notNull(),
    /** The person's last action; an idle session ends idle_timeout after it. */
    lastSeenAt: ts('last_seen_at').notNull(),
    /** The absolute end: created_at + absolute_timeout. */
    expiresAt: ts('expires_at').notNull(),
    revokedAt: ts('revoked_at'),
  },
  (t) => [index('console_sessions_expires_idx').on(t.expiresAt), index('console_sessions_actor_idx').on(t.actor)],
);

/**
 * OIDC logins under way (src/console/oidc.ts): the id is the SHA-256 of the
 * random token in the browser's short-lived login cookie. The state, nonce
 * and PKCE verifier are derived from that token, never stored; the row makes
 * the login single-use (the callback deletes it) and bounds its life.
 */
export const consoleLogins = pgTable(
  'console_logins',
  {
    id: text('id').primaryKey(),
    createdAt: ts('created_at').notNull(),
    expiresAt: ts('expires_at').notNull(),
  },
  (t) => [index('console_logins_expires_idx').on(t.expiresAt)],
);

/**
 * DPoP proofs seen (RFC 9449 section 11.1), shared by every replica: the id is the SHA-256 of the key's
 * thumbprint and the proof's `jti`. A proof whose id is already here is a replay. Rows are kept until the
 * proof could no longer be accepted (its `iat` past the window), then deleted by housekeeping.
 */
export const dpopProofs = pgTable(
  'dpop_proofs',
  {
    id: text('id').primaryKey(),
    expiresAt: ts('expires_at').notNull(),
  },
  (t) => [index('dpop_proofs_expires_idx').on(t.expiresAt)],
);

export const schema = { tasks, leases, approvals, auditEvents, auditHead, awsRevocations, awsRevocationCutoffs, awsTaggedSince, agents, agentSuspensions, registryState, outbox, consoleSessions, consoleLogins, dpopProofs };
export type Task = typeof tasks.$inferSelect;
export type Lease = typeof leases.$inferSelect;
export type AuditEvent = typeof auditEvents.$inferSelect;
export type Approval = typeof approvals.$inferSelect;
export type AgentSuspension = typeof agentSuspensions.$inferSelect;
export type OutboxRow = typeof outbox.$inferSelect;
export type ConsoleSession = typeof consoleSessions.$inferSelect;
