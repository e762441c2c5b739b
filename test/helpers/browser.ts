import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll } from 'vitest';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';

/*
 * Real-browser tests: playwright-core drives Debian's chromium (no browser download).
 * One browser per test file, launched in beforeAll; each test opens its own context, so
 * cookies never leak between tests. Playwright gives every launch a fresh temporary
 * user-data dir, deleted when the browser closes.
 */

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM_PATH);

/** The one message a skipped browser test leaves, so a missing chromium is never mistaken for a pass. */
export const NO_CHROMIUM = `browser tests skipped: no chromium at ${CHROMIUM_PATH} (apt-get install -y chromium, or set CHROMIUM_PATH)`;
// Said once per file that imports this, since a skipped describe runs no hook that could say it.
if (!hasChromium) console.warn(NO_CHROMIUM);

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** A browser for the whole file (read `.browser` inside tests), closed afterwards. Says why when chromium is missing. */
export function useBrowser() {
  const ctx = {} as { browser: Browser };
  beforeAll(async () => {
    if (hasChromium) ctx.browser = await launchChromium();
  });
  afterAll(async () => {
    await ctx.browser?.close();
  });
  return ctx;
}

/** A page in a new context of its own (fresh cookies), with short timeouts so a broken page fails fast. */
export async function newPage(browser: Browser, options: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(10_000);
  return context.newPage();
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/**
 * axe-core's scan of the page as it stands. axe is evaluated through the DevTools
 * protocol, which the page's CSP does not govern, so the page keeps its real policy.
 * Returns the serious and critical violations (WCAG 2.x A/AA rules and best practices).
 */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  // A string, evaluated in the page (this project's TypeScript has no DOM types).
  const violations = await page.evaluate<AxeViolation[]>(`axe.run(document, { resultTypes: ['violations'] }).then((result) =>
    result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => JSON.stringify(n.target)) })))`);
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** A new page signed in through the sign-in form, as a person does (a session cookie, no bearer token). */
export async function signedInPage(browser: Browser, baseUrl: string, account: { email: string; password: string }, options: BrowserContextOptions = {}): Promise<Page> {
  const page = await newPage(browser, options);
  await page.goto(`${baseUrl}/signin`);
  await page.getByLabel('Email').fill(account.email);
  await page.getByLabel('Password').fill(account.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/app\//);
  return page;
}
