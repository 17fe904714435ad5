import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { ApprovalService } from '../../approvals/service.js';
import { APPROVAL_STATUSES } from '../../db/schema.js';
import { UUID_RE } from '../../ids.js';
import { approvalView } from '../../leases/view.js';
import { requestOf, type AppEnv } from '../env.js';
import { ApprovalSchema, bearer, commonErrors, IdParams, json, jsonBody, safeText, uuidOr404 } from '../schemas.js';

const approvalId = uuidOr404('approval_not_found', 'approval');

const listRoute = createRoute({
  method: 'get',
  path: '/v1/approvals',
  tags: ['approver'],
  summary: 'Approval requests the caller may decide, newest first',
  security: bearer,
  request: {
    query: z.object({
      status: z.enum(APPROVAL_STATUSES).optional(),
      cursor: z.string().regex(UUID_RE).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(100),
    }),
  },
  responses: { 200: json(z.object({ items: z.array(ApprovalSchema), next_cursor: z.string().nullable() }), 'A page'), ...commonErrors },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/approvals/{id}',
  tags: ['agent', 'approver'],
  summary: 'One approval request: the requester polls it; approvers read it',
  security: bearer,
  request: { params: IdParams },
  responses: { 200: json(z.object({ approval: ApprovalSchema }), 'The request'), ...commonErrors },
});

const decideRoute = (verdict: 'approve' | 'deny') =>
  createRoute({
    method: 'post',
    path: `/v1/approvals/{id}/${verdict}`,
    tags: ['approver'],
    summary: verdict === 'approve' ? 'Approve a pending request' : 'Deny a pending request',
    security: bearer,
    request: { params: IdParams, ...jsonBody(z.strictObject({ reason: safeText(500) })) },
    responses: { 200: json(z.object({ approval: ApprovalSchema }), 'Decided'), ...commonErrors, 409: commonErrors[404] },
  });

export function registerApprovalRoutes(app: OpenAPIHono<AppEnv>, approvals: ApprovalService) {
  app.openapi(listRoute, async (c) => {
    const { status, cursor, limit } = c.req.valid('query');
    const page = await approvals.list(c.get('principal'), status, cursor, limit);
    return c.json({ items: page.items.map(approvalView), next_cursor: page.nextCursor }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const approval = await approvals.get(c.get('principal'), approvalId(c.req.valid('param').id));
    return c.json({ approval: approvalView(approval) }, 200);
  });

  for (const verdict of ['approve', 'deny'] as const) {
    app.openapi(decideRoute(verdict), async (c) => {
      const id = approvalId(c.req.valid('param').id);
      const approval = await approvals.decide(c.get('principal'), id, verdict, c.req.valid('json').reason, requestOf(c));
      return c.json({ approval: approvalView(approval) }, 200);
    });
  }
}
