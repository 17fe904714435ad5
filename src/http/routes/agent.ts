import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { AppError } from '../../errors.js';
import { UUID_RE } from '../../ids.js';
import type { Issuer } from '../../leases/issue.js';
import { DpopError, type DpopVerifier } from '../../oauth/dpop.js';
import type { Renewer } from '../../leases/renew.js';
import type { LeaseService } from '../../leases/service.js';
import { adminLeaseView, approvalView, leaseView } from '../../leases/view.js';
import { requireAgent } from '../auth.js';
import { requestOf, type AppEnv } from '../env.js';
import { AdminLeaseSchema, ApprovalSchema, bearer, commonErrors, IdParams, json, jsonBody, LeaseSchema, NameParam, TaskIdSchema, uuidOr404 } from '../schemas.js';

const CredentialRequestSchema = z
  .strictObject({
    task: TaskIdSchema,
    role: NameParam,
    ttl_seconds: z.number().int().min(1).max(7 * 86400).optional(),
    /** For a gated role: the approved request to redeem (once). */
    approval: z.string().regex(UUID_RE).optional(),
  })
  .openapi('CredentialRequest');

const LeaseIdParams = IdParams;

const issueRoute = createRoute({
  method: 'post',
  path: '/v1/credentials',
  tags: ['agent'],
  summary: 'Get a credential for one task and role',
  security: bearer,
  middleware: [requireAgent] as const,
  request: jsonBody(CredentialRequestSchema),
  responses: {
    201: json(z.object({ lease: LeaseSchema, credentials: z.record(z.string(), z.unknown()) }), 'Issued; the lease is committed'),
    202: json(z.object({ approval: ApprovalSchema }), 'The role needs approval: poll GET /v1/approvals/{id}, then repeat with `approval`'),
    429: commonErrors[404],
    ...commonErrors,
    409: commonErrors[404],
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/leases/{id}',
  tags: ['agent', 'admin'],
  summary: "One lease: the agent's own, or any for an admin (who also sees how its revocation is going)",
  security: bearer,
  request: { params: LeaseIdParams },
  responses: { 200: json(z.object({ lease: z.union([AdminLeaseSchema, LeaseSchema]) }), 'The lease'), ...commonErrors },
});

const releaseRoute = createRoute({
  method: 'delete',
  path: '/v1/leases/{id}',
  tags: ['agent'],
  summary: 'Release (revoke) an own lease early',
  security: bearer,
  middleware: [requireAgent] as const,
  request: { params: LeaseIdParams },
  responses: { 202: json(z.object({ lease: LeaseSchema }), 'Revocation under way (or already done)'), ...commonErrors },
});

const leaseId = uuidOr404('lease_not_found', 'lease');

const renewRoute = createRoute({
  method: 'post',
  path: '/v1/leases/{id}/renew',
  tags: ['agent'],
  summary: "Extend an own active lease, within the role's max_ttl and the task's deadline",
  security: bearer,
  middleware: [requireAgent] as const,
  request: {
    params: LeaseIdParams,
    body: { content: { 'application/json': { schema: z.strictObject({ increment_seconds: z.number().int().min(1).max(43_200).optional() }) } }, required: false },
  },
  responses: { 200: json(z.object({ lease: LeaseSchema }), 'Renewed'), ...commonErrors, 409: commonErrors[404] },
});

export function registerAgentRoutes(app: OpenAPIHono<AppEnv>, deps: { issue: Issuer; leases: LeaseService; renew: Renewer; dpop: { verifier: Pick<DpopVerifier, 'verify'>; publicUrl: string } }) {
  /** The key a DPoP proof on this request was signed with (RFC 9449), if it carries one: its credential is bound to it. */
  async function dpopKey(proof: string | undefined): Promise<string | undefined> {
    if (proof === undefined) return undefined;
    try {
      return await deps.dpop.verifier.verify(proof, { method: 'POST', url: `${deps.dpop.publicUrl}/v1/credentials` });
    } catch (err) {
      if (err instanceof DpopError) throw new AppError('dpop_invalid', err.message);
      throw err;
    }
  }

  app.openapi(renewRoute, async (c) => {
    const id = leaseId(c.req.valid('param').id);
    const lease = await deps.renew(c.get('identity'), id, c.req.valid('json').increment_seconds, requestOf(c));
    return c.json({ lease: leaseView(lease) }, 200);
  });

  app.openapi(issueRoute, async (c) => {
    const body = c.req.valid('json');
    const dpopJkt = await dpopKey(c.req.header('dpop'));
    const result = await deps.issue({
      ...(dpopJkt !== undefined ? { dpopJkt } : {}),
      identity: c.get('identity'),
      taskId: body.task,
      roleName: body.role,
      ttlSeconds: body.ttl_seconds,
      approvalId: body.approval,
      ...requestOf(c),
    });
    c.header('Cache-Control', 'no-store');
    if (result.kind === 'approval') return c.json({ approval: approvalView(result.approval) }, 202);
    return c.json({ lease: leaseView(result.lease), credentials: result.credentials }, 201);
  });

  app.openapi(getRoute, async (c) => {
    const id = leaseId(c.req.valid('param').id);
    const principal = c.get('principal');
    if (principal.admin) {
      const lease = await deps.leases.get(id);
      if (!lease) throw new AppError('lease_not_found', 'no such lease');
      return c.json({ lease: adminLeaseView(lease) }, 200);
    }
    if (!principal.identity) throw new AppError('lease_not_found', 'no such lease');
    return c.json({ lease: leaseView(await deps.leases.getOwn(principal.identity, id)) }, 200);
  });

  app.openapi(releaseRoute, async (c) => {
    const id = leaseId(c.req.valid('param').id);
    const lease = await deps.leases.release(c.get('identity'), id, {
      actor: c.get('principal').actor,
      ...requestOf(c),
    });
    return c.json({ lease: leaseView(lease) }, 202);
  });
}
