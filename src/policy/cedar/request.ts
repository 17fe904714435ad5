import type { Resolution } from '../../agents/registry.js';
import type { RoleConfig } from '../../config/schema.js';
import type { Task } from '../../db/schema.js';
import type { Identity } from '../../identity/types.js';
import type { Held } from '../limits.js';
import type { CedarRequest } from './engine.js';
import { T } from './schema.js';

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** A Cedar datetime, to the second. */
const datetime = (d: Date) => ({ __extn: { fn: 'datetime', arg: `${d.toISOString().slice(0, 19)}Z` } });

/** Claims that differ from one token of an identity to its next: not for policy, and they would make every token a new question. */
const PER_TOKEN = new Set(['iat', 'nbf', 'exp', 'jti']);

// Per object, computed once: a verified token's claims, a task and a registered agent are the same object
// from one request to the next while they are cached (identity/token-cache.ts, tasks/cache.ts, agents/registry.ts).
const tagsOf = new WeakMap<object, { tags: Record<string, string>; key: string }>();
const keyOf = new WeakMap<object, string>();

/** A claim as a tag: strings as they are, anything else as its JSON text; the per-token claims left out. */
function claimTags(claims: Record<string, unknown>) {
  let known = tagsOf.get(claims);
  if (!known) {
    const tags = Object.fromEntries(Object.entries(claims).flatMap(([k, v]) => (PER_TOKEN.has(k) ? [] : [[k, typeof v === 'string' ? v : JSON.stringify(v)]])));
    known = { tags, key: JSON.stringify(tags) };
    tagsOf.set(claims, known);
  }
  return known;
}

function cachedKey(of: object, make: () => string): string {
  let key = keyOf.get(of);
  if (key === undefined) keyOf.set(of, (key = make()));
  return key;
}

const minuteOf = (now: Date) => Math.floor(now.getTime() / 60_000);

/** The time as policy sees it: to the minute, with its weekday and hour. */
function timeOf(now: Date) {
  const minute = new Date(minuteOf(now) * 60_000);
  return { now: datetime(minute), weekday: WEEKDAYS[minute.getUTCDay()]!, hour: minute.getUTCHours() };
}

/** Every label of the roles held, as `key=value`. */
const labelsHeld = (held: Map<string, string> | undefined, labelsOf: CedarRequestInput['labelsOf']) => [
  ...new Set([...(held?.keys() ?? [])].flatMap((r) => Object.entries(labelsOf(r) ?? {}).map(([k, v]) => `${k}=${v}`))),
];

const heldKey = (held: Held | undefined) => (held ? `${[...held.task.keys()].sort().join(' ')}|${[...held.agent.keys()].sort().join(' ')}` : '');

/** Everything credentialRequest puts in the request, as one string: the engine's memo key. */
export function requestKey(input: CedarRequestInput): string {
  const { identity, agent, role, task } = input;
  const registered = agent?.kind === 'agent' ? agent.agent : undefined;
  return [
    identity.issuer,
    identity.subject,
    claimTags(identity.claims as Record<string, unknown>).key,
    // Matched on every claim, per-token ones too.
    input.matches.join(' '),
    registered ? cachedKey(registered, () => JSON.stringify([registered.name, registered.owner.name, registered.labels])) : '',
    role.name,
    input.backendType,
    cachedKey(task, () => JSON.stringify([task.id, task.purpose, task.owner, task.createdBy, task.createdAt.getTime(), task.deadline.getTime(), task.labels])),
    input.ttlSeconds,
    heldKey(input.held),
    input.onBehalfOf ?? '',
    minuteOf(input.now),
  ].join('\u0000');
}

export interface CedarRequestInput {
  identity: Identity;
  agent?: Resolution;
  role: RoleConfig;
  /** The role's backend's type (jwt, aws_sts, vault). */
  backendType: string;
  /** The ids of the role's allow rules the identity meets (policy/cedar/compile.ts), matched by the broker: Cedar has no regular expressions. */
  matches: string[];
  task: Task;
  ttlSeconds: number;
  /** The roles held now; absent, none (a caller that must know them passes them: policy/decide.ts). */
  held?: Held;
  /** A configured role's labels (a held role no longer configured has none). */
  labelsOf: (role: string) => Record<string, string> | undefined;
  /** A delegated request: the person it is for, `issuer/subject`. */
  onBehalfOf?: string;
  now: Date;
}

/** The Agent entity of an identity: its claims as tags, its registered agent's name, owner and labels. */
function agentEntity(identity: Identity, agent: Resolution | undefined, matches: string[]) {
  const registered = agent?.kind === 'agent' ? agent.agent : undefined;
  return {
    uid: { type: T.agent, id: `${identity.issuer}/${identity.subject}` },
    attrs: {
      issuer: identity.issuer,
      subject: identity.subject,
      ...(registered ? { agent: registered.name, owner: registered.owner.name } : {}),
      labels: Object.entries(registered?.labels ?? {}).map(([k, v]) => `${k}=${v}`),
      matches,
    },
    parents: [],
    tags: claimTags(identity.claims as Record<string, unknown>).tags,
  };
}

