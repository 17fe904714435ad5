/**
 * The console's remaining flows in a real browser: playwright-core driving
 * Debian's chromium against one broker on PostgreSQL in dev mode, a browser
 * context per person. An admin revokes every lease of one subject behind the
 * counted confirmation; a page on another origin (127.0.0.1 on another port:
 * the same site, so the SameSite=Lax cookie goes along) auto-submits a decide
 * and a revoke without the CSRF token, and the console refuses both (403);
 * an approver sees only the requests of the roles they approve; a scoped
 * orchestrator sees only its scope's tasks (another's task page is the 404
 * page); logging out on one replica ends the session on another over the
 * same database. Screenshots of the pages the other browser tests do not
 * take (overview, one request, bulk confirmation, tasks, one task, audit) go
 * to test-artifacts/console/. Without chromium it fails (test/console/chromium.ts).
 */
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { inArray } from 'drizzle-orm';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema.js';
import { serveBroker } from '../client/support.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { ARTIFACTS, launchChromium, watchedPage } from './chromium.js';
import { devConsoleConfig, devToken } from './support.js';

/** Another origin on the same host: pages an attacker would serve, by path. */
async function serveAttacker(pages: Map<string, string>) {
  const server = await new Promise<Server>((resolve) => {
    const s = createServer((req, res) => {
      const html = pages.get(req.url ?? '');
      res.writeHead(html ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html ?? 'not found');
    }).listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A form that posts itself on load, as a hostile page would: no CSRF token (it cannot read one). */
const autoSubmit = (action: string, fields: Record<string, string>) =>
  `<!doctype html><title>win a prize</title><form id="f" method="post" action="${action}">${Object.entries(fields)
    .map(([k, v]) => `<input type="hidden" name="${k}" value="${v}">`)
    .join('')}</form><script>document.getElementById('f').submit()</script>`;

describe('the console flows in chromium (postgres)', () => {
  let database: TestDatabase;
  let dataDir: string;
  let t: TestBroker;
  let replica: TestBroker;
  let http: { url: string; close: () => Promise<void> };
  let httpB: { url: string; close: () => Promise<void> };
  let attacker: { url: string; close: () => Promise<void> };
  const attackerPages = new Map<string, string>();
  let browser: Browser;

  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    const config = await devConsoleConfig({
      principals: {
        orchestrators: [
          { issuer: 'test', subject: 'orchestrator' },
          { issuer: 'dev', subject: 'orch-b', scope: { labels: { team: 'b' } } },
        ],
        admins: [{ issuer: 'dev', subject: 'admin' }],
      },
    });
    dataDir = config.data_dir;
    // A second gated role with its own approver: dev/approver-a approves `gated`, dev/approver-b `gated-ops`.
    config.roles = [...config.roles!, { name: 'gated-ops', backend: 'local', allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }], requires_approval: true, approvers: [{ issuer: 'dev', subject: 'approver-b' }] }];
    t = await startTestBroker(database, { config });
    // Another replica over the same database (the same dev key under data_dir), on another port of the same host.
    replica = await startTestBroker(database, { config, clock: t.clock, instanceId: 'replica-2' });
    [http, httpB, attacker, browser] = await Promise.all([serveBroker(t), serveBroker(replica), serveAttacker(attackerPages), launchChromium()]);
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all([http?.close(), httpB?.close(), attacker?.close()]);
    await database?.drop();
  });

  /**
   * A person's own browser (a context: its own cookie jar) signed in through the dev login. The page's
   * own errors (a CSP refusal, a script error) are collected; a status the test expects (`allow`) is not one.
   */
  async function personAt(subject: string, allow?: RegExp): Promise<{ page: Page; errors: string[] }> {
    const { page, errors } = await watchedPage(browser, { allow });
    await page.goto(`${http.url}/console/login`);
    const suggested = page.getByRole('button', { name: subject, exact: true });
    if (await suggested.count()) await suggested.click();
    else {
      await page.fill('input[name=other]', subject);
      await page.getByRole('button', { name: 'Sign in' }).click();
    }
    // Where who.ts's landing() sends the person (an orchestrator who approves nothing: its tasks).
    await page.waitForURL(/\/console\/(approvals|tasks|agents)$/, { waitUntil: 'domcontentloaded' });
    await expect(page.textContent('header')).resolves.toContain(`dev/${subject}`);
    return { page, errors };
  }
  const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  /** Setup through the API in process: a task opened by test/orchestrator for `agent`. */
  async function openTask(agent: string, roles: string[], labels: Record<string, string> = {}): Promise<string> {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { issuer: 'test', subject: agent }, roles, ttl_seconds: 3600, labels });
    expect(res.status, res.text).toBe(201);
    return res.json.task.id;
  }
  async function lease(task: string, agent: string): Promise<string> {
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role: 'demo' });
    expect(res.status, res.text).toBe(201);
    return res.json.lease.id;
  }
  async function ask(agent: string, role: string): Promise<string> {
    const task = await openTask(agent, [role], { env: 'prod' });
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role });
    expect(res.status, res.text).toBe(202);
    return res.json.approval.id;
  }
  const statuses = async (ids: string[]) => {
    const rows = await database.db.select({ id: leases.id, status: leases.status }).from(leases).where(inArray(leases.id, ids));
    return ids.map((id) => rows.find((r) => r.id === id)?.status);
  };
  const approvalStatus = async (id: string) => (await t.call('GET', `/v1/approvals/${id}`, { bearer: await devToken(dataDir, 'admin') })).json;

  it('bulk-revokes one subject\'s leases behind the counted confirmation; the overview and audit pages show it', async () => {
    const one = await openTask('agent-bulk', ['demo']);
    const two = await openTask('agent-bulk', ['demo']);
    const targets = [await lease(one, 'agent-bulk'), await lease(one, 'agent-bulk'), await lease(two, 'agent-bulk')];
    const keep = await lease(await openTask('agent-keep', ['demo']), 'agent-keep');
    const { page, errors } = await personAt('admin');

    await page.getByRole('link', { name: 'Leases', exact: true }).click();
    await page.waitForURL('**/console/leases');
    await page.fill('input[name=subject]', 'agent-bulk');
    await page.getByRole('button', { name: 'Revoke all matching…' }).click();
    await page.waitForURL('**/console/leases/bulk-revoke?**');
    await expect(page.getAttribute('#bulk-count', 'data-count')).resolves.toBe('3');
    await expect(page.textContent('#bulk-count')).resolves.toContain('3 active leases');
    for (const id of targets) await page.locator(`#lease-${id}`).waitFor({ state: 'visible' });
    await expect(page.locator(`#lease-${keep}`).count()).resolves.toBe(0);
    await shot(page, 'leases-bulk-confirm');
    // Nothing moved on the confirmation page: it is a GET.
    expect(await statuses([...targets, keep])).toEqual(['active', 'active', 'active', 'active']);

    await page.fill('main form.decide input[name=reason]', 'leaked CI token, incident 31');
    await page.getByRole('button', { name: 'Revoke 3 leases' }).click();
    await page.waitForURL('**/console/leases?**notice=bulk_revoking**');
    await expect(page.textContent('[role=status]')).resolves.toContain('3 leases moved to revoking.');
    await shot(page, 'leases-bulk-revoked');
    for (const status of await statuses(targets)) expect(['revoking', 'revoked']).toContain(status);
    expect(await statuses([keep])).toEqual(['active']);
    // Exactly those three moved: every other lease in the database is still active.
    const moved = (await database.db.select({ id: leases.id, status: leases.status }).from(leases)).filter((l) => l.status !== 'active').map((l) => l.id);
    expect(moved.sort()).toEqual([...targets].sort());

    await page.getByRole('link', { name: 'Overview', exact: true }).click();
    await page.waitForURL(/\/console$/);
    await expect(page.textContent('#active')).resolves.toContain('demo');
    await shot(page, 'overview');
    await page.getByRole('link', { name: 'Audit', exact: true }).click();
    await page.waitForURL('**/console/audit');
    await page.getByRole('button', { name: 'Verify now' }).click();
    await page.locator('#chain-result').waitFor({ state: 'visible' });
    await expect(page.textContent('#chain-result')).resolves.toContain('intact');
    await shot(page, 'audit');
    await page.fill('form.filter input[name=actor]', 'dev/admin');
    await page.fill('form.filter input[name=target]', 'leases:bulk');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL('**/console/audit?**');
    await expect(page.textContent('#audit-list')).resolves.toContain('leaked CI token, incident 31');
    await shot(page, 'audit-filtered');
    expect(errors).toEqual([]);
  });

  it('refuses a cross-site form without the CSRF token (403) though the browser sends the session cookie', async () => {
    const approval = await ask('agent-csrf', 'gated');
    const held = await lease(await openTask('agent-csrf', ['demo']), 'agent-csrf');
    attackerPages.set('/decide', autoSubmit(`${http.url}/console/approvals/${approval}/decide`, { verdict: 'approve', reason: 'sure' }));
    attackerPages.set('/revoke', autoSubmit(`${http.url}/console/leases/${held}/revoke`, { reason: 'oops' }));
    const { page, errors } = await personAt('admin', /status of 403/);

    for (const [path, action] of [['/decide', `/console/approvals/${approval}/decide`], ['/revoke', `/console/leases/${held}/revoke`]] as const) {
      const answered = page.waitForResponse((r) => new URL(r.url()).pathname === action);
      await page.goto(`${attacker.url}${path}`);
      const response = await answered;
      // The session cookie went along (127.0.0.1 on another port is the same site): the token and the origin check are what refuse it.
      const request = response.request();
      expect(await request.headerValue('cookie')).toMatch(/tasklease_console=/);
      expect(await request.headerValue('sec-fetch-site')).toBe('same-site');
      expect(await request.headerValue('origin')).toBe(attacker.url);
      expect(response.status()).toBe(403);
      await page.waitForURL(`${http.url}${action}`);
      await expect(page.textContent('main')).resolves.toContain('This action came from another site.');
    }
    await shot(page, 'csrf-refused');
    expect((await approvalStatus(approval)).approval.status).toBe('pending');
    expect(await statuses([held])).toEqual(['active']);
    // The person's own form, from the console's page, still works: the refusal was the origin's, not the session's.
    await page.goto(`${http.url}/console/approvals/${approval}`);
    await expect(page.textContent(`#approval-${approval}`)).resolves.toContain('pending');
    expect(errors).toEqual([]);
  });

  it("shows an approver only the requests of the roles they approve, and one request's own page", async () => {
    const mine = await ask('agent-approve-a', 'gated');
    const theirs = await ask('agent-approve-b', 'gated-ops');
    const [a, b] = await Promise.all([personAt('approver-a', /status of 404/), personAt('approver-b')]);

    await a.page.locator(`#approval-${mine}`).waitFor({ state: 'visible' });
    await expect(a.page.locator(`#approval-${theirs}`).count()).resolves.toBe(0);
    await shot(a.page, 'approvals-approver');
    await b.page.locator(`#approval-${theirs}`).waitFor({ state: 'visible' });
    await expect(b.page.locator(`#approval-${mine}`).count()).resolves.toBe(0);

    // One request's own page (the webhook's link), and another role's request answers the 404 page.
    await a.page.locator(`#approval-${mine} a.permalink`).click();
    await a.page.waitForURL(`**/console/approvals/${mine}`);
    await expect(a.page.textContent('h1')).resolves.toContain(mine);
    await expect(a.page.textContent(`#approval-${mine}`)).resolves.toContain('test/agent-approve-a');
    await shot(a.page, 'approval');
    const hidden = await a.page.goto(`${http.url}/console/approvals/${theirs}`);
    expect(hidden?.status()).toBe(404);
    await expect(a.page.textContent('main')).resolves.not.toContain('agent-approve-b');
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it("shows a scoped orchestrator its scope's tasks only; another task's page is the 404 page", async () => {
    const scoped = await openTask('agent-team-b', ['demo'], { team: 'b', env: 'prod' });
    await lease(scoped, 'agent-team-b');
    const other = await openTask('agent-team-c', ['demo'], { team: 'c' });
    const { page, errors } = await personAt('orch-b', /status of 404/);

    expect(new URL(page.url()).pathname).toBe('/console/tasks');
    const row = page.locator(`#task-${scoped}`);
    await row.waitFor({ state: 'visible' });
    await expect(row.textContent()).resolves.toContain('team=b');
    await expect(page.locator(`#task-${other}`).count()).resolves.toBe(0);
    await expect(page.textContent('main')).resolves.not.toContain('agent-team-c');
    await shot(page, 'tasks');

    await row.getByRole('link', { name: scoped }).click();
    await page.waitForURL(`**/console/tasks/${scoped}`);
    for (const text of ['test/agent-team-b', 'env=prod', 'test/orchestrator']) await expect(page.textContent('main')).resolves.toContain(text);
    await page.locator('#complete').waitFor({ state: 'visible' });
    await shot(page, 'task');

    const hidden = await page.goto(`${http.url}/console/tasks/${other}`);
    expect(hidden?.status()).toBe(404);
    await expect(page.textContent('h1')).resolves.toBe('Not found');
    await expect(page.textContent('main')).resolves.not.toContain('agent-team-c');
    expect(errors).toEqual([]);
  });

  it('logging out on one replica ends the session on another over the same database', async () => {
    const { page, errors } = await personAt('admin');
    // Cookies ignore the port: the cookie broker A set opens broker B's console too.
    const other = await page.context().newPage();
    await other.goto(`${httpB.url}/console/approvals`);
    expect(new URL(other.url()).pathname).toBe('/console/approvals');
    await expect(other.textContent('header')).resolves.toContain('dev/admin');

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL('**/console/login');
    await other.reload();
    expect(new URL(other.url())).toMatchObject({ origin: httpB.url, pathname: '/console/login' });
    await expect(other.textContent('h1')).resolves.toContain('Sign in');
    expect(errors).toEqual([]);
  });
});
