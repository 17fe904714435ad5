import { and, eq, gt, lte, sql } from 'drizzle-orm';
import { appendAudit } from '../audit/append.js';
import type { Db } from '../db/client.js';
import { awsRevocationCutoffs, awsRevocations } from '../db/schema.js';
import { ROLE_WIDE, type Cutoff, type PlannedCutoff, type RevocationEntry } from './aws-revocation.js';

/** What the aws-sts backend keeps in PostgreSQL: the entries and cut-offs its deny policies are rendered from. */
export interface AwsRevocationStore {
  /** Records a revoked session; resolves once committed. Recording it twice changes nothing. */
  add(roleArn: string, entry: RevocationEntry): Promise<void>;
  /** The role's entries and cut-offs that have not expired. */
  live(roleArn: string, now: Date): Promise<{ entries: RevocationEntry[]; cutoffs: Cutoff[] }>;
  /** Records cut-offs (replacing an agent's earlier one) with an audit event each, in one transaction. */
  addCutoffs(roleArn: string, backend: string, cutoffs: PlannedCutoff[], now: Date): Promise<void>;
  /** Deletes what has expired. */
  prune(now: Date): Promise<void>;
  /**
   * Records the sessions of these roles' leases that ended early and still
   * live at AWS (an earlier version kept their entries only in IAM, which is
   * no longer read). Recording one twice changes nothing.
   */
  adoptLeases(backend: string, roles: { role: string; roleArn: string }[], now: Date): Promise<void>;
}

export function createAwsRevocationStore(db: Db): AwsRevocationStore {
  return {
    async add(roleArn, entry) {
      await db
        .insert(awsRevocations)
        .values({ roleArn, sourceIdentity: entry.sourceIdentity, agent: entry.agent, expiresAt: entry.expiresAt, createdAt: entry.createdAt })
        .onConflictDoNothing();
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
      for (const { role, roleArn } of roles) {
        await db.execute(sql`insert into aws_revocations (role_arn, source_identity, agent, expires_at, created_at)
          select ${roleArn}, 'tl-' || id, issuer || '/' || subject, backend_expires_at, coalesce(revoke_requested_at, ended_at, ${now.toISOString()}::timestamptz)
          from leases
          where role = ${role} and backend = ${backend} and revocable and status <> 'active' and backend_expires_at > ${now.toISOString()}::timestamptz
          on conflict do nothing`);
      }
    },

    async prune(now) {
      await db.delete(awsRevocations).where(lte(awsRevocations.expiresAt, now));
      await db.delete(awsRevocationCutoffs).where(lte(awsRevocationCutoffs.expiresAt, now));
    },
  };
}
