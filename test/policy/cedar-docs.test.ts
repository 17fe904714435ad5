// docs/policy.md shows the schema and the worked policies: this keeps them the ones the broker ships and CI tests.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CEDAR_SCHEMA } from '../../src/policy/cedar/schema.js';

const doc = readFileSync(join(import.meta.dirname, '../../docs/policy.md'), 'utf8');
const examples = join(import.meta.dirname, '../../examples/policies');

describe('docs/policy.md', () => {
  it('shows the schema as src/policy/cedar/schema.ts has it', () => {
    expect(doc).toContain(`\`\`\`cedar\n${CEDAR_SCHEMA}\`\`\``);
  });

  it('shows every example policy as examples/policies/ has it', () => {
    const files = readdirSync(examples).filter((f) => f.endsWith('.cedar'));
    expect(files).toHaveLength(5);
    for (const f of files) expect(doc, f).toContain(readFileSync(join(examples, f), 'utf8').trimEnd());
  });
});
