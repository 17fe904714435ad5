import { z } from '@hono/zod-openapi';
import { LEASE_STATUSES, type Approval, type Lease, type Task } from '../db/schema.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const isoTime = (d: Date) => d.toISOString();

/**
 * Who is shown a lease column in the API: `holder`, the lease's holder and its task's orchestrator (and admins);
 * `admin`, admins only. A column marked `never` in the table is shown to nobody.
 */
type Audience = 'holder' | 'admin';

/** A column shown as `field`, typed by `schema`; `read` turns the row's value into it (by default, as it is). */
interface Shown<A extends Audience, F extends string, S extends z.ZodType, V> {
  audience: A;
  field: F;
  schema: S;
  read: (value: V) => z.output<S>;
}

function shown<A extends Audience>(audience: A) {
  // NoInfer: V comes from `read` alone (or is the schema's type), never from the table's expected type.
  return <F extends string, S extends z.ZodType, V = z.output<S>>(field: F, schema: S, read?: (value: V) => z.output<S>): Shown<A, F, S, NoInfer<V>> => ({
    audience,
    field,
    schema,
    read: read ?? ((value: V) => value as z.output<S>),
  });
}
const holder = shown('holder');
const admin = shown('admin');

/** Every column of the lease table must be decided here: shown (to whom, as what) or never. */
export type LeaseColumnDecisions = { [K in keyof Lease]: 'never' | { audience: Audience; field: string; schema: z.ZodType; read: (value: Lease[K]) => unknown } };

/**
 * The lease in the API, one line per column of the drizzle table (src/db/schema.ts), in its order: the views
 * (`leaseView`, `adminLeaseView`) and their zod schemas (`LeaseSchema`, `AdminLeaseSchema` in
 * src/http/schemas.ts, hence the OpenAPI document and the client's types) are all built from it. A column added
 * to the table fails to compile until it is decided here; a shown column's type must match its schema.
 * test/leases/view.test.ts holds the `never` columns out of every view and the holder's fields inside the admin's.
 */
export const LEASE_COLUMNS = {
  id: holder('id', z.string().uuid()),
  taskId: holder('task', z.string()),
  role: holder('role', z.string()),
  backend: holder('backend', z.string()),
  issuer: holder('issuer', z.string()),
  subject: holder('subject', z.string()),
  /** The identity token's hash, for attribution in the broker's own records only. */
  tokenSha256: 'never',
  status: holder('status', z.enum(LEASE_STATUSES)),
  reason: holder('reason', z.string().nullable()),
  /** A reference (JWT jti, STS session name, Vault lease id) the holder needs to match its credential; never the secret. */
  credentialRef: holder('credential_ref', z.string()),
  issuedAt: holder('issued_at', z.string(), isoTime),
  expiresAt: holder('expires_at', z.string(), isoTime),
  backendExpiresAt: holder('backend_expires_at', z.string(), isoTime),
  /** False: revoking ends the lease, but the credential itself works until backend_expires_at. */
  revocable: holder('revocable', z.boolean()),
  revokeRequestedAt: holder('revoke_requested_at', z.string().nullable(), iso),
  endedAt: holder('ended_at', z.string().nullable(), iso),
  // How a revocation is going is for operators: `last_error` is the backend's own wording (a Vault path, a
  // database host), not the agent's business.
  attempts: admin('revoke_attempts', z.number().int()),
  nextAttemptAt: admin('next_attempt_at', z.string().nullable(), iso),
  lastError: admin('last_error', z.string().nullable()),
  /** Which sweeper holds the lease, and until when: its internal bookkeeping. */
  claimedBy: 'never',
  claimUntil: 'never',
  agent: holder('agent', z.string().nullable().openapi({ description: 'The registered agent the lease was issued to (null: no agent matched)' })),
  agentOwner: holder('agent_owner', z.string().nullable().openapi({ description: "The agent's owner when the lease was issued" })),
  onBehalfOf: holder('on_behalf_of', z.string().nullable().openapi({ description: 'A delegated credential: the person (issuer/subject) the agent acts for' })),
} satisfies LeaseColumnDecisions;

type Columns = typeof LEASE_COLUMNS;
type ShownTo<A extends Audience> = {
  [K in keyof Columns as Columns[K] extends { audience: A; field: infer F extends string } ? F : never]: Columns[K] extends { schema: infer S extends z.ZodType } ? S : never;
};
type Output<Shape> = { [F in keyof Shape]: Shape[F] extends z.ZodType ? z.output<Shape[F]> : never };

/** The columns one audience is shown, in the table's order. */
type Reading = { column: keyof Lease; field: string; schema: z.ZodType; read: (value: unknown) => unknown };
function shownTo(audience: Audience): Reading[] {
  return Object.entries(LEASE_COLUMNS).flatMap(([column, decision]) =>
    decision !== 'never' && decision.audience === audience ? [{ column: column as keyof Lease, field: decision.field, schema: decision.schema, read: decision.read as Reading['read'] }] : [],
  );
}
const HOLDER = shownTo('holder');
const ADMIN = shownTo('admin');

const shape = <A extends Audience>(readings: Reading[]) => Object.fromEntries(readings.map((r) => [r.field, r.schema])) as ShownTo<A>;
/** The fields of `LeaseSchema`, which src/http/schemas.ts names for the OpenAPI document. */
export const LEASE_SHAPE = shape<'holder'>(HOLDER);
/** The fields `AdminLeaseSchema` adds to `LeaseSchema`. */
export const ADMIN_LEASE_SHAPE = shape<'admin'>(ADMIN);

export type LeaseView = Output<ShownTo<'holder'>>;
export type AdminLeaseView = LeaseView & Output<ShownTo<'admin'>>;

function put(view: Record<string, unknown>, lease: Lease, readings: Reading[]) {
  for (const r of readings) view[r.field] = r.read(lease[r.column]);
  return view;
}

/** A lease as its holder (and its task's orchestrator) sees it: references and state, never secret material. */
export function leaseView(lease: Lease): LeaseView {
  return put({}, lease, HOLDER) as LeaseView;
}

/** A lease as an admin sees it: also how its revocation is going. */
export function adminLeaseView(lease: Lease): AdminLeaseView {
  return put(put({}, lease, HOLDER), lease, ADMIN) as AdminLeaseView;
}

export function taskView(task: Task) {
  return {
    id: task.id,
    external_id: task.externalId,
    agent: { issuer: task.agentIssuer, subject: task.agentSubject },
    roles: task.roles,
    status: task.status,
    outcome: task.outcome,
    created_by: task.createdBy,
    created_at: task.createdAt.toISOString(),
    deadline: task.deadline.toISOString(),
    completed_at: iso(task.completedAt),
    labels: task.labels,
    max_leases: task.maxLeases,
    purpose: task.purpose,
    owner: task.owner,
  };
}
export type TaskView = ReturnType<typeof taskView>;

export function approvalView(a: Approval) {
  return {
    id: a.id,
    task: a.taskId,
    role: a.role,
    requester: { issuer: a.issuer, subject: a.subject },
    status: a.status,
    required_by: a.requiredBy,
    requested_ttl_seconds: a.requestedTtl,
    decided_by: a.decidedBy,
    decision_reason: a.decisionReason,
    created_at: a.createdAt.toISOString(),
    expires_at: a.expiresAt.toISOString(),
    decided_at: iso(a.decidedAt),
    lease: a.leaseId,
  };
}
