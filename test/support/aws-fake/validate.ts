/** Request-parameter plumbing shared by STS and IAM: awsQuery lists and model-constraint errors. */
import { AwsError } from './state.js';

/** Collects violations worded the way AWS's model validation words them. */
export class Violations {
  readonly list: string[] = [];
  private add(value: string | null, at: string, constraint: string) {
    const shown = value === null ? 'null' : `'${value}'`;
    this.list.push(`Value ${shown} at '${at}' failed to satisfy constraint: ${constraint}`);
  }
  required(value: string | undefined, at: string): value is string {
    if (value === undefined) this.add(null, at, 'Member must not be null');
    return value !== undefined;
  }
  string(value: string | undefined, at: string, min: number, max: number, pattern?: RegExp, patternText?: string) {
    if (value === undefined) return;
    const length = [...value].length;
    if (pattern && !pattern.test(value)) this.add(value, at, `Member must satisfy regular expression pattern: ${patternText}`);
    if (length < min) this.add(value, at, `Member must have length greater than or equal to ${min}`);
    if (length > max) this.add(value, at, `Member must have length less than or equal to ${max}`);
  }
  list_(shown: string, count: number, at: string, max: number) {
    if (count > max) this.add(shown, at, `Member must have length less than or equal to ${max}`);
  }
  range(raw: string | undefined, at: string, min: number, max: number) {
    if (raw === undefined) return;
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw)) this.add(raw, at, 'Member must be an integer');
    else if (n < min) this.add(raw, at, `Member must have value greater than or equal to ${min}`);
    else if (n > max) this.add(raw, at, `Member must have value less than or equal to ${max}`);
  }
  throwIfAny() {
    if (this.list.length === 0) return;
    const n = this.list.length;
    throw new AwsError(400, 'ValidationError', `${n} validation error${n === 1 ? '' : 's'} detected: ${this.list.join('; ')}`);
  }
}

/** `Prefix.member.N[.Field]` → ordered list of member records (awsQuery list serialization). */
export function queryList(params: Record<string, string>, prefix: string): Record<string, string>[] {
  const byIndex = new Map<number, Record<string, string>>();
  const head = `${prefix}.member.`;
  for (const [key, value] of Object.entries(params)) {
    if (!key.startsWith(head)) continue;
    const rest = key.slice(head.length);
    const dot = rest.indexOf('.');
    const index = Number(dot < 0 ? rest : rest.slice(0, dot));
    if (!Number.isInteger(index)) continue;
    const entry = byIndex.get(index) ?? {};
    entry[dot < 0 ? '' : rest.slice(dot + 1)] = value;
    byIndex.set(index, entry);
  }
  return [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

