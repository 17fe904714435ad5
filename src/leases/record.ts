import { sql, type SQL } from 'drizzle-orm';
import { CHAIN_RESULT, chainBodies, chainCtes, eventsCte, type AuditInput } from '../audit/append.js';
import { leaseInsertCte, leasesJson, type LeaseRow } from './insert.js';

/**
 * What the record statement reports: the batch's tasks as it locked them,
 * the agent registry's generation, and whether it wrote (`inserted`,
 * `appended`, `moved`: all zero when it did not).
 */
export interface RecordResult {
  tasks: { id: string; status: string; max_leases: number | null }[] | null;
  generation: string | number | null;
  inserted: number;
  appended: number;
  moved: number;
}

/**
 * The first statement of every issuance commit (leases/writer.ts): sent
 * alone (the short way, `write`) or as the first of a transaction (the long
 * way, which only locks). It takes the commit's locks in their one order:
 *
 * 1. the batch's tasks, FOR SHARE: a completion waits for this commit, or
 *    this commit sees the task closed;
 * 2. the agent registry's generation, FOR SHARE: a suspension waits, or
 *    this commit sees the new generation;
 * 3. when `write` (no limit applies to any request of the batch), every task
 *    is open and every decision was made on that generation: the leases, and
 *    the events appended to the chain, whose head is locked last.
 *
 * Otherwise it writes nothing, and returns what the writer needs to decide
 * (the long way). The text does not vary with the batch. It writes only
 * what it may (test/leases/record.test.ts); no lease lands on a task
 * completed meanwhile (test/leases/race.test.ts).
 */
export function recordIssued(leases: { row: LeaseRow; who: { generation: number } }[], events: AuditInput[], write: boolean): SQL {
  const generations = leases.map(({ who }) => who.generation);
  // Any generation will do for a batch with no lease (then nothing is compared).
  const [low, high] = generations.length > 0 ? [Math.min(...generations), Math.max(...generations)] : [0, 0];
  const ids = [...new Set(leases.map(({ row }) => row.taskId))];
  return sql`with recursive
    -- = any(array(...)), not in (select ...): a prepared statement's generic plan guesses 100 rows for the
    -- set-returning function and hash-joins the whole table; an array comparison is an index scan.
    t as materialized (select id, status, max_leases from tasks
      where id = any(array(select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))) for share),
    -- Every task row is locked by this count, then the registry's row, before anything is written and the chain's head is locked.
    closed as materialized (select ${ids.length}::int - (select count(*) from t where status = 'open') as n),
    reg as materialized (select generation from registry_state where id = 1 and (select n from closed) >= 0 for share),
    ok as materialized (select ${write}::boolean and (select n from closed) = 0
      and (${leases.length}::int = 0 or exists (select from reg where generation = ${low}::bigint and generation = ${high}::bigint)) as go),
    ${leaseInsertCte(leasesJson(write ? leases.map(({ row }) => row) : []), sql`(select go from ok)`)},
    ${eventsCte(chainBodies(write ? events : []))},
    ${chainCtes(sql`(select go from ok)`)}
    select (select json_agg(t) from t) as tasks, (select generation from reg) as generation,
      (select count(*) from ins)::int as inserted, ${CHAIN_RESULT}`;
}

/** A task of the batch as recordIssued locked it. */
export interface TaskState {
  id: string;
  status: string;
  maxLeases: number | null;
}

/** The tasks recordIssued locked, by id. */
export function taskStates(result: RecordResult): Map<string, TaskState> {
  return new Map((result.tasks ?? []).map((t) => [t.id, { id: t.id, status: t.status, maxLeases: t.max_leases }]));
}

/** The generation recordIssued read. */
export const generationOf = (result: RecordResult): number => Number(result.generation ?? 0);
