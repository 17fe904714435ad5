import { signEs256 } from '../../backends/jwt.js';
import type { SigningKeyStore } from '../../backends/jwt-keys.js';
import type { Clock } from '../../clock.js';
import type { OAuthConfig, ResourceServerConfig } from '../../config/oauth.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Db } from '../../db/client.js';
import { outbox, OUTBOX_KINDS, type OutboxRow } from '../../db/schema.js';
import { newId } from '../../ids.js';
import { NEVER_RELEASED } from '../../policy/limits.js';
import type { EndedLease } from '../../sweeper/sweeper.js';

export const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
export const SET_TYPE = 'secevent+jwt';


/** What the transmitter and the poll both need: the database, the signing keys, the issuer and the config. */
export interface SsfDeps {
  db: Db;
  clock: Clock;
  keys: SigningKeyStore;
  issuer: string;
  config: OAuthConfig;
  log: Logger;
  metrics?: Pick<Metrics, 'securityEventsDelivered' | 'securityEventFailures'>;
}

/** What a row keeps of its SET: every claim but `iss`, `iat` and `jti`, which are the transmitter's and the row's. */
export interface StoredEvent {
  lease: string;
  role: string;
  set: { aud: string; txn: string; sub_id: { format: 'jwt_id'; iss: string; jti: string }; events: Record<string, unknown> };
}

/** CAEP's initiating_entity: who caused the end (an admin, the holder, a decision of the broker's, or time). */
function initiatingEntity(reason: string | null): 'admin' | 'user' | 'policy' | 'system' {
  if (reason === 'admin') return 'admin';
  if (reason === 'released' || reason === 'holder_revoked') return 'user';
  if (reason === null || reason === 'expired') return 'system';
  return 'policy';
}

const NEVER_HELD = new Set<string>(NEVER_RELEASED);

/**
 * The security events' outbox (SSF, RFC 8417, CAEP session-revoked): when a
 * jwt lease ends, one row per receiver whose audiences include the token's,
 * written in the sweeper's transaction that ends the lease (DESIGN.md promise
 * 9: a crash delays an event, never loses it; test/oauth/ssf.test.ts). A lease
 * whose token was never released (refused at commit) tells nobody anything.
 * Rows hold the event's facts: the token's `jti` and `iss`, never the token.
 */
export function createSecurityEventOutbox(deps: {
  clock: Clock;
  /** The `iss` of the broker's tokens and of its SETs. */
  issuer: string;
  receivers: ResourceServerConfig[];
  /** The `aud` of a lease's token; undefined when the lease is not a jwt one. */
  audienceOf: (lease: { role: string; backend: string }) => string | undefined;
  onAppended: () => void;
}) {
  const receivers = deps.receivers.filter((r) => r.security_events !== undefined);
  return {
    /** Appends the events for `ended` in `tx`; the number of rows written. */
    async append(tx: Db, ended: EndedLease[], now: Date): Promise<number> {
      if (receivers.length === 0) return 0;
      const rows: (typeof outbox.$inferInsert)[] = [];
      for (const lease of ended) {
        if (lease.reason !== null && NEVER_HELD.has(lease.reason)) continue;
        const aud = deps.audienceOf(lease);
        if (aud === undefined) continue;
        for (const receiver of receivers) {
          if (!receiver.audiences.includes(aud)) continue;
          const payload: StoredEvent = {
            lease: lease.id,
            role: lease.role,
            set: {
              aud: receiver.client_id,
              // One end per lease: the lease id names the cause, the same in every receiver's SET.
              txn: lease.id,
              sub_id: { format: 'jwt_id', iss: deps.issuer, jti: lease.id },
              events: {
                [SESSION_REVOKED]: {
                  event_timestamp: Math.floor(now.getTime() / 1000),
                  initiating_entity: initiatingEntity(lease.reason),
                  reason_admin: { en: lease.status === 'expired' ? 'expired' : (lease.reason ?? 'revoked') },
                },
              },
            },
          };
          rows.push({ id: newId(deps.clock), kind: OUTBOX_KINDS.securityEvent, destination: receiver.client_id, payload: payload as unknown as Record<string, unknown>, createdAt: now, nextAttemptAt: now });
        }
      }
      if (rows.length > 0) await tx.insert(outbox).values(rows);
      return rows.length;
    },
    /** The rows have committed: deliver them now. */
    appended: deps.onAppended,
  };
}
export type SecurityEventOutbox = ReturnType<typeof createSecurityEventOutbox>;

/**
 * The SET for one row, signed with the broker's current key (its JWKS is the
 * one relying parties already fetch): explicitly typed `secevent+jwt`, no
 * `sub` and no `exp` (SSF 1.0 section 4.1), `jti` the row's id (stable across
 * redeliveries, so receivers dedupe on it) and `iat` the time of the end.
 */
export async function signSecurityEvent(keys: SigningKeyStore, issuer: string, row: OutboxRow): Promise<string> {
  const { set } = row.payload as unknown as StoredEvent;
  const { kid, key } = await keys.signingKey();
  return signEs256(key, kid, { iss: issuer, iat: Math.floor(row.createdAt.getTime() / 1000), jti: row.id, ...set }, SET_TYPE);
}
