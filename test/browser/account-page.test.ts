import { readFile } from 'node:fs/promises';
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, seriousAxeViolations, signedInPage, useBrowser } from '../helpers/browser.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * The account page in a real browser with JavaScript off: reached from the navigation, the
 * name changed through its form, "Download my data" saved as a file holding the export, the
 * login-address step showing its code form (a GET page: a reload sends no second code); a
 * refused form low on a page of several forms (this one, Settings → Integrations) opening at its
 * message, JavaScript off; and (JavaScript on, for axe-core) no serious or critical
 * accessibility violation on the page, a refused form, the code step, or the (owners' and
 * admins') legal requests page.
 */

describe.skipIf(!hasChromium)('account page in a real browser', () => {
  const ctx = useBrowser();
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;

  beforeAll(async () => {
    app = await startTestApp();
    owner = await signUp(app, { workspaceName: 'Acme' });
  });
  afterAll(async () => {
    await app?.close();
  });

  /** The login-address form, sent with `password`: refused (an alert) or the code step (a status). */
  async function askForNewAddress(page: Page, password: string) {
    await page.getByLabel('New login address').fill(`new-${Date.now()}@example.com`);
    await page.locator('form[action^="/app/account/email#"]').getByLabel('Current password').fill(password);
    await page.getByRole('button', { name: 'Send a confirmation code' }).click();
  }

  it('with JavaScript off: reached from the navigation, the name changes, "Download my data" saves the export, the address step asks for the code', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner, { javaScriptEnabled: false, acceptDownloads: true });
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Account' }).click();
    await page.waitForURL(`${app.baseUrl}/app/account`);

    await page.getByLabel('Name').fill('Grace <b>Hopper</b>');
    await page.getByRole('button', { name: 'Save name' }).click();
    await page.waitForURL(/notice=saved/);
    expect(await page.locator('main').getByRole('status').textContent()).toBe('Saved.');
    expect(await page.getByLabel('Name').inputValue()).toBe('Grace <b>Hopper</b>');
    expect((await app.api('GET', '/api/me', { token: owner.token })).body.user.name).toBe('Grace <b>Hopper</b>');

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download my data' }).click()]);
    expect(download.suggestedFilename()).toBe('inboxtrail-export.json');
    const exported = JSON.parse(await readFile((await download.path())!, 'utf8')) as { format: string; user: { email: string; name: string } };
    expect(exported.user).toMatchObject({ email: owner.email, name: 'Grace <b>Hopper</b>' });

    await askForNewAddress(page, 'not-the-password');
    expect(await page.getByRole('alert').textContent()).toContain('The password does not match this account');
    await askForNewAddress(page, owner.password);
    await page.getByText('Check the new address').waitFor();
    // The code step is a GET page (Post/Redirect/Get): reloading it sends no second code.
    expect(page.url()).toBe(`${app.baseUrl}/app/account?step=email-code#email-code`);
    const codesSent = () => app.services.accountMailer.outbox!.filter((m) => m.subject.startsWith('Confirm your new')).length;
    const sent = codesSent();
    await page.reload();
    await page.getByText('Check the new address').waitFor();
    expect(codesSent()).toBe(sent);
    await page.getByLabel('Confirmation code').fill('not-a-code');
    await page.getByRole('button', { name: 'Confirm the new address' }).click();
    expect(await page.getByRole('alert').textContent()).toContain('Email change code not found');
    expect((await app.api('GET', '/api/me', { token: owner.token })).body.user.email).toBe(owner.email);
    await page.context().close();
  });

  /** Whether the whole of an element is inside the window as the page stands (not scrolled to by the test; a pixel's rounding allowed). */
  async function inViewport(page: Page, element: Locator) {
    const box = await element.boundingBox();
    return box !== null && box.y >= -1 && box.y + box.height <= page.viewportSize()!.height + 1;
  }

  it('with JavaScript off, a refused form low on the page opens at its message (account closure, a webhook endpoint); a success opens at its top', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner, { javaScriptEnabled: false, viewport: { width: 1000, height: 500 } });
    await page.goto(`${app.baseUrl}/app/account`);
    await page.locator('form[action^="/app/account/close"]').getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Close my account' }).click();
    await page.waitForURL(/\/app\/account\/close(#|$)/);
    expect(await inViewport(page, page.getByRole('alert'))).toBe(true);
    expect(page.url()).toBe(`${app.baseUrl}/app/account/close#close-error`);

    // A success's redirect keeps the action's fragment, which names nothing there: the top, and its notice.
    await page.getByLabel('Name').fill('Grace');
    await page.getByRole('button', { name: 'Save name' }).click();
    await page.waitForURL(`${app.baseUrl}/app/account?notice=saved#profile-error`);
    expect(await inViewport(page, page.locator('main').getByRole('status'))).toBe(true);

    await page.goto(`${app.baseUrl}/app/settings/integrations`);
    const addEndpoint = async (url: string) => {
      await page.getByLabel('URL').fill(url);
      await page.getByLabel('open', { exact: true }).check();
      await page.getByRole('button', { name: 'Add endpoint' }).click();
      await page.waitForURL(/\/app\/settings\/webhooks(#|$)/);
    };
    expect(await inViewport(page, page.getByRole('button', { name: 'Add endpoint' }))).toBe(false);
    await addEndpoint('http://127.0.0.1:9/hook');
    expect(await page.getByRole('alert').textContent()).toContain('private networks');
    expect(await inViewport(page, page.getByRole('alert'))).toBe(true);
    expect(page.url()).toBe(`${app.baseUrl}/app/settings/webhooks#new-webhook-error`);
    // Created: the signing secret, shown once at the top, is what the person sees.
    await addEndpoint('https://93.184.215.14/hook');
    const secret = page.locator('main').getByRole('status');
    expect(await secret.textContent()).toContain('signing secret');
    expect(await inViewport(page, secret)).toBe(true);
    await page.context().close();
  });

  it('axe-core finds no serious or critical violation on the account page, a refused form, the code step and the legal requests page', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner);
    await page.goto(`${app.baseUrl}/app/account`);
    const found: Record<string, unknown[]> = { account: await seriousAxeViolations(page) };
    await askForNewAddress(page, 'not-the-password');
    await page.getByRole('alert').waitFor();
    found['refused form'] = await seriousAxeViolations(page);
    await askForNewAddress(page, owner.password);
    await page.getByText('Check the new address').waitFor();
    found['code step'] = await seriousAxeViolations(page);
    await page.goto(`${app.baseUrl}/app/settings/legal-requests`);
    found['legal requests'] = await seriousAxeViolations(page);
    expect(Object.fromEntries(Object.entries(found).filter(([, v]) => v.length > 0))).toEqual({});
    await page.context().close();
  });
});
