import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import { lastSignupCode } from '../../src/auth/account-mail.js';
import { hasChromium, useBrowser } from '../helpers/browser.js';
import { freePort, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * The whole story in one real browser, as a new user lives it: sign up → connect the
 * sandbox mailbox through the disclosure and the consent page → contacts with consent →
 * a campaign with a preview → preflight → launch → the recipient opens the mail in the
 * sandbox inbox, clicks, unsubscribes from the page → the results page shows the open, the
 * click and the unsubscribe, and a second campaign skips that contact (P-07, P-08, P-09).
 */

// A person's browser: headless chromium's own user agent is (rightly) classified a bot.
const PERSON_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const OWNER = { email: 'founder@acme.test', password: 'a long enough password', workspace: 'Acme Outdoor' };
const SENDER = 'news@acme.test';
const RECIPIENTS = ['ann@contoso.test', 'bob@contoso.test'];

describe.skipIf(!hasChromium)('end to end in a real browser', () => {
  const ctx = useBrowser();
  let app: TestApp;
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    // The app must know its own address: the OAuth callback and every link in the mail name it.
    const port = await freePort();
    app = await startTestApp({ port, autoApprove: false, env: { PUBLIC_BASE_URL: `http://127.0.0.1:${port}` } });
    for (const email of RECIPIENTS) app.sandbox.control.createMailbox({ email });
    browser = await ctx.browser.newContext({ userAgent: PERSON_UA });
    browser.setDefaultTimeout(10_000);
    // The campaign's link leads off this machine: answer it here.
    await browser.route('https://acme.test/**', (route) => route.fulfill({ contentType: 'text/html', body: '<h1>Spring</h1>' }));
    page = await browser.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('P-07 P-08 P-09 sign up, connect, import, campaign, open, click, unsubscribe, results, and the next campaign skips them', async () => {
    // Sign up: the form, then the code from the confirmation mail.
    await page.goto(`${app.baseUrl}/signup`);
    await page.getByLabel('Email').fill(OWNER.email);
    await page.getByLabel('Password').fill(OWNER.password);
    await page.getByLabel('Workspace name').fill(OWNER.workspace);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(/\/signup\/verify/);
    await page.getByLabel('Confirmation code').fill(lastSignupCode(app.services.accountMailer.outbox ?? [], OWNER.email)!);
    await page.getByRole('button', { name: 'Create my account' }).click();
    await page.waitForURL(/\/app\/mailboxes/);

    // Connect: the Limited Use disclosure (P-05), then the sandbox's consent page, then back.
    await page.getByRole('link', { name: 'Connect Gmail', exact: true }).click();
    await page.getByRole('link', { name: /I understand/ }).click();
    await page.waitForURL((url) => url.href.startsWith(app.sandbox.urls.authorize));
    await page.getByLabel(/Approve as mailbox/).fill(SENDER);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/\/app\/mailboxes\?notice=connected/);
    await expect(page.getByRole('cell', { name: new RegExp(SENDER) }).count()).resolves.toBe(1);

    // The postal address marketing mail carries, in Settings.
    await page.goto(`${app.baseUrl}/app/settings`);
    await page.getByLabel(/Postal address/).fill('1 Trail Rd, Boulder CO');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.waitForURL(/notice=saved/);

    // Contacts with consent, from a CSV file with a consent column: upload, check the mapping, import.
    await page.goto(`${app.baseUrl}/app/contacts/import`);
    const csv = `email,firstName,consent\n${RECIPIENTS[0]},Ann,opted_in\n${RECIPIENTS[1]},Bob,opted_in\n`;
    await page.getByLabel('CSV file').setInputFiles({ name: 'contacts.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByRole('button', { name: 'Import 2 rows' }).click();
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Import finished');

    // A campaign, with its preview for Ann.
    const campaignId = await createAndLaunch('Spring on the trail', 2);

    // The worker sends; Ann reads the mail in the sandbox inbox (the pixel loads) and clicks.
    await app.services.sendWorker.runUntilIdle();
    await page.goto(`${app.sandbox.urls.inbox}mailboxes/${encodeURIComponent(RECIPIENTS[0]!)}`);
    await page.getByRole('link', { name: 'Spring on the trail' }).click();
    const mail = page.frameLocator('iframe[title="message body"]');
    await expect(mail.getByText('Hello Ann').count()).resolves.toBe(1);
    const [landing] = await Promise.all([browser.waitForEvent('page'), mail.getByRole('link', { name: 'the trail report' }).click()]);
    // The click went through our redirect (/t/c/…) to the link the campaign stored.
    await landing.waitForURL('https://acme.test/spring');
    await landing.close();

    // She unsubscribes from the page the mail's link opens.
    const [unsubscribe] = await Promise.all([browser.waitForEvent('page'), mail.getByRole('link', { name: 'Unsubscribe' }).click()]);
    await unsubscribe.getByRole('button', { name: 'Unsubscribe' }).click();
    await expect(unsubscribe.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('You are unsubscribed');
    await unsubscribe.close();

    // The results page shows the open, the click and the unsubscribe.
    await app.services.tracking.flush();
    await page.goto(`${app.baseUrl}/app/campaigns/${campaignId}/results`);
    await expect(page.locator('[data-result="sent"]').textContent()).resolves.toBe('2');
    await expect(page.locator('[data-result="unsubscribed"]').textContent()).resolves.toBe('1');
    const totals = await page.locator('#opens-clicks table tbody tr').allTextContents();
    expect(totals[0]).toMatch(/^Opens(\d+)(\d+)(\d+)1/);
    expect(totals[1]).toMatch(/^Clicks.*/);
    const clicksRow = await page.locator('#opens-clicks table tbody tr').nth(1).locator('td').allTextContents();
    expect(Number(clicksRow[3])).toBe(1);
    const linkRows = await page.locator('#links table tbody tr th').allTextContents();
    expect(linkRows).toEqual(['https://acme.test/spring']);
    // JavaScript on: the charts are drawn (uPlot from our own origin) beside the tables.
    expect(await page.locator('#opens-clicks .chart-canvas canvas').count()).toBe(1);

    // A second campaign skips her: preflight counts her as suppressed.
    await createAndLaunch('Summer on the trail', 1, { suppressed: 1 });
    await app.services.sendWorker.runUntilIdle();
    const summer = app.sandbox.control.listMessages(RECIPIENTS[0]!).filter((m) => m.subject === 'Summer on the trail');
    expect(summer).toHaveLength(0);
    expect(app.sandbox.control.listMessages(RECIPIENTS[1]!).filter((m) => m.subject === 'Summer on the trail')).toHaveLength(1);
  });

  async function createAndLaunch(name: string, eligible: number, expected: { suppressed?: number } = {}) {
    await page.goto(`${app.baseUrl}/app/campaigns`);
    await page.getByRole('link', { name: 'New campaign' }).click();
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('Subject', { exact: true }).fill(`${name}`);
    await page.getByLabel('HTML body').fill('<p>Hello {{firstName | "friend"}}, read <a href="https://acme.test/spring">the trail report</a>.</p>');
    await page.getByLabel('As received by').selectOption({ label: `Ann <${RECIPIENTS[0]}>` });
    const preview = page.frameLocator('iframe[name="campaign-preview"]');
    await expect.poll(() => preview.locator('[data-preview="body"]').textContent().catch(() => ''), { timeout: 10_000 }).toContain('Hello Ann');
    await page.getByRole('button', { name: 'Save draft' }).click();
    await page.waitForURL(/\/app\/campaigns\/[0-9a-f-]{36}\?notice=saved/);
    const campaignId = /campaigns\/([0-9a-f-]{36})/.exec(page.url())![1]!;
    await page.getByRole('button', { name: 'Check before launch' }).click();
    await expect(page.locator('[data-preflight="eligible"]').textContent()).resolves.toBe(String(eligible));
    await expect(page.locator('[data-preflight="suppressed"]').textContent()).resolves.toBe(String(expected.suppressed ?? 0));
    await page.getByRole('button', { name: /^Launch to/ }).click();
    await page.waitForURL(/notice=campaign_launch/);
    return campaignId;
  }
});
