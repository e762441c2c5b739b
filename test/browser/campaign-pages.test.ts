import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { hasChromium, signedInPage, useBrowser } from '../helpers/browser.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * The campaign pages in a real browser: the editor with its live preview (merge fields,
 * footer, HTML in a contact's name shown as text), saving, preflight, launch, and progress
 * updating without a reload; and the same flow with JavaScript off.
 */

describe.skipIf(!hasChromium)('campaign pages in a real browser', () => {
  const ctx = useBrowser();
  let app: TestApp;
  let owner: Awaited<ReturnType<typeof signUp>>;
  let mailboxEmail: string;

  beforeAll(async () => {
    app = await startTestApp();
    owner = await signUp(app, { workspaceName: 'Acme' });
    await app.api('PATCH', '/api/workspace', { token: owner.token, json: { name: 'Acme', postalAddress: '1 Main St, Springfield' } });
    mailboxEmail = `sender-${Date.now()}@acme.test`;
    await connectedMailbox(app, owner.token, mailboxEmail);
    for (const [email, firstName] of [
      ['ann@contoso.test', '<b>Ann</b><script>document.title="owned"</script>'],
      ['bob@contoso.test', 'Bob'],
    ]) {
      app.sandbox.control.createMailbox({ email: email! });
      const contact = await app.api('POST', '/api/contacts', { token: owner.token, json: { email, firstName } });
      await app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: owner.token, json: { status: 'opted_in', source: 'test' } });
    }
  });
  afterAll(async () => {
    await app?.close();
  });


  it('creates a campaign with a live preview, checks it, launches it, and shows progress without a reload', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner);
    await page.goto(`${app.baseUrl}/app/campaigns/new`);
    await page.getByLabel('Name', { exact: true }).fill('Spring news');
    await page.getByLabel('Subject', { exact: true }).fill('News for {{firstName | "you"}}');
    await page.getByLabel('HTML body').fill('<p>Hello {{firstName}}, read <a href="https://acme.test/spring">the news</a>.</p>');
    await page.getByLabel('As received by').selectOption({ label: '<b>Ann</b><script>document.title="owned"</script> <ann@contoso.test>' });

    // The preview follows the typing (campaign-editor.js), in a sandboxed frame.
    const frame = page.frameLocator('iframe[name="campaign-preview"]');
    await expect.poll(() => frame.locator('[data-preview="subject"]').textContent(), { timeout: 10_000 }).toBe('News for <b>Ann</b><script>document.title="owned"</script>');
    await expect(frame.locator('[data-preview="body"]').textContent()).resolves.toContain('Hello <b>Ann</b><script>');
    await expect(frame.locator('[data-preview="body"]').textContent()).resolves.toContain('1 Main St, Springfield');
    expect(await frame.locator('[data-preview="body"] b').count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Unsubscribe' }).count()).toBe(0);
    expect(await frame.getByRole('link', { name: 'Unsubscribe' }).count()).toBe(1);

    await page.getByRole('button', { name: 'Save draft' }).click();
    await page.waitForURL(/\/app\/campaigns\/[0-9a-f-]{36}\?notice=saved/);
    await page.getByRole('button', { name: 'Check before launch' }).click();
    await expect(page.locator('[data-preflight="eligible"]').textContent()).resolves.toBe('2');
    await expect(page.locator('[data-preflight="postal_address"]').textContent()).resolves.toBe('set');

    await page.getByRole('button', { name: 'Launch to 2 contacts' }).click();
    await page.waitForURL(/notice=campaign_launch/);
    await expect(page.locator('[data-count="queued"]').textContent()).resolves.toBe('2');
    // The worker sends while the page stays open; the numbers change in place.
    await app.services.sendWorker.runUntilIdle();
    await expect.poll(() => page.locator('[data-count="sent"]').textContent(), { timeout: 10_000 }).toBe('2');
    await expect.poll(() => page.locator('[data-field="status"]').textContent(), { timeout: 10_000 }).toBe('completed');
    expect(await page.title()).not.toBe('owned');
    await page.context().close();
  });

  it('works with JavaScript off: the Preview button fills the frame, more rows without losing edits, validation on the form', async () => {
    const page = await signedInPage(ctx.browser, app.baseUrl, owner, { javaScriptEnabled: false });
    await page.goto(`${app.baseUrl}/app/campaigns/new`);
    await page.getByLabel('Name', { exact: true }).fill('No script');
    await page.getByLabel('Subject', { exact: true }).fill('Plain {{firstName}}');
    await page.getByLabel('Text body').fill('Hi {{firstName}}');
    await page.getByRole('button', { name: 'Preview' }).click();
    const frame = page.frameLocator('iframe[name="campaign-preview"]');
    await expect.poll(() => frame.locator('[data-preview="subject"]').textContent().catch(() => null)).toMatch(/^Plain /);

    await page.getByRole('radio', { name: /Contacts matching/ }).check();
    await page.locator('input[name="cond0_field"]').fill('plan');
    await page.locator('input[name="cond0_value"]').fill('pro');
    await page.getByRole('button', { name: 'More rows' }).click();
    await expect(page.locator('input[name="cond0_field"]').inputValue()).resolves.toBe('plan');
    expect(await page.locator('input[name="cond1_field"]').count()).toBe(1);

    // An unknown merge field is refused with the field named, on the form, nothing saved.
    await page.getByLabel('Subject', { exact: true }).fill('Plain {{nickname}}');
    await page.getByRole('button', { name: 'Save draft' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toContain('nickname');
    await expect(page.getByLabel('Name', { exact: true }).inputValue()).resolves.toBe('No script');
    const list = await app.api('GET', '/api/campaigns', { token: owner.token });
    expect((list.body.campaigns as { name: string }[]).some((c) => c.name === 'No script')).toBe(false);
    await page.context().close();
  });
});
