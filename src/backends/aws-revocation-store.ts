/**
 * What the aws-sts backend keeps in PostgreSQL: the entries and cut-offs each
 * role's deny policy is rendered from (IAM is written, never read).
 *
 * Invariants: (1) an entry's row is committed before the policy write that
 * carries it (`add` resolves after its commit, and only then does the
 * backend ask for a write, which reads the rows afresh), so whichever
 * replica writes next renders it; (2) adoption covers every lease of the
 * roles that ended (status not active) while its session still works at AWS
 * (`backend_expires_at` in the future), whoever ended it: an older replica
 * that kept the entry only in IAM, or this version before its write ran.
 * Both run in one indexed statement, idempotent (recording twice changes
 * nothing), before every policy write. (3) `untagged` is decided from the
 * lease's issue time against `aws_tagged_since`, the same way by `add` and by
 * adoption. Proved by test/backends/aws-revocation-store.test.ts (both
 * drivers; the row survives a failed IAM write and the next write carries
 * it; adoption of every ended status, and not of active leases or dead
 * sessions).
 */
import { and, eq, gt, lte, sql } from 'drizzle-orm';
import { appendAudit } from '../audit/append.js';
import type { Db } from '../db/client.js';
import { awsRevocationCutoffs, awsRevocations } from '../db/schema.js';
import { ROLE_WIDE, type Cutoff, type PlannedCutoff, type RevocationEntry } from './aws-revocation.js';

export interface AwsRevocationStore {
  /** Records a revoked session of a lease; resolves once committed. Recording it twice changes nothing. */
  add(roleArn: string, leaseId: string, entry: Omit<RevocationEntry, 'untagged'>): Promise<void>;
  /** The role's entries and cut-offs that have not expired. */
  live(roleArn: string, now: Date): Promise<{ entries: RevocationEntry[]; cutoffs: Cutoff[] }>;
  /** Records cut-offs (replacing an agent's earlier one) with an audit event each, in one transaction. */
  addCutoffs(roleArn: string, backend: string, cutoffs: PlannedCutoff[], now: Date): Promise<void>;
  /** Deletes what has expired. */
  prune(now: Date): Promise<void>;
  /**
   * Records the sessions of these roles' leases that ended and still live at
   * AWS (an earlier version, or an older replica, kept their entries only in
   * IAM). Recording one twice changes nothing.
   */
  adoptLeases(backend: string, roles: { role: string; roleArn: string }[], now: Date): Promise<void>;
  /** Notes that from `since` on, the role's sessions carry the transitive agent tag (the first time only). */
  markTagged(roleArn: string, since: Date): Promise<void>;
}

/** Whether a lease's session may lack the agent tag: issued before the role's aws_tagged_since, or with none recorded. */
const untaggedSql = (roleArn: string) =>
  sql`coalesce(l.issued_at < (select s.since from aws_tagged_since s where s.role_arn = ${roleArn}), true)`;

export function createAwsRevocationStore(db: Db): AwsRevocationStore {
  return {
    async add(roleArn, leaseId, entry) {
      // A lease not recorded (its commit failed, issue.ts revokes at once) was minted just now, by this version: tagged.
      await db.execute(sql`insert into aws_revocations (role_arn, source_identity, agent, expires_at, created_at, untagged)
        values (${roleArn}, ${entry.sourceIdentity}, ${entry.agent}, ${entry.expiresAt.toISOString()}::timestamptz, ${entry.createdAt.toISOString()}::timestamptz,
          coalesce((select ${untaggedSql(roleArn)} from leases l where l.id = ${leaseId}::uuid), false))
        on conflict do nothing`);
    },

    async live(roleArn, now) {
      const [entries, cutoffs] = await Promise.all([
        db.select().from(awsRevocations).where(and(eq(awsRevocations.roleArn, roleArn), gt(awsRevocations.expiresAt, now))),
        db.select().from(awsRevocationCutoffs).where(and(eq(awsRevocationCutoffs.roleArn, roleArn), gt(awsRevocationCutoffs.expiresAt, now))),
      ]);
      return { entries, cutoffs };
    },

    async addCutoffs(roleArn, backend, cutoffs, now) {
      if (cutoffs.length === 0) return;
      await db.transaction(async (tx) => {
        for (const c of cutoffs) {
          const values = { roleArn, agent: c.agent, cutoffAt: c.cutoffAt, expiresAt: c.expiresAt, createdAt: now };
          await tx
            .insert(awsRevocationCutoffs)
            .values(values)
            .onConflictDoUpdate({ target: [awsRevocationCutoffs.roleArn, awsRevocationCutoffs.agent], set: { cutoffAt: c.cutoffAt, expiresAt: c.expiresAt, createdAt: now } });
        }
        await appendAudit(
          tx,
          cutoffs.map((c) => ({
            at: now,
            actor: `system:${backend}`,
            action: 'aws.revocation_cutoff',
            target: `aws-role:${roleArn}`,
            decision: 'info' as const,
            reason: 'deny_policy_full',
            details: {
              // 'agent': only that agent's sessions issued before cutoff_at are denied; 'role': every session of the role.
              scope: c.agent === ROLE_WIDE ? 'role' : 'agent',
              agents: c.agents.slice(0, 20),
              agents_total: c.agents.length,
              entries_replaced: c.entries,
              cutoff_at: c.cutoffAt.toISOString(),
              until: c.expiresAt.toISOString(),
            },
          })),
        );
      });
    },

    async adoptLeases(backend, roles, now) {
      for (const roleArn of new Set(roles.map((r) => r.roleArn))) {
        const names = roles.filter((r) => r.roleArn === roleArn).map((r) => sql`${r.role}`);
        // One statement on leases_ended_live_idx: the ended leases whose sessions still live are few.
        await db.execute(sql`insert into aws_revocations (role_arn, source_identity, agent, expires_at, created_at, untagged)
          select ${roleArn}, 'tl-' || l.id, l.issuer || '/' || l.subject, l.backend_expires_at,
            coalesce(l.revoke_requested_at, l.ended_at, ${now.toISOString()}::timestamptz), ${untaggedSql(roleArn)}
          from leases l
          where l.revocable and l.status <> 'active' and l.backend_expires_at > ${now.toISOString()}::timestamptz
            and l.backend = ${backend} and l.role in (${sql.join(names, sql`, `)})
          on conflict do nothing`);
      }
    },

    async markTagged(roleArn, since) {
      await db.execute(sql`insert into aws_tagged_since (role_arn, since) values (${roleArn}, ${since.toISOString()}::timestamptz) on conflict do nothing`);
    },

    async prune(now) {
      await db.delete(awsRevocations).where(lte(awsRevocations.expiresAt, now));
      await db.delete(awsRevocationCutoffs).where(lte(awsRevocationCutoffs.expiresAt, now));
    },
  };
}
