import type { Resolution } from '../../agents/registry.js';
import type { RoleConfig } from '../../config/schema.js';
import type { Task } from '../../db/schema.js';
import type { IdentityMatcher } from '../../identity/match.js';
import type { Identity } from '../../identity/types.js';
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

/** Everything credentialRequest puts in the request, as one string: the engine's memo key. */
export function requestKey(input: CedarRequestInput): string {
  const { identity, agent, role, task } = input;
  const registered = agent?.kind === 'agent' ? agent.agent : undefined;
  return [
    identity.issuer,
    identity.subject,
    claimTags(identity.claims as Record<string, unknown>).key,
    // Matched on every claim, per-token ones too.
    input.allowRules
      .filter((r) => r.matches(identity))
      .map((r) => r.id)
      .join(' '),
    registered ? cachedKey(registered, () => JSON.stringify([registered.name, registered.owner.name, registered.labels])) : '',
    role.name,
    input.backendType,
    cachedKey(task, () => JSON.stringify([task.id, task.purpose, task.owner, task.createdBy, task.createdAt.getTime(), task.deadline.getTime(), task.labels])),
    input.ttlSeconds,
    minuteOf(input.now),
  ].join('\u0000');
}

export interface CedarRequestInput {
  identity: Identity;
  agent?: Resolution;
  role: RoleConfig;
  /** The role's backend's type (jwt, aws_sts, vault). */
  backendType: string;
  /** The role's allow rules, each with its id (policy/cedar/compile.ts), matched here: Cedar has no regular expressions. */
  allowRules: { id: string; matches: IdentityMatcher }[];
  task: Task;
  ttlSeconds: number;
  now: Date;
}

/**
 * The entities and context of one credential decision, as the schema
 * (policy/cedar/schema.ts) names them. The time is taken to the minute, so
 * that the same request within a minute is the same question.
 */
export function credentialRequest(input: CedarRequestInput): CedarRequest {
  const { identity, agent, role, task } = input;
  const minute = new Date(minuteOf(input.now) * 60_000);
  const registered = agent?.kind === 'agent' ? agent.agent : undefined;
  const principal = { type: T.agent, id: `${identity.issuer}/${identity.subject}` };
  const resource = { type: T.role, id: role.name };
  const taskUid = { type: T.task, id: task.id };
  return {
    principal,
    action: { type: T.action, id: 'RequestCredential' },
    resource,
    context: { task: { __entity: taskUid }, ttl_seconds: input.ttlSeconds, now: datetime(minute), weekday: WEEKDAYS[minute.getUTCDay()]!, hour: minute.getUTCHours() },
    entities: [
      {
        uid: principal,
        attrs: {
          issuer: identity.issuer,
          subject: identity.subject,
          ...(registered ? { agent: registered.name, owner: registered.owner.name } : {}),
          labels: Object.entries(registered?.labels ?? {}).map(([k, v]) => `${k}=${v}`),
          matches: input.allowRules.filter((r) => r.matches(identity)).map((r) => r.id),
        },
        parents: [],
        tags: claimTags(identity.claims as Record<string, unknown>).tags,
      },
      { uid: resource, attrs: { backend: role.backend, backend_type: input.backendType }, parents: [], tags: role.labels },
      {
        uid: taskUid,
        attrs: { purpose: task.purpose ?? '', owner: task.owner ?? '', created_by: task.createdBy, created_at: datetime(task.createdAt), deadline: datetime(task.deadline) },
        parents: [],
        tags: task.labels ?? {},
      },
    ],
  };
}
