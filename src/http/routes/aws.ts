import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { AppError } from '../../errors.js';
import type { Issuer } from '../../leases/issue.js';
import { requireAgent } from '../auth.js';
import { requestOf, type AppEnv } from '../env.js';
import { bearer, commonErrors, json, NameParam, TaskIdSchema } from '../schemas.js';

/** Where AWS_CONTAINER_CREDENTIALS_FULL_URI points: `http(s)://broker/v1/aws/container-credentials?task=T&role=R`. */
export const CONTAINER_CREDENTIALS_PATH = '/v1/aws/container-credentials';

const route = createRoute({
  method: 'get',
  path: CONTAINER_CREDENTIALS_PATH,
  tags: ['agent'],
  summary: 'AWS credentials in the container-credentials format, for unmodified AWS SDKs',
  description:
    'Set AWS_CONTAINER_CREDENTIALS_FULL_URI to this URL with ?task=&role=, and AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE) to the ' +
    'workload identity token: the SDK sends it raw in Authorization, gets a per-task credential and fetches a new one before it expires.',
  security: bearer,
  middleware: [requireAgent] as const,
  request: { query: z.object({ task: TaskIdSchema, role: NameParam, ttl_seconds: z.coerce.number().int().min(1).max(43_200).optional() }) },
  responses: {
    200: json(z.object({ AccessKeyId: z.string(), SecretAccessKey: z.string(), Token: z.string(), Expiration: z.string() }), 'Credentials'),
    ...commonErrors,
  },
});

export function registerAwsRoutes(app: OpenAPIHono<AppEnv>, issue: Issuer, isAwsRole: (role: string) => boolean) {
  app.openapi(route, async (c) => {
    const query = c.req.valid('query');
    // Refused before anything is minted, with the same code as any role the caller may not have.
    if (!isAwsRole(query.role)) throw new AppError('role_denied', 'this identity may not request this role for this task');
    const result = await issue({
      identity: c.get('identity'),
      taskId: query.task,
      roleName: query.role,
      ttlSeconds: query.ttl_seconds,
      ...requestOf(c),
      // An SDK refreshing credentials cannot wait for an approver: refuse rather than queue a request per fetch.
      noApprovalRequests: true,
    });
    if (result.kind === 'approval') throw new AppError('approval_required', 'this role needs approval');
    const cred = result.credentials;
    c.header('Cache-Control', 'no-store');
    return c.json(
      {
        AccessKeyId: String(cred.AccessKeyId),
        SecretAccessKey: String(cred.SecretAccessKey),
        Token: String(cred.SessionToken),
        // The lease's end, not AWS's: the SDK refreshes before the broker revokes.
        Expiration: result.lease.expiresAt.toISOString(),
      },
      200,
    );
  });
}
