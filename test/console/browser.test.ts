/**
 * The console in a real browser: playwright-core driving Debian's chromium
 * against a broker on a loopback port in dev mode. A person signs in through
 * the dev login as admin, sees an agent's gated request appear without
 * reloading (server-sent events), approves it (the agent's redemption gets
 * 201), denies another (the agent is refused). Screenshots of each page go
 * to test-artifacts/console/. Without chromium it fails
 * (test/console/chromium.ts).
 */
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveBroker } from '../client/support.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { ARTIFACTS, launchChromium, watchedPage } from './chromium.js';
import { devConsoleConfig } from './support.js';


describe('the console in chromium (postgres)', () => {
  let database: TestDatabase;
  let t: TestBroker;
  let http: { url: string; close: () => Promise<void> };
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    t = await startTestBroker(database, { config: await devConsoleConfig() });
    http = await serveBroker(t);
    browser = await launchChromium();
    // The page's own errors (a CSP refusal, a script error) fail the test with their text.
    ({ page } = await watchedPage(browser, { width: 1100, errors }));
  });
  afterAll(async () => {
    await browser?.close();
    await http?.close();
    await database?.drop();
  });

  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  /** What an agent does over HTTP: open a task (as its orchestrator), ask for the gated role. */
  async function agentAsks(agent: string): Promise<{ task: string; approval: string }> {
    const api = async (subject: string, path: string, body: unknown) => {
      const res = await fetch(`${http.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await t.tokenFor(subject)}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as any };
    };
    const task = await api('orchestrator', '/v1/tasks', { agent: { issuer: 'test', subject: agent }, roles: ['gated'], ttl_seconds: 3600, labels: { env: 'prod', team: 'payments' } });
    expect(task.status, JSON.stringify(task.json)).toBe(201);
    const asked = await api(agent, '/v1/credentials', { task: task.json.task.id, role: 'gated', ttl_seconds: 300 });
    expect(asked.status, JSON.stringify(asked.json)).toBe(202);
    return { task: task.json.task.id, approval: asked.json.approval.id };
  }
  const redeem = async (agent: string, asked: { task: string; approval: string }) => {
    const res = await fetch(`${http.url}/v1/credentials`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await t.tokenFor(agent)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ task: asked.task, role: 'gated', approval: asked.approval }),
    });
    return { status: res.status, json: (await res.json()) as any };
  };

  it('signs in through the dev login, shows a request live, approves one and denies another', async () => {
    await page.goto(`${http.url}/console`);
    expect(new URL(page.url()).pathname).toBe('/console/login');
    await shot('login');

    await page.getByRole('button', { name: 'admin', exact: true }).click();
    await page.waitForURL('**/console/approvals', { waitUntil: 'domcontentloaded' }).catch(async (e) => {
      throw new Error(`${page.url()} ${(await page.content()).slice(0, 3000)} ${errors.join('; ')} ${e}`);
    });
    await page.waitForSelector('body[data-live="on"]');
    await expect(page.textContent('header')).resolves.toContain('dev/admin');
    await shot('approvals-empty');

    // A marker that a reload would wipe: the request must appear with the page still the same document.
    await page.evaluate(() => ((globalThis as unknown as { marker: string }).marker = 'not reloaded'));
    const first = await agentAsks('agent-browser-1');
    const item = page.locator(`#approval-${first.approval}`);
    await item.waitFor({ state: 'visible', timeout: 15_000 });
    await expect(page.evaluate(() => (globalThis as unknown as { marker?: string }).marker)).resolves.toBe('not reloaded');
    const text = await item.textContent();
    expect(text).toContain('test/agent-browser-1');
    expect(text).toContain('gated');
    expect(text).toContain('deploy:prod');
    expect(text).toContain('env=prod');
    expect(text).toContain('for 300s');
    await shot('approvals-pending');

    await item.locator('input[name=reason]').fill('ticket OPS-42, deploy window');
    await item.getByRole('button', { name: 'Approve' }).click();
    await page.waitForURL('**/console/approvals?notice=approved');
    await expect(page.textContent('[role=status]')).resolves.toContain('Approved');
    await shot('approvals-approved');
    const redeemed = await redeem('agent-browser-1', first);
    expect(redeemed.status, JSON.stringify(redeemed.json)).toBe(201);
    expect(redeemed.json.lease.role).toBe('gated');

    await page.waitForSelector('body[data-live="on"]');
    const second = await agentAsks('agent-browser-2');
    const other = page.locator(`#approval-${second.approval}`);
    await other.waitFor({ state: 'visible', timeout: 15_000 });
    await other.locator('input[name=reason]').fill('not during the freeze');
    await other.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL('**/console/approvals?notice=denied');
    const refused = await redeem('agent-browser-2', second);
    expect({ status: refused.status, code: refused.json.code }).toEqual({ status: 409, code: 'approval_not_redeemable' });
    const polled = await fetch(`${http.url}/v1/approvals/${second.approval}`, { headers: { authorization: `Bearer ${await t.tokenFor('agent-browser-2')}` } });
    expect(((await polled.json()) as any).approval).toMatchObject({ status: 'denied' });

    await page.selectOption('select[name=status]', 'all');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL('**/console/approvals?status=all');
    await expect(page.textContent(`#approval-${second.approval}`)).resolves.toContain('not during the freeze');
    await shot('approvals-all');

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL('**/console/login');
    await page.goto(`${http.url}/console/approvals`);
    expect(new URL(page.url()).pathname).toBe('/console/login');
    expect(errors).toEqual([]);
  }, 120_000);
});
