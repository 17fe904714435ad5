import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it), or CHROMIUM_PATH. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Where the browser tests save their screenshots (gitignored), for a reviewer to look at without running anything. */
export const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'console');

/**
 * The browser the console's tests drive. Without it they fail, never skip, as
 * the tests that need PostgreSQL do: a missing browser is a gap, not a pass.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is required at ${CHROMIUM} for the console's browser tests: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`);
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}