/** The Task entity (its uid is the task's id; a task being opened has its new id). */
function taskEntity(task: Pick<Task, 'id' | 'purpose' | 'owner' | 'createdBy' | 'createdAt' | 'deadline' | 'labels' | 'roles'>) {
  return {
    uid: { type: T.task, id: task.id },
    attrs: {
      purpose: task.purpose ?? '',
      owner: task.owner ?? '',
      created_by: task.createdBy,
      created_at: datetime(task.createdAt),
      deadline: datetime(task.deadline),
      roles: task.roles,
    },
    parents: [],
    tags: task.labels ?? {},
  };
}

const roleEntity = (role: RoleConfig, backendType: string) => ({ uid: { type: T.role, id: role.name }, attrs: { backend: role.backend, backend_type: backendType }, parents: [], tags: role.labels });
type Entity = { uid: { type: string; id: string }; attrs: Record<string, unknown>; parents: never[]; tags: Record<string, string> };

/** A request for `action` by `principal` on `resource`, with every entity it names. */
const asked = (action: string, principal: Entity, resource: Entity, context: Record<string, unknown>, others: Entity[] = []): CedarRequest => ({
  principal: principal.uid,
  action: { type: T.action, id: action },
  resource: resource.uid,
  context: context as CedarRequest['context'],
  entities: [principal, resource, ...others] as CedarRequest['entities'],
});

/**
 * The entities and context of one credential decision, as the schema
 * (policy/cedar/schema.ts) names them. The time is taken to the minute, so
 * that the same request within a minute is the same question.
 */
export function credentialRequest(input: CedarRequestInput): CedarRequest {
  const { identity, agent, role, task } = input;
  const principal = agentEntity(identity, agent, input.matches);
  const resource = roleEntity(role, input.backendType);
  const taskOf = taskEntity(task);
  const context = {
    task: { __entity: taskOf.uid },
    ttl_seconds: input.ttlSeconds,
    task_roles: [...(input.held?.task.keys() ?? [])],
    agent_roles: [...(input.held?.agent.keys() ?? [])],
    task_role_labels: labelsHeld(input.held?.task, input.labelsOf),
    agent_role_labels: labelsHeld(input.held?.agent, input.labelsOf),
    approved: false,
    ...(input.onBehalfOf ? { on_behalf_of: input.onBehalfOf } : {}),
    ...timeOf(input.now),
  };
  return asked('RequestCredential', principal, resource, context, [taskOf]);
}

/** A renewal of an agent's own lease: `ttlSeconds` is what it asks for, `approved` whether the lease was redeemed from an approval. */
export function renewRequest(input: { identity: Identity; agent?: Resolution; role: RoleConfig; backendType: string; task: Task; lease: string; ttlSeconds: number; approved: boolean; now: Date }): CedarRequest {
  const principal = agentEntity(input.identity, input.agent, []);
  const resource = roleEntity(input.role, input.backendType);
  const taskOf = taskEntity(input.task);
  const context = { task: { __entity: taskOf.uid }, lease: input.lease, ttl_seconds: input.ttlSeconds, approved: input.approved, ...timeOf(input.now) };
  return asked('Renew', principal, resource, context, [taskOf]);
}

/** Who opens a task or decides an approval: its actor name, whether it is an admin, an OIDC caller's claims. */
export interface Caller {
  actor: string;
  admin: boolean;
  identity?: Identity;
}

const callerEntity = (type: string, caller: Caller) => ({
  uid: { type, id: caller.actor },
  attrs: { name: caller.actor, admin: caller.admin },
  parents: [],
  tags: caller.identity ? claimTags(caller.identity.claims as Record<string, unknown>).tags : {},
});

/** An orchestrator opening a task (the Task as it would be opened). */
export function openTaskRequest(input: { caller: Caller; task: Task; now: Date }): CedarRequest {
  const principal = callerEntity(T.orchestrator, input.caller);
  const resource = taskEntity(input.task);
  const { task } = input;
  const context = {
    agent_issuer: task.agentIssuer ?? '',
    agent_subject: task.agentSubject,
    ttl_seconds: Math.round((task.deadline.getTime() - task.createdAt.getTime()) / 1000),
    ...timeOf(input.now),
  };
  return asked('OpenTask', principal, resource, context);
}

/** An approver approving a request for a role on a task. */
export function approveRequest(input: {
  caller: Caller;
  role: RoleConfig;
  backendType: string;
  task: Task;
  requester: string;
  requiredBy: string;
  ttlSeconds: number;
  now: Date;
}): CedarRequest {
  const principal = callerEntity(T.approver, input.caller);
  const resource = roleEntity(input.role, input.backendType);
  const taskOf = taskEntity(input.task);
  const context = { task: { __entity: taskOf.uid }, requester: input.requester, required_by: input.requiredBy, ttl_seconds: input.ttlSeconds, ...timeOf(input.now) };
  return asked('Approve', principal, resource, context, [taskOf]);
}
