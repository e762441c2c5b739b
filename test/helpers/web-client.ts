import type { TestApp } from './test-app.js';
import { lastSignupCode } from '../../src/auth/account-mail.js';

export interface PageResponse {
  status: number;
  headers: Headers;
  text: string;
  /** Where a redirect points (path and query), if it is one. */
  location?: string;
}

/**
 * A browser, as far as the web app can tell: keeps cookies, follows nothing by itself
 * (tests look at each redirect), and posts forms with the CSRF token of the last page.
 */
export class WebClient {
  readonly cookies = new Map<string, string>();
  lastPage = '';

  constructor(readonly app: TestApp) {}

  private cookieHeader() {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  private keepCookies(headers: Headers) {
    for (const line of headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, ...rest] = pair!.split('=');
      const value = rest.join('=');
      const expired = /expires=Thu, 01 Jan 1970/i.test(line) || value === '';
      if (expired) this.cookies.delete(name!.trim());
      else this.cookies.set(name!.trim(), value);
    }
  }

  async request(method: string, path: string, body?: URLSearchParams | FormData | string, headers: Record<string, string> = {}): Promise<PageResponse> {
    const response = await fetch(`${this.app.baseUrl}${path}`, {
      method,
      headers: {
        ...(this.cookies.size ? { cookie: this.cookieHeader() } : {}),
        ...(body instanceof URLSearchParams ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        ...headers,
      },
      body,
      redirect: 'manual',
    });
    this.keepCookies(response.headers);
    const text = await response.text();
    if (response.headers.get('content-type')?.includes('html')) this.lastPage = text;
    const location = response.headers.get('location') ?? undefined;
    return { status: response.status, headers: response.headers, text, location };
  }

  get(path: string) {
    return this.request('GET', path);
  }

  /** The CSRF token of the last page rendered (every form carries the same one). */
  csrfToken(): string {
    const match = /name="_csrf" value="([^"]+)"/.exec(this.lastPage);
    if (!match) throw new Error('the last page has no form with a CSRF token');
    return match[1]!;
  }

  /** Posts a form with files (multipart/form-data), with the CSRF token of the last page. */
  postMultipart(path: string, fields: Record<string, string>, files: Record<string, { name: string; content: string; type?: string }> = {}) {
    const form = new FormData();
    form.set('_csrf', this.csrfToken());
    for (const [name, value] of Object.entries(fields)) form.set(name, value);
    for (const [name, file] of Object.entries(files)) form.set(name, new Blob([file.content], { type: file.type ?? 'text/csv' }), file.name);
    return this.request('POST', path, form);
  }

  /** Posts a form as the browser would: with the CSRF token from the last page unless told otherwise. */
  post(path: string, fields: Record<string, string>, options: { csrf?: string | null } = {}) {
    const form = new URLSearchParams(fields);
    const token = options.csrf === undefined ? this.csrfToken() : options.csrf;
    if (token !== null) form.set('_csrf', token);
    return this.request('POST', path, form);
  }
}

let counter = 0;
/** Signs up through the pages (form, mailed code, confirmation) and returns the signed-in browser. */
export async function signUpInBrowser(app: TestApp, overrides: { email?: string; workspaceName?: string } = {}) {
  counter += 1;
  const email = overrides.email ?? `web${counter}-${Date.now()}@example.com`;
  const password = 'a-long-enough-password';
  const browser = new WebClient(app);
  await browser.get('/signup');
  const asked = await browser.post('/signup', { email, password, workspaceName: overrides.workspaceName ?? `Web workspace ${counter}` });
  if (asked.status !== 303) throw new Error(`signup form failed: ${asked.status} ${asked.text}`);
  await confirmInBrowser(app, browser, email);
  return { browser, email, password };
}

/**
 * Pastes the code mailed to `email` on the confirmation page, as its owner would: a signup's, or
 * (with `invited`: the password and name chosen there) an invitation's to a new address.
 */
export async function confirmInBrowser(app: TestApp, browser: WebClient, email: string, invited?: { password: string; name?: string }) {
  await browser.get(invited === undefined ? '/signup/verify' : '/signup/verify?invited=1');
  const code = lastSignupCode(app.services.accountMailer.outbox ?? [], email);
  if (!code) throw new Error(`no confirmation code mailed to ${email}`);
  const done = await browser.post('/signup/verify', invited === undefined ? { code } : { code, invited: '1', ...invited });
  if (done.status !== 303) throw new Error(`confirmation failed: ${done.status} ${done.text}`);
  return done;
}


/** An owner's browser invites a member from the settings page; the member accepts in a browser of their own. */
export async function memberInBrowser(app: TestApp, ownerBrowser: WebClient): Promise<WebClient> {
  await ownerBrowser.get('/app/settings');
  const email = `member-${Date.now()}-${(counter += 1)}@example.com`;
  const invited = await ownerBrowser.post('/app/settings/invitations', { email, role: 'member' });
  const code = /<code>([A-Za-z0-9_-]{20,})<\/code>/.exec(invited.text)?.[1];
  if (!code) throw new Error(`no invitation code on the settings page: ${invited.status}`);
  const member = new WebClient(app);
  await member.get('/invitations/accept');
  const accepted = await member.post('/invitations/accept', { token: code, password: '' });
  if (accepted.status !== 303 || accepted.location !== '/signup/verify?invited=1') throw new Error(`invitation not accepted: ${accepted.status} ${accepted.text}`);
  // A new address: the code mailed to it, with the password chosen there, finishes joining.
  await confirmInBrowser(app, member, email, { password: 'member-password-long' });
  return member;
}
