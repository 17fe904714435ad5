import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { CheckpointResult } from '../../audit/checkpoint.js';
import { listAudit } from '../../audit/query.js';
import type { Db } from '../../db/client.js';
import { LEASE_STATUSES } from '../../db/schema.js';
import { MAX_SUBJECT_LENGTH } from '../../identity/identity-text.js';
import { AppError } from '../../errors.js';
import { UUID_RE } from '../../ids.js';
import type { LeaseService } from '../../leases/service.js';
import { adminLeaseView } from '../../leases/view.js';
import { requireAdmin } from '../auth.js';
import { callerOf, type AppEnv } from '../env.js';
import { AdminLeaseSchema, bearer, commonErrors, json, jsonBody, IdParams, NameParam, safeText, SubjectSchema, TaskIdSchema, uuidOr404 } from '../schemas.js';

const Limit = z.coerce.number().int().min(1).max(500).default(100);

const ListLeasesQuery = z.object({
  status: z.enum(LEASE_STATUSES).optional(),
  task: TaskIdSchema.optional(),
  subject: SubjectSchema.optional(),
  role: NameParam.optional(),
  backend: NameParam.optional(),
  agent: NameParam.optional(),
  cursor: z.string().regex(UUID_RE).optional(),
  limit: Limit,
});

const Reason = safeText(500);

const RevocationSchema = z
  .strictObject({
    task: TaskIdSchema.optional(),
    subject: SubjectSchema.optional(),
    role: NameParam.optional(),
    agent: NameParam.optional(),
    issued_before: z.iso.datetime({ offset: true }).optional(),
    reason: Reason,
  })
  .refine((r) => r.task || r.subject || r.role || r.agent || r.issued_before, 'name at least one of task, subject, role, agent, issued_before')
  .openapi('BulkRevocation');

const AuditQuery = z.object({
  // `issuer/subject`: an issuer name (at most 63) and a subject.
  actor: safeText(64 + MAX_SUBJECT_LENGTH).optional(),
  action: safeText(64).optional(),
  target: safeText(600).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  after: z.coerce.number().int().min(0).optional(),
  limit: Limit,
});

const AuditEventSchema = z
  .object({
    seq: z.number().int(),
    at: z.string(),
    actor: z.string(),
    action: z.string(),
    target: z.string(),
    decision: z.enum(['allow', 'deny', 'info']),
    reason: z.string().nullable(),
    details: z.record(z.string(), z.unknown()),
    request_id: z.string().nullable(),
    hash: z.string(),
  })
  .openapi('AuditEvent');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/leases',
  tags: ['admin'],
  summary: 'List leases, newest first',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: { query: ListLeasesQuery },
  responses: { 200: json(z.object({ items: z.array(AdminLeaseSchema), next_cursor: z.string().nullable() }), 'A page'), ...commonErrors },
});

const revokeRoute = createRoute({
  method: 'post',
  path: '/v1/leases/{id}/revoke',
  tags: ['admin'],
  summary: 'Force-revoke one lease',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: {
    params: IdParams,
    ...jsonBody(z.strictObject({ reason: Reason })),
  },
  responses: { 202: json(z.object({ lease: AdminLeaseSchema }), 'Revocation under way (or already done)'), ...commonErrors },
});

const bulkRoute = createRoute({
  method: 'post',
  path: '/v1/revocations',
  tags: ['admin'],
  summary: 'Force-revoke every active lease matching all the given selectors',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: jsonBody(RevocationSchema),
  responses: { 202: json(z.object({ revoking: z.number().int() }), 'How many leases are now revoking'), ...commonErrors },
});

const auditRoute = createRoute({
  method: 'get',
  path: '/v1/audit',
  tags: ['admin'],
  summary: 'Read the audit trail, oldest first',
  security: bearer,
  middleware: [requireAdmin] as const,
  request: { query: AuditQuery },
  responses: { 200: json(z.object({ items: z.array(AuditEventSchema), next_cursor: z.string().nullable() }), 'A page'), ...commonErrors },
});

const checkpointRoute = createRoute({
  method: 'get',
  path: '/v1/audit/checkpoint',
  tags: ['admin'],
  summary: "A checkpoint of the audit chain's head, signed by the broker's key; keep it (and /.well-known/jwks.json) off the broker",
  security: bearer,
  middleware: [requireAdmin] as const,
  responses: {
    200: json(
      z.object({
        checkpoint: z.string().describe('A JWT (typ tasklease-audit-checkpoint+jwt): `tasklease audit verify --checkpoint FILE` checks the chain against it'),
        seq: z.number().int(),
        count: z.number().int(),
        head: z.string(),
        at: z.string(),
        kid: z.string(),
      }),
      'The signed checkpoint, and what it says',
    ),
    ...commonErrors,
  },
});

export function registerAdminRoutes(
  app: OpenAPIHono<AppEnv>,
  deps: { db: Db; leases: LeaseService; auditCheckpoint: () => Promise<CheckpointResult> },
) {
  const by = callerOf;

  app.openapi(listRoute, async (c) => {
    const { cursor, limit, ...filter } = c.req.valid('query');
    const page = await deps.leases.list(filter, cursor, limit);
    return c.json({ items: page.items.map(adminLeaseView), next_cursor: page.nextCursor }, 200);
  });

  app.openapi(revokeRoute, async (c) => {
    const id = uuidOr404('lease_not_found', 'lease')(c.req.valid('param').id);
    const lease = await deps.leases.adminRevoke(id, by(c), c.req.valid('json').reason);
    return c.json({ lease: adminLeaseView(lease) }, 202);
  });

  app.openapi(bulkRoute, async (c) => {
    const { reason, issued_before, ...rest } = c.req.valid('json');
    const filter = { ...rest, issued_before: issued_before ? new Date(issued_before) : undefined };
    return c.json({ revoking: await deps.leases.bulkRevoke(filter, by(c), reason) }, 202);
  });

  app.openapi(auditRoute, async (c) => {
    const { after, limit, since, ...filter } = c.req.valid('query');
    const page = await listAudit(deps.db, { ...filter, since: since ? new Date(since) : undefined }, after, limit);
    const items = page.items.map((e) => ({
      seq: e.seq,
      at: e.at.toISOString(),
      actor: e.actor,
      action: e.action,
      target: e.target,
      decision: e.decision,
      reason: e.reason,
      details: e.details,
      request_id: e.requestId,
      hash: e.hash,
    }));
    return c.json({ items, next_cursor: page.nextCursor }, 200);
  });

  app.openapi(checkpointRoute, async (c) => {
    const made = await deps.auditCheckpoint();
    if (!made.ok) {
      throw new AppError('audit_chain_broken', `the newest audit event (seq ${made.seq}) does not hold the chain's head: run tasklease audit verify`);
    }
    const { seq, count, hash, at, kid } = made.checkpoint;
    c.header('Cache-Control', 'no-store');
    return c.json({ checkpoint: made.token, seq, count, head: hash, at: at.toISOString(), kid }, 200);
  });
}
