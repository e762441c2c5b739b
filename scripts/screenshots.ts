/*
 * npm run screenshots: PNGs of the main pages in docs/screenshots/, for the README and for
 * anyone who wants to see the app without running it. Starts the real app on a throwaway
 * in-memory database with the Gmail sandbox, fills it with a small story through the API
 * (a workspace, a connected mailbox, contacts with consent, a sent campaign that was opened,
 * clicked and unsubscribed from), then drives Debian's chromium through the pages.
 */
import { mkdirSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { chromium, type Page } from 'playwright-core';
import { createServices } from '../src/app.js';
import { createApp, createHttpServer } from '../src/http/express-app.js';
import { lastSignupCode } from '../src/auth/account-mail.js';
import { loadConfig } from '../src/config.js';
import { connect } from '../src/db/connect.js';
import { resolveGoogle } from '../src/gmail/google-settings.js';
import { createLogger } from '../src/logger.js';

const OUT = 'docs/screenshots';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OWNER = { email: 'maria@acme.test', password: 'a long enough password', workspaceName: 'Acme Outdoor' };
const PERSON_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

async function freePort(): Promise<number> {
  const probe = createNetServer().listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => probe.once('listening', () => resolve()));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function main() {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  // Test mode: account mail stays in memory (the signup code is read from it) and secrets are fixed, throwaway ones.
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    PUBLIC_BASE_URL: baseUrl,
    JWT_SECRET: 'screenshots-jwt-secret-that-is-long-enough-0123',
    TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 3).toString('base64')}`,
    TRACKING_SECRET: 'v1:screenshots-tracking-secret-long-enough-0123',
  });
  const database = await connect({ kind: 'pglite', dir: 'memory://' });
  await database.migrate();
  const google = await resolveGoogle(config, { autoApprove: true, sandboxPort: 0 });
  const deps = { config, database, logger: createLogger('warn'), google };
  const services = createServices(deps);
  const server = createHttpServer(createApp(deps, services), services).listen(port, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const sandbox = google.sandbox!;

  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      redirect: 'manual',
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return { res, json: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : undefined };
  };

  // The story, through the API.
  await api('POST', '/api/auth/signup', OWNER);
  const { json: account } = await api('POST', '/api/auth/signup/verify', { code: lastSignupCode(services.accountMailer.outbox ?? [], OWNER.email) });
  const auth = { authorization: `Bearer ${account.token}` };
  await api('PATCH', '/api/workspace', { name: OWNER.workspaceName, postalAddress: '1 Trail Road, Boulder CO 80302' }, auth);
  sandbox.control.createMailbox({ email: 'news@acme.test' });
  const { res: start, json: connectStart } = await api('GET', '/api/gmail/connect?sync=true&loginHint=news%40acme.test', undefined, { ...auth, accept: 'application/json' });
  const consent = await fetch(connectStart.url, { redirect: 'manual' });
  const callback = new URL(consent.headers.get('location')!);
  const cookie = start.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const { json: mailbox } = await api('GET', `/api/gmail/callback${callback.search}`, undefined, { accept: 'application/json', cookie });
  const people = [
    ['ann@contoso.test', 'Ann', 'Lee', 'pro'],
    ['bob@contoso.test', 'Bob', 'Stone', 'free'],
    ['cleo@contoso.test', 'Cleo', 'Park', 'pro'],
    ['dev@contoso.test', 'Dev', 'Rao', 'team'],
  ];
  const contactIds: string[] = [];
  for (const [email, firstName, lastName, plan] of people) {
    sandbox.control.createMailbox({ email: email! });
    const { json: contact } = await api('POST', '/api/contacts', { email, firstName, lastName, attributes: { plan } }, auth);
    await api('POST', `/api/contacts/${contact.id}/consents`, { status: 'opted_in', source: 'signup form' }, auth);
    contactIds.push(contact.id);
  }
  const html = '<p>Hi {{firstName | "there"}},</p><p>The spring trails are open. Read <a href="https://acme.test/spring">the trail report</a> or <a href="https://acme.test/shop">shop the new boots</a>.</p>';
  const { json: campaign } = await api('POST', '/api/campaigns', { name: 'Spring trails', kind: 'marketing', mailboxId: mailbox.id, subject: 'Spring trails are open, {{firstName}}', html, topic: 'news', segment: { all: [{ field: 'email', op: 'exists' }] }, steps: [{ afterDays: 3, text: 'Did you see the trail report, {{firstName}}?' }] }, auth);
  await api('POST', `/api/campaigns/${campaign.id}/launch`, {}, auth);
  await services.sendWorker.runUntilIdle();
  await api('POST', '/api/campaigns', { name: 'Summer gear', kind: 'marketing', mailboxId: mailbox.id, subject: 'Summer gear for {{firstName}}', html, segment: { any: [{ field: 'attributes.plan', op: 'eq', value: 'pro' }] } }, auth);

  // Recipients open and click (as people, later) and one unsubscribes.
  const links = (email: string) => {
    const message = sandbox.control.listMessages(email).find((m) => m.subject.startsWith('Spring trails'))!;
    const raw = sandbox.control.getMessage(email, message.id).raw.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    return [...raw.matchAll(/http:\/\/127\.0\.0\.1:\d+\/(?:t\/[oc]|u|p)\/[A-Za-z0-9_.-]+/g)].map((m) => new URL(m[0]).pathname);
  };
  await new Promise((resolve) => setTimeout(resolve, 10_500)); // past "too soon after sending": these are people
  for (const [i, [email]] of people.entries()) {
    const paths = links(email!);
    const person = { 'user-agent': PERSON_UA };
    for (const path of paths.filter((p) => p.startsWith('/t/o/'))) await fetch(`${baseUrl}${path}`, { headers: person });
    if (i < 2) await fetch(`${baseUrl}${paths.find((p) => p.startsWith('/t/c/'))!}`, { headers: person, redirect: 'manual' });
    if (i === 3) await fetch(`${baseUrl}${paths.find((p) => p.startsWith('/t/o/'))!}`, { headers: { 'user-agent': 'Mozilla/5.0 (compatible; GoogleImageProxy)' } });
  }
  const unsubscribePath = links('bob@contoso.test').find((p) => p.startsWith('/u/'))!;
  await fetch(`${baseUrl}${unsubscribePath}`, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  await services.tracking.flush();

  // The pages.
  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${baseUrl}/signin`);
    const shoot = async (name: string, target: Page = page) => {
      await target.waitForLoadState('load');
      await target.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
      console.log(`${OUT}/${name}.png`);
    };
    await shoot('signin');
    await page.getByLabel('Email').fill(OWNER.email);
    await page.getByLabel('Password').fill(OWNER.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/app\//);
    await page.goto(`${baseUrl}/app/mailboxes`);
    await shoot('mailboxes');
    await page.goto(`${baseUrl}/app/campaigns`);
    await shoot('campaigns');
    const draft = page.getByRole('link', { name: 'Summer gear' });
    await draft.click();
    await page.getByRole('link', { name: 'Edit' }).click();
    await page.frameLocator('iframe[name="campaign-preview"]').locator('[data-preview="subject"]').waitFor();
    await shoot('campaign-editor');
    await page.goBack();
    await page.getByRole('button', { name: 'Check before launch' }).click();
    await shoot('campaign-preflight');
    await page.goto(`${baseUrl}/app/campaigns/${campaign.id}`);
    await shoot('campaign-progress');
    await page.goto(`${baseUrl}/app/campaigns/${campaign.id}/results`);
    await page.locator('#opens-clicks canvas').waitFor();
    await shoot('campaign-results');

    const phone = await browser.newContext({ viewport: { width: 390, height: 760 }, deviceScaleFactor: 2, isMobile: true, javaScriptEnabled: false });
    const recipient = await phone.newPage();
    await recipient.goto(`${baseUrl}${links('ann@contoso.test').find((p) => p.startsWith('/u/'))!}`);
    await shoot('recipient-unsubscribe', recipient);
    await recipient.goto(`${baseUrl}${links('ann@contoso.test').find((p) => p.startsWith('/p/'))!}`);
    await shoot('recipient-preferences', recipient);
  } finally {
    await browser.close();
    server.closeAllConnections();
    server.close();
    await services.tracking.close({ timeoutMs: 2_000 });
    await sandbox.close();
    await database.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
