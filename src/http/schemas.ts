import { z } from '@hono/zod-openapi';
import { AppError } from '../errors.js';
import { subjectProblem } from '../identity/identity-text.js';
import { UUID_RE } from '../ids.js';
import { ADMIN_LEASE_SHAPE, LEASE_SHAPE } from '../leases/view.js';

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    code: z.string().openapi({ description: 'Stable machine-readable error code' }),
    detail: z.string(),
    request_id: z.string().nullable(),
  })
  .openapi('Problem');

/** A lease as its holder sees it; its fields come from the one lease mapping, src/leases/view.ts. */
export const LeaseSchema = z.object(LEASE_SHAPE).openapi('Lease');

/** What an admin sees of a lease besides: how its revocation is going. */
export const AdminLeaseSchema = LeaseSchema.extend(ADMIN_LEASE_SHAPE).openapi('AdminLease');

export const TaskSchema = z
  .object({
    id: z.string().openapi({ description: 'Assigned by the broker (a UUIDv7)' }),
    external_id: z.string().nullable().openapi({ description: 'The opening orchestrator\'s own reference, if it sent one' }),
    agent: z.object({ issuer: z.string().nullable(), subject: z.string() }),
    roles: z.array(z.string()),
    status: z.enum(['open', 'completed']),
    outcome: z.string().nullable(),
    created_by: z.string(),
    created_at: z.string(),
    deadline: z.string(),
    completed_at: z.string().nullable(),
    labels: z.record(z.string(), z.string()),
    max_leases: z.number().int().nullable(),
    purpose: z.string().nullable().openapi({ description: 'Why the task exists, as the orchestrator said' }),
    owner: z.string().nullable().openapi({ description: 'The person or team accountable for the task' }),
  })
  .openapi('Task');

export const ApprovalSchema = z
  .object({
    id: z.string().uuid(),
    task: z.string(),
    role: z.string(),
    requester: z.object({ issuer: z.string(), subject: z.string() }),
    status: z.enum(['pending', 'approved', 'denied', 'expired', 'redeemed']),
    required_by: z.string(),
    requested_ttl_seconds: z.number().int().nullable(),
    decided_by: z.string().nullable(),
    decision_reason: z.string().nullable(),
    created_at: z.string(),
    expires_at: z.string(),
    decided_at: z.string().nullable(),
    /** The lease the approval was redeemed for. */
    lease: z.string().nullable(),
  })
  .openapi('Approval');

/**
 * Task ids in paths, and the external ids orchestrators choose: printable, no
 * whitespace or slashes, bounded. (Tasks opened before the broker assigned ids
 * keep the ids their orchestrators chose in this shape.)
 */
export const TaskIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/);
/** Role and issuer names as config allows them (a wider charset could never match one). */
export const NameParam = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);

const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/u;

/**
 * Free text from callers (subjects, reasons, outcomes, filters): bounded,
 * well-formed Unicode, no control characters. PostgreSQL refuses NUL in text
 * and lone surrogates in jsonb; refusing them here makes that a 400 for the
 * one request instead of a failed transaction.
 */
export const safeText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !CONTROL_CHARS.test(s) && s.isWellFormed(), 'must not contain control characters or malformed Unicode');

/**
 * A subject an identity can have: the verifier's own rule for `sub`
 * (identity/identity-text.ts), so a task is never bound to a subject that no
 * token could carry, or that the database would store as another one.
 */
export const SubjectSchema = z.string().superRefine((value, ctx) => {
  const problem = subjectProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const problem = (description: string) => ({ content: { 'application/problem+json': { schema: ProblemSchema } }, description });

/** The error responses every authenticated route can give. */
export const commonErrors = {
  400: problem('Malformed or invalid request'),
  401: problem('Missing or invalid bearer token'),
  403: problem('The caller may not do this'),
  404: problem('Not found, or not yours'),
  415: problem('Unsupported content type'),
  503: problem('A dependency is unavailable; retry'),
} as const;

export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { 'application/json': { schema } },
  description,
});

export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  body: { content: { 'application/json': { schema } }, required: true },
});

export const bearer = [{ bearer: [] }];

/** A path id that is not even a UUID names nothing: answered like any missing resource (404 with `code`). */
export function uuidOr404(code: 'lease_not_found' | 'approval_not_found', what: string) {
  return (id: string): string => {
    if (!UUID_RE.test(id)) throw new AppError(code, `no such ${what}`);
    return id;
  };
}

/** The `{id}` path parameter of lease and approval routes. */
export const IdParams = z.object({ id: z.string().max(64).openapi({ param: { name: 'id', in: 'path' } }) });
