import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser, WebClient } from '../helpers/web-client.js';

/*
 * A field of the web app's forms sent more than once (other than a checkbox group). The multipart
 * reader kept the last value without a word (two CSRF tokens: the last one judged; two files: the
 * last one imported), and the urlencoded parser gave a list that the pages then dropped (two CSRF
 * tokens: "out of date", 403; an optional field: lost). Both encodings are now refused the same
 * way, in one place (forms.ts assertSingleValuedFields): 400 `validation_failed` naming the field,
 * before the CSRF check, nothing done. Checkbox groups still take several values, in both.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
});
afterAll(async () => {
  await app?.close();
});

const INTEGRATIONS = '/app/settings/integrations';
const multipart = (fields: [string, string][]) => {
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  return form;
};
const urlencoded = (fields: [string, string][]) => new URLSearchParams(fields);
const keysNamed = async (name: string) => ((await owner.browser.get(INTEGRATIONS)).text.match(new RegExp(`<td>${name} <span class="muted">`, 'g')) ?? []).length;

describe('a form field sent twice', () => {
  it.each([
    ['multipart', multipart],
    ['urlencoded', urlencoded],
  ] as const)('%s: two values of one field, or two CSRF tokens, are a 400 naming the field; nothing is created', async (_kind, encode) => {
    await owner.browser.get(INTEGRATIONS);
    const token = owner.browser.csrfToken();
    const cases: [string, [string, string][]][] = [
      ['name', [['_csrf', token], ['name', `first-${_kind}`], ['name', `second-${_kind}`], ['scopes', 'read']]],
      ['_csrf', [['_csrf', 'forged-token-value'], ['_csrf', token], ['name', `csrf-${_kind}`], ['scopes', 'read']]],
      ['_csrf', [['_csrf', token], ['_csrf', token], ['name', `csrf2-${_kind}`], ['scopes', 'read']]],
    ];
    for (const [field, fields] of cases) {
      const refused = await owner.browser.request('POST', '/app/settings/api-keys', encode(fields));
      expect([field, refused.status]).toEqual([field, 400]);
      expect(refused.text).toContain('validation_failed');
      expect(refused.text).toContain(`${field}: was sent more than once`);
    }
    for (const name of [`first-${_kind}`, `second-${_kind}`, `csrf-${_kind}`, `csrf2-${_kind}`]) expect([name, await keysNamed(name)]).toEqual([name, 0]);
  });

  it.each([
    ['multipart', multipart],
    ['urlencoded', urlencoded],
  ] as const)('%s: a checkbox group still takes every box ticked', async (kind, encode) => {
    await owner.browser.get(INTEGRATIONS);
    const fields: [string, string][] = [['_csrf', owner.browser.csrfToken()], ['name', `both-scopes-${kind}`], ['scopes', 'read'], ['scopes', 'admin']];
    const created = await owner.browser.request('POST', '/app/settings/api-keys', encode(fields));
    expect(created.status).toBe(201);
    expect(created.text).toMatch(new RegExp(`<td>both-scopes-${kind} <span class="muted">[^<]*</span></td><td>read, admin</td>`));
  });

  it('the CSV upload (multipart): two files under one name are refused, not the last one read', async () => {
    await owner.browser.get('/app/contacts/import');
    const form = new FormData();
    form.append('_csrf', owner.browser.csrfToken());
    form.append('file', new Blob(['email\nfirst@example.com\n'], { type: 'text/csv' }), 'first.csv');
    form.append('file', new Blob(['email,first_name\nsecond@example.com,Sec\n'], { type: 'text/csv' }), 'second.csv');
    const refused = await owner.browser.request('POST', '/app/contacts/import/preview', form);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('file: was sent more than once');
    expect(refused.text).not.toContain('second@example.com');
  });

  it('a public form (sign-in) is refused the same way: two CSRF tokens, 400 not 403', async () => {
    const browser = new WebClient(app);
    await browser.get('/signin');
    const token = browser.csrfToken();
    const refused = await browser.request('POST', '/signin', urlencoded([['_csrf', token], ['_csrf', token], ['email', owner.email], ['password', owner.password]]));
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('_csrf: was sent more than once');
    expect(refused.headers.getSetCookie().some((c) => c.includes('session'))).toBe(false);
  });
});
