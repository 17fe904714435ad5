import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

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

/**
 * A page in a fresh browser context whose own errors (a CSP refusal, a script error) are collected in
 * `errors`, for the test to expect empty; a console message the test expects (`allow`) is not one.
 */
export async function watchedPage(browser: Browser, options: { width?: number; allow?: RegExp; errors?: string[] } = {}): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: options.width ?? 1200, height: 800 } });
  const page = await context.newPage();
  const errors = options.errors ?? [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !options.allow?.test(m.text())) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}
