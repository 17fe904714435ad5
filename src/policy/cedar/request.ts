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

/** A claim as a tag: strings as they are, anything else as its JSON text. */
const claimTags = (claims: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(claims).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));

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
  const minute = new Date(Math.floor(input.now.getTime() / 60_000) * 60_000);
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
        tags: claimTags(identity.claims as Record<string, unknown>),
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
