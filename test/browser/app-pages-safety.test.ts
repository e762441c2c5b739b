import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { hasChromium, newPage, seriousAxeViolations, signedInPage, useBrowser } from '../helpers/browser.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * The app's pages in a real browser: an axe-core scan of the main pages finds no serious or
 * critical violation; a form posted without its CSRF token (from another site, or with the
 * token stripped) is refused and changes nothing; HTML typed into names shows as text; a link
 * from another site cannot skip the Gmail disclosure (the browser's Sec-Fetch-Site tells).
 */

const NASTY = '<img src=x onerror="document.title=\'owned\'">Spring';

describe.skipIf(!hasChromium)('app pages: accessibility, CSRF, escaping', () => {
  const ctx = useBrowser();
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let draftId: string;
  let launchedId: string;
  let webhookId: string;
  let receiver: WebhookReceiver;
  const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));

  beforeAll(async () => {
    // Webhooks may reach the loopback receiver, and retry at once: the endpoint page has a log to show.
    app = await startTestApp({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_RETRY_BASE_SECONDS: '0.02' } });
    owner = await signUp(app, { workspaceName: 'Acme' });
    await app.api('PATCH', '/api/workspace', { token: owner.token, json: { name: 'Acme', postalAddress: '1 Main St, Springfield' } });
    const mailbox = await connectedMailbox(app, owner.token, `sender-${Date.now()}@acme.test`);
    const people = await fixtures.audience(2);
    await app.api('PATCH', `/api/contacts/${people[0]!.id}`, { token: owner.token, json: { firstName: NASTY } });
    launchedId = await fixtures.launched(mailbox.id, NASTY, people.map((p) => p.id));
    await app.services.sendWorker.runUntilIdle();
    const draft = await app.api('POST', '/api/campaigns', {
      token: owner.token,
      json: { name: NASTY, kind: 'marketing', mailboxId: mailbox.id, subject: 'Hi {{firstName}}', text: 'Hello', contactIds: people.map((p) => p.id) },
    });
    draftId = draft.body.id;

    // Settings → integrations with an API key and a webhook endpoint whose log holds a failed attempt (HTTP 500).
    receiver = await startWebhookReceiver([{ status: 500 }]);
    expect((await app.api('POST', '/api/api-keys', { token: owner.token, json: { name: NASTY, scopes: ['read'] } })).status).toBe(201);
    const webhook = await app.api('POST', '/api/webhooks', { token: owner.token, json: { url: receiver.url, eventTypes: ['suppression.added'], description: NASTY } });
    expect(webhook.status, webhook.text).toBe(201);
    webhookId = webhook.body.id;
    for (const email of ['first@hooks.example', 'second@hooks.example']) {
      expect((await app.api('POST', '/api/suppressions', { token: owner.token, json: { email } })).status).toBe(201);
    }
    await app.services.webhookDelivery.tick();
    expect(receiver.received.map((r) => r.answered)).toContain(500);
  });
  afterAll(async () => {
    await receiver?.close();
    await app?.close();
  });


  it('axe-core finds no serious or critical violation on the main app pages', async () => {
    const anonymous = await newPage(ctx.browser);
    const found: Record<string, unknown[]> = {};
    for (const path of ['/signin', '/signup']) {
      await anonymous.goto(`${app.baseUrl}${path}`);
      found[path] = await seriousAxeViolations(anonymous);
    }
    await anonymous.context().close();

    const page = await signedInPage(ctx.browser, app.baseUrl, owner);
    const appPages = ['/app/mailboxes', '/app/campaigns', '/app/campaigns/new', `/app/campaigns/${draftId}`, `/app/campaigns/${draftId}/edit`, `/app/campaigns/${launchedId}`, `/app/campaigns/${launchedId}/results`];
    const settingsPages = ['/app/settings/integrations', `/app/settings/webhooks/${webhookId}`, `/app/settings/webhooks/${webhookId}?status=failed`];
    for (const path of [...appPages, ...settingsPages]) {
      await page.goto(`${app.baseUrl}${path}`);
      await page.waitForLoadState('load');
      found[path] = await seriousAxeViolations(page);
    }
    await page.goto(`${app.baseUrl}/app/campaigns/${draftId}`);
    await page.getByRole('button', { name: 'Check before launch' }).click();
    found.preflight = await seriousAxeViolations(page);
    // The endpoint page as it answers a rotation: the new secret shown once.
    await page.goto(`${app.baseUrl}/app/settings/webhooks/${webhookId}`);
    expect(await page.locator('main').textContent()).toContain('HTTP 500');
    await page.getByRole('button', { name: 'Rotate signing secret' }).click();
    await page.getByText('New signing secret').waitFor();
    found['rotated secret'] = await seriousAxeViolations(page);
    expect(Object.fromEntries(Object.entries(found).filter(([, v]) => v.length > 0))).toEqual({});
    await page.context().close();
  });

  it('HTML in a contact’s, a campaign’s or an API key’s name is shown as text on the settings, list, campaign, preview and results pages', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner);
    for (const path of ['/app/settings/integrations', '/app/campaigns', `/app/campaigns/${launchedId}`, `/app/campaigns/${launchedId}/results`, `/app/campaigns/${draftId}/edit`]) {
      await page.goto(`${app.baseUrl}${path}`);
      await page.waitForLoadState('load');
      expect(await page.locator('main img').count(), path).toBe(0);
      expect(await page.locator('main').textContent(), path).toContain(NASTY.slice(0, 10));
    }
    const preview = page.frameLocator('iframe[name="campaign-preview"]');
    await expect.poll(() => preview.locator('[data-preview="subject"]').textContent().catch(() => ''), { timeout: 10_000 }).toMatch(/^Hi /);
    expect(await preview.locator('img').count()).toBe(0);
    expect(await page.title()).not.toBe('owned');
    await page.context().close();
  });

  it('a form posted without its CSRF token is refused (403) and changes nothing, from another site or ours', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner);
    // Another origin (the sandbox's port) auto-submits a form at our launch URL. A port does not
    // make another site, so the browser sends the session cookie along: only the token stops it.
    await page.goto(app.sandbox.urls.inbox);
    const launchUrl = `${app.baseUrl}/app/campaigns/${draftId}/launch`;
    const [forged] = await Promise.all([
      page.waitForResponse((r) => r.url() === launchUrl),
      page.evaluate(`(() => { const f = document.createElement('form'); f.method = 'post'; f.action = ${JSON.stringify(launchUrl)}; document.body.append(f); f.submit(); })()`),
    ]);
    expect(forged.status()).toBe(403);
    await page.waitForURL(launchUrl);
    await expect(page.getByText('csrf_token_invalid').count()).resolves.toBe(1);

    // Our own page with the token field removed.
    await page.goto(`${app.baseUrl}/app/campaigns/${draftId}`);
    await page.locator('form[action$="/cancel"] input[name="_csrf"]').evaluate((input) => input.remove());
    const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/cancel')), page.getByRole('button', { name: 'Cancel campaign' }).click()]);
    expect(response.status()).toBe(403);
    await expect(page.getByText('csrf_token_invalid').count()).resolves.toBe(1);

    const draft = await app.api('GET', `/api/campaigns/${draftId}`, { token: owner.token });
    expect(draft.body.status).toBe('draft');
    await page.context().close();
  });

  it('P-05 a link from another site to the Gmail connect step opens the disclosure, not Google; its own button goes on', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner);
    const version = (await app.services.policyVersions.currentDisclosure()).version;
    const toGoogle: string[] = [];
    page.on('request', (request) => {
      if (request.url().startsWith(app.sandbox.urls.authorize)) toGoogle.push(request.url());
    });
    // Another origin (the sandbox's port) links to the step with the current version, as a page anyone could write.
    await page.goto(app.sandbox.urls.inbox);
    const continueUrl = `${app.baseUrl}/app/mailboxes/connect/continue?sync=true&acknowledge=${version}`;
    await page.evaluate(`location.href = ${JSON.stringify(continueUrl)}`);
    await page.waitForURL(`${app.baseUrl}/app/mailboxes/connect?sync=true`);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toContain('How inboxtrail uses your Gmail');
    expect(toGoogle).toEqual([]);

    // Read here, the disclosure's own button (our page → our page) leads on to Google's consent.
    await Promise.all([page.waitForRequest((r) => r.url().startsWith(app.sandbox.urls.authorize)), page.getByRole('link', { name: /continue to Google/ }).click()]);
    expect(toGoogle).toHaveLength(1);
    await page.context().close();
  });
});
