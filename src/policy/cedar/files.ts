import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { lineAt, type PolicySource } from './compile.js';
import { PolicyLoadError } from './engine.js';

/**
 * An operator's `.cedar` files, each policy with its id: its `@id("...")`
 * annotation, or `<file name>:<line>`. A file that cannot be read or parsed
 * is a problem named by its path and line.
 */
export function readPolicyFiles(paths: string[], baseDir: string): PolicySource[] {
  const out: PolicySource[] = [];
  const problems: string[] = [];
  for (const given of paths) {
    const path = resolve(baseDir, given);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      problems.push(`${given}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      continue;
    }
    const parts = cedar.policySetTextToParts(text);
    if (parts.type === 'failure') {
      problems.push(...parts.errors.map((e) => `${given}:${lineAt(text, e.sourceLocations?.[0]?.start ?? 0)}: ${e.message}`));
      continue;
    }
    if (parts.policy_templates.length > 0) problems.push(`${given}: templates are not supported; write static policies`);
    let cursor = 0;
    for (const part of parts.policies) {
      const found = text.indexOf(part, cursor);
      const offset = found >= 0 ? found : cursor;
      cursor = found >= 0 ? found + part.length : cursor;
      const line = lineAt(text, offset);
      const json = cedar.policyToJson(part);
      const id = json.type === 'success' ? json.json.annotations?.id : undefined;
      out.push({ id: id ?? `${basename(given)}:${line}`, text: part, origin: `${given}:${line}`, file: { path: given, line } });
    }
  }
  if (problems.length > 0) throw new PolicyLoadError(problems);
  return out;
}
