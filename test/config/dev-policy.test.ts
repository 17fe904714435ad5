// Dev mode's example Cedar policy (src/config/dev.ts): written into the data directory once, left alone once
// a developer has edited it, and rewritten when it is still as an earlier version shipped it (that version no
// longer validates against the schema with more than one action).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEV_POLICY, devConfig } from '../../src/config/dev.js';
import { parseConfig } from '../../src/config/load.js';
import { policyFromConfig } from '../../src/policy/cedar/load.js';

describe("dev mode's policy file", () => {
  it('is written once, validates, and an edited one is kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dev-policy-'));
    const config = parseConfig(await devConfig(dir), 'dev mode');
    expect(readFileSync(join(dir, 'dev-policy.cedar'), 'utf8')).toBe(DEV_POLICY);
    expect(policyFromConfig(config).cedar.ids).toContain('dev:no-writes-in-production');
    const edited = `${DEV_POLICY}// mine\n`;
    writeFileSync(join(dir, 'dev-policy.cedar'), edited);
    await devConfig(dir);
    expect(readFileSync(join(dir, 'dev-policy.cedar'), 'utf8')).toBe(edited);
  });

  it('is rewritten when it is still as the version before several actions wrote it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dev-policy-'));
    writeFileSync(join(dir, 'dev-policy.cedar'), DEV_POLICY.replace('action == Tasklease::Action::"RequestCredential"', 'action'));
    const config = parseConfig(await devConfig(dir), 'dev mode');
    expect(readFileSync(join(dir, 'dev-policy.cedar'), 'utf8')).toBe(DEV_POLICY);
    expect(() => policyFromConfig(config)).not.toThrow();
  });
});
