import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * After the whole suite: no secret any test broker issued or used appears in
 * any table of any test database, nor in any log line any broker wrote
 * (RELIABILITY.md, "no secret at rest"). Checked across files, so a secret
 * from one test found in another's tables fails too.
 */
export default function setup() {
  // Child processes (brokers, CLI commands) run the compiled build of the sources under test: a broker
  // restart then costs the module loading alone, not tsx's loader hooks on every file (about 0.4 s less each,
  // across a few hundred children). The tsx entry (bin/tasklease.js, what `npm start` runs) keeps its own
  // tests (test/cli/program.test.ts, test/backends/aws-clients.test.ts).
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'tasklease-scan-'));
  process.env.TASKLEASE_SCAN_DIR = dir;
  return () => {
    const records = readdirSync(dir).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as { secrets: string[]; places: string[] });
    rmSync(dir, { recursive: true, force: true });
    const secrets = new Set(records.flatMap((r) => r.secrets));
    const places = records.flatMap((r) => r.places);
    const leaks: string[] = [];
    for (const secret of secrets) {
      // For a JWT the signature alone is proof of a leak; any other secret is looked for whole (a Vault token `hvs.x.ns` is not a JWT).
      const needle = /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(secret) ? secret.split('.')[2]! : secret;
      const place = places.find((p) => p.includes(needle));
      if (place) leaks.push(`${needle.slice(0, 12)}… found in: ${place.slice(0, 200)}`);
    }
    console.log(`secrets scan: ${secrets.size} secrets against ${places.length} rows and log lines from ${records.length} test databases: ${leaks.length} found`);
    if (leaks.length > 0) {
      process.exitCode = 1; // vitest reports an error thrown here but would still exit 0
      throw new Error(`secrets at rest:\n${leaks.join("\n")}`);
    }
  };
}
