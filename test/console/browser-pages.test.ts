/**
 * The Agents and Leases pages in a real browser: playwright-core driving
 * Debian's chromium against a broker on a loopback port in dev mode. An admin
 * suspends an agent from its page, two clicks from the list (its lease is
 * revoked, its next credential request refused with agent_suspended), then
 * revokes another agent's lease from the Leases page and sees it revoked,
 * with the credential inactive at POST /v1/introspect. Screenshots go to
 * test-artifacts/console/. Without chromium it fails (test/console/chromium.ts).
 */
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveBroker } from '../client/support.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { ARTIFACTS, launchChromium, watchedPage } from './chromium.js';
import { devConsoleConfig, devToken } from './support.js';


describe('the agents and leases pages in chromium (postgres)', () => {
  let database: TestDatabase;
  let t: TestBroker;
  let dataDir: string;
  let http: { url: string; close: () => Promise<void> };
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    const config = await devConsoleConfig({
      agents: {
        require_registration: false,
        register: [
          {
            name: 'deployer',
            match: { issuer: 'test', subject: 'agent-deployer' },
            owner: { name: 'team-shop', contact: 'shop@example.com', principals: [{ issuer: 'dev', subject: 'approver-a' }] },
            purpose: 'deploys the shop',
            roles: ['demo', 'gated'],
          },
        ],
      },
    });
    dataDir = config.data_dir;
    t = await startTestBroker(database, { config });
    http = await serveBroker(t);
    browser = await launchChromium();
    // The page's own errors (a CSP refusal, a script error) fail the test with their text.
    ({ page } = await watchedPage(browser, { width: 1200, errors }));
  });
  afterAll(async () => {
    await browser?.close();
    await http?.close();
    await database?.drop();
  });

  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  const api = async (bearer: string, path: string, body: unknown, form = false) => {
    const res = await fetch(`${http.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bearer}`, 'content-type': form ? 'application/x-www-form-urlencoded' : 'application/json' },
      body: form ? String(body) : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  /** What an agent does over HTTP: its orchestrator opens a task, it asks for `demo`. */
  async function agentHolds(agent: string): Promise<{ task: string; lease: string; token: string }> {
    const task = await api(await t.tokenFor('orchestrator'), '/v1/tasks', { agent: { issuer: 'test', subject: agent }, roles: ['demo'], ttl_seconds: 3600 });
    expect(task.status, JSON.stringify(task.json)).toBe(201);
    const got = await api(await t.tokenFor(agent), '/v1/credentials', { task: task.json.task.id, role: 'demo' });
    expect(got.status, JSON.stringify(got.json)).toBe(201);
    return { task: task.json.task.id, lease: got.json.lease.id, token: got.json.credentials.token };
  }
  const leaseStatus = async (id: string) => {
    const res = await fetch(`${http.url}/v1/leases?limit=200`, { headers: { authorization: `Bearer ${await devToken(dataDir, 'admin')}` } });
    return ((await res.json()) as any).items.find((l: { id: string }) => l.id === id)?.status;
  };

  it('suspends an agent from its page and revokes a lease from the leases page', async () => {
    const held = await agentHolds('agent-deployer');
    await page.goto(`${http.url}/console/login`);
    await page.getByRole('button', { name: 'admin', exact: true }).click();
    await page.waitForURL('**/console/approvals', { waitUntil: 'domcontentloaded' });

    await page.getByRole('link', { name: 'Agents', exact: true }).click();
    await page.waitForURL('**/console/agents');
    const row = page.locator('#agent-deployer');
    await expect(row.textContent()).resolves.toContain('team-shop');
    await expect(row.textContent()).resolves.toContain('in good standing');
    await shot('agents');

    // The kill switch: the agent's Suspend link, then Suspend (with the reason the audit trail keeps).
    await row.getByRole('link', { name: 'Suspend…' }).click();
    await page.waitForURL('**/console/agents/deployer#switch');
    await page.locator('#switch input[name=reason]').fill('leaked token, incident 12');
    await page.locator('#switch').getByRole('button', { name: 'Suspend' }).click();
    await page.waitForURL('**/console/agents/deployer?notice=suspended');
    await expect(page.textContent('[role=status]')).resolves.toContain('Suspended');
    await expect(page.textContent('#switch')).resolves.toContain('leaked token, incident 12');
    await shot('agent-suspended');
    expect(['revoking', 'revoked']).toContain(await leaseStatus(held.lease));
    const refused = await api(await t.tokenFor('agent-deployer'), '/v1/credentials', { task: held.task, role: 'demo' });
    expect({ status: refused.status, code: refused.json.code }).toEqual({ status: 403, code: 'agent_suspended' });

    // Another agent's lease, revoked from the Leases page.
    const other = await agentHolds('agent-free');
    const before = await api(await t.tokenFor('agent-free'), '/v1/introspect', `token=${other.token}`, true);
    expect(before.json.active).toBe(true);
    await page.getByRole('link', { name: 'Leases', exact: true }).click();
    await page.waitForURL('**/console/leases');
    await page.selectOption('select[name=status]', 'active');
    await page.fill('input[name=subject]', 'agent-free');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL('**/console/leases?**');
    const lease = page.locator(`#lease-${other.lease}`);
    await lease.waitFor({ state: 'visible' });
    await shot('leases-active');
    await lease.locator('input[name=reason]').fill('rotating keys');
    await lease.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL('**/console/leases?**notice=revoking');
    await expect(page.textContent('[role=status]')).resolves.toContain('Revocation requested');

    // The sweeper finishes the revocation (the test broker's sweeper runs when told): the page, filtered to the lease's task, shows it revoked.
    await t.broker.sweeper.runOnce();
    await expect.poll(() => leaseStatus(other.lease), { timeout: 15_000 }).toBe('revoked');
    await page.goto(`${http.url}/console/leases?task=${other.task}`);
    await expect(page.textContent(`#lease-${other.lease}`)).resolves.toContain('revoked');
    await shot('leases-revoked');
    const after = await api(await t.tokenFor('agent-free'), '/v1/introspect', `token=${other.token}`, true);
    expect(after.json.active).toBe(false);
    expect(errors).toEqual([]);
  }, 120_000);
});
