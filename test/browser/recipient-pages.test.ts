import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { campaigns, contacts, recipients } from '../../src/db/schema.js';
import { RESUBSCRIBE_MAIL_SUBJECT, TRACKING_MAIL_SUBJECT } from '../../src/suppression/resubscribe.service.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import type { Page } from 'playwright-core';
import { hasChromium, newPage, seriousAxeViolations, useBrowser } from '../helpers/browser.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * The recipient's pages in a real browser with JavaScript off: the unsubscribe question and
 * its button, the preference center by keyboard alone, subscribing again and allowing tracking
 * again through the mailed confirmation link, a phone-sized screen, nothing loaded from anywhere else and no cookie set,
 * HTML in a sender's name shown as text, and an axe-core scan with no serious or critical
 * violation (P-09).
 */

const NASTY_NAME = 'Acme <img src=x onerror="document.title=1"> & Co';

describe.skipIf(!hasChromium)('recipient pages in a real browser', () => {
  const ctx = useBrowser();
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  const urls = () => createTrackingUrls(createTokenCodec(app.config.trackingSecrets), app.baseUrl);

  beforeAll(async () => {
    app = await startTestApp();
    owner = await signUp(app, { workspaceName: NASTY_NAME });
  });
  afterAll(async () => {
    await app?.close();
  });

  async function mailedAddress(email: string, topics: string[] = ['news', 'events']) {
    const db = app.database.db;
    const campaignIds: string[] = [];
    for (const topic of topics) {
      const [row] = await db
        .insert(campaigns)
        .values({ workspaceId: owner.workspaceId, name: `About ${topic}`, kind: 'marketing', subject: 'Hello', audience: { contactIds: [] }, topic, status: 'completed' })
        .returning({ id: campaigns.id });
      campaignIds.push(row!.id);
    }
    const [recipient] = await db.insert(recipients).values({ workspaceId: owner.workspaceId, email }).returning({ id: recipients.id });
    return { unsubscribe: urls().unsubscribe(recipient!.id, campaignIds[0]!), preferences: urls().preferences(recipient!.id, campaignIds[0]!), recipientId: recipient!.id };
  }

  async function isSuppressed(email: string, scope = 'all') {
    const list = await app.api('GET', `/api/suppressions?email=${encodeURIComponent(email)}`, { token: owner.token });
    return (list.body.suppressions as { email: string; scope: string }[]).some((s) => s.email === email && s.scope === scope);
  }

  it('P-09 the unsubscribe page works with JavaScript off: one button, committed before the confirmation, nothing external, no cookie', async () => {
    const { unsubscribe } = await mailedAddress('js-off@example.com');
    const page = await newPage(ctx.browser, { javaScriptEnabled: false });
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));

    const response = await page.goto(unsubscribe);
    expect(response!.status()).toBe(200);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Unsubscribe');
    // The sender's name is text, never markup.
    await expect(page.locator('main strong').first().textContent()).resolves.toBe(NASTY_NAME);
    expect(await page.locator('main img').count()).toBe(0);
    expect(await isSuppressed('js-off@example.com')).toBe(false);

    await page.getByRole('button', { name: 'Unsubscribe' }).click();
    await page.waitForURL(unsubscribe);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('You are unsubscribed');
    expect(await isSuppressed('js-off@example.com')).toBe(true);

    const origin = new URL(app.baseUrl).origin;
    expect(requested.every((url) => new URL(url).origin === origin)).toBe(true);
    expect(await page.context().cookies()).toEqual([]);
    expect(await page.title()).not.toBe('1');
    await page.context().close();
  });

  it('P-11 the preference center works by keyboard alone with JavaScript off, and says what it saved', async () => {
    const { preferences } = await mailedAddress('keyboard@example.com');
    const page = await newPage(ctx.browser, { javaScriptEnabled: false });
    await page.goto(preferences);

    // Every checkbox has a label a screen reader reads out.
    const news = page.getByRole('checkbox', { name: 'news' });
    await expect(news.isChecked()).resolves.toBe(true);
    await news.focus();
    await page.keyboard.press('Space');
    await expect(news.isChecked()).resolves.toBe(false);
    await page.getByRole('button', { name: 'Save my choices' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForLoadState('load');

    await expect(page.getByRole('status').textContent()).resolves.toContain('Your choices are saved.');
    await expect(page.getByRole('checkbox', { name: 'news' }).isChecked()).resolves.toBe(false);
    await expect(page.getByRole('checkbox', { name: 'events' }).isChecked()).resolves.toBe(true);
    expect(await isSuppressed('keyboard@example.com', 'topic:news')).toBe(true);
    expect(await isSuppressed('keyboard@example.com')).toBe(false);
    await page.context().close();
  });

  /** The mailed confirmation link (its path on this app: PUBLIC_BASE_URL is not this test's port). */
  function confirmationLink(email: string, subject = RESUBSCRIBE_MAIL_SUBJECT): string {
    const mail = (app.services.accountMailer.outbox ?? []).filter((m) => m.to === email && m.subject === subject).at(-1)!;
    return `${app.baseUrl}${new URL(/^(https?:\/\/\S+\/p\/confirm\/\S+)$/m.exec(mail.text)![1]!).pathname}`;
  }

  it('P-11 subscribing again, by keyboard with JavaScript off: the page announces the mailed confirmation, and only its link\'s button turns mail back on', async () => {
    const { unsubscribe, preferences } = await mailedAddress('again@example.com');
    const page = await newPage(ctx.browser, { javaScriptEnabled: false });
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    await page.goto(unsubscribe);
    await page.getByRole('button', { name: 'Unsubscribe' }).click();
    await page.waitForURL(unsubscribe);

    await page.goto(preferences);
    await page.getByRole('button', { name: 'Subscribe me again' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForLoadState('load');
    await expect(page.getByRole('status').textContent()).resolves.toContain('please confirm: we sent a link to a•••@example.com');
    expect(await isSuppressed('again@example.com')).toBe(true);

    await page.goto(confirmationLink('again@example.com'));
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Receive email again?');
    expect(await isSuppressed('again@example.com')).toBe(true);
    await page.getByRole('button', { name: 'Yes, send me this email again' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForLoadState('load');
    await expect(page.getByRole('status').textContent()).resolves.toContain('is turned back on');
    expect(await isSuppressed('again@example.com')).toBe(false);

    const origin = new URL(app.baseUrl).origin;
    expect(requested.every((url) => new URL(url).origin === origin)).toBe(true);
    expect(await page.context().cookies()).toEqual([]);
    await page.context().close();
  });

  it('allowing tracking again, by keyboard with JavaScript off: the page announces the mailed confirmation, and only its link\'s button allows it; no serious axe violation', async () => {
    const email = 'tracked@example.com';
    const { preferences } = await mailedAddress(email);
    const contact = await app.api('POST', '/api/contacts', { token: owner.token, json: { email } });
    expect(contact.status).toBe(201);
    const refusedAt = async () => (await app.database.db.select({ at: contacts.trackingRefusedAt }).from(contacts).where(eq(contacts.id, contact.body.id)))[0]!.at;
    const refuse = (page: Page) => page.getByRole('radio', { name: "Don't track my opens and clicks" });
    const allow = (page: Page) => page.getByRole('radio', { name: /may see when I open their email/ });
    /** Submits by Enter on the focused button and waits for the page it answers with (the page before had a status too). */
    async function pressEnter(page: Page) {
      const navigated = page.waitForEvent('framenavigated', (frame) => frame === page.mainFrame());
      await page.keyboard.press('Enter');
      await navigated;
      await page.waitForLoadState('load');
    }

    const page = await newPage(ctx.browser, { javaScriptEnabled: false });
    await page.goto(preferences);
    await refuse(page).check();
    await page.getByRole('button', { name: 'Save my choices' }).last().focus();
    await pressEnter(page);
    await expect(page.getByRole('status').textContent()).resolves.toContain('Your choices are saved.');
    await allow(page).focus();
    await page.keyboard.press('Space');
    await page.getByRole('button', { name: 'Save my choices' }).last().focus();
    await pressEnter(page);
    await expect(page.getByRole('status').textContent()).resolves.toContain('please confirm: we sent a link to t•••@example.com');
    await expect(refuse(page).isChecked()).resolves.toBe(true);
    expect(await refusedAt()).not.toBeNull();

    await page.goto(confirmationLink(email, TRACKING_MAIL_SUBJECT));
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Allow tracking again?');
    expect(await refusedAt()).not.toBeNull();
    await page.getByRole('button', { name: 'Yes, allow tracking again' }).focus();
    await pressEnter(page);
    await expect(page.getByRole('status').textContent()).resolves.toContain('may see again when you open its email and click its links');
    expect(await refusedAt()).toBeNull();
    expect(await page.context().cookies()).toEqual([]);
    await page.context().close();

    // The same pages scanned by axe (it needs JavaScript on to run).
    const scanning = await newPage(ctx.browser);
    await scanning.goto(preferences);
    await refuse(scanning).check();
    await scanning.getByRole('button', { name: 'Save my choices' }).last().focus();
    await pressEnter(scanning);
    await allow(scanning).check();
    await scanning.getByRole('button', { name: 'Save my choices' }).last().focus();
    await pressEnter(scanning);
    const scanned: Record<string, unknown[]> = { mailed: await seriousAxeViolations(scanning) };
    await scanning.goto(confirmationLink(email, TRACKING_MAIL_SUBJECT));
    scanned.question = await seriousAxeViolations(scanning);
    await scanning.getByRole('button', { name: 'Yes, allow tracking again' }).focus();
    await pressEnter(scanning);
    scanned.confirmed = await seriousAxeViolations(scanning);
    expect(scanned).toEqual({ mailed: [], question: [], confirmed: [] });
    await scanning.context().close();
  });

  it('the pages fit a phone screen without sideways scrolling, with buttons big enough to tap', async () => {
    const { unsubscribe, preferences } = await mailedAddress('phone@example.com');
    const page = await newPage(ctx.browser, { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    for (const url of [unsubscribe, preferences]) {
      await page.goto(url);
      const { scrollWidth, clientWidth } = await page.evaluate<{ scrollWidth: number; clientWidth: number }>(
        '({ scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth })',
      );
      expect(scrollWidth).toBeLessThanOrEqual(clientWidth);
      for (const button of await page.getByRole('button').all()) {
        const box = (await button.boundingBox())!;
        expect(box.height).toBeGreaterThanOrEqual(24);
      }
    }
    await page.context().close();
  });

  it('axe-core finds no serious or critical violation on the recipient pages (question, done, preferences, subscribing again and its confirmation, bad link)', async () => {
    const { unsubscribe, preferences } = await mailedAddress('axe@example.com');
    const page = await newPage(ctx.browser);
    const scanned: Record<string, unknown[]> = {};
    await page.goto(unsubscribe);
    scanned.question = await seriousAxeViolations(page);
    await page.goto(preferences);
    scanned.preferences = await seriousAxeViolations(page);
    await page.getByRole('button', { name: 'Unsubscribe from everything' }).click();
    await page.waitForLoadState('load');
    scanned.unsubscribedEverything = await seriousAxeViolations(page);
    await page.goto(unsubscribe);
    scanned.alreadyUnsubscribed = await seriousAxeViolations(page);
    await page.goto(preferences);
    await page.getByRole('button', { name: 'Subscribe me again' }).click();
    await page.waitForLoadState('load');
    scanned.confirmationMailed = await seriousAxeViolations(page);
    await page.goto(confirmationLink('axe@example.com'));
    scanned.confirmQuestion = await seriousAxeViolations(page);
    await page.getByRole('button', { name: 'Yes, send me this email again' }).click();
    await page.waitForLoadState('load');
    scanned.confirmed = await seriousAxeViolations(page);
    await page.goto(`${app.baseUrl}/u/not-a-token`);
    scanned.badLink = await seriousAxeViolations(page);
    expect(scanned).toEqual({ question: [], preferences: [], unsubscribedEverything: [], alreadyUnsubscribed: [], confirmationMailed: [], confirmQuestion: [], confirmed: [], badLink: [] });
    await page.context().close();
  });
});
