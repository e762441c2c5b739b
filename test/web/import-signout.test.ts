import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser } from '../helpers/web-client.js';

/*
 * A CSV import started in the browser writes its file batch by batch, checking its caller before
 * each (removal, a revoked key: test/integration/api-keys-revoke-in-flight.test.ts). Signing out
 * was not among what it checked: the import went on to the last row for a person who had left.
 * Now the browser's session itself is checked (web-sessions.service recheck): signing out stops
 * the import before its next batch, and the page says how far it got.
 */

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const ROWS = 10_000;
const BATCH = 200;

const count = async (query: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await app.database.db.execute(query))[0]!.n);
const contactsOf = (prefix: string) => count(sql`select count(*)::int as n from contacts where email like ${`${prefix}%`}`);
const consentsOf = (prefix: string) =>
  count(sql`select count(*)::int as n from consents r join contacts c on c.id = r.contact_id where c.email like ${`${prefix}%`}`);

describe('signing out during a CSV import started in the browser', () => {
  it('stops it before its next batch: whole batches only, and a page saying how far it got', async () => {
    const { browser } = await signUpInBrowser(app);
    const prefix = `signout-${Date.now()}-`;
    const lines = ['email,consent'];
    for (let i = 0; i < ROWS; i += 1) lines.push(`${prefix}${i}@example.com,opted_in`);
    await browser.get('/app/contacts/import');
    const importing = browser.postMultipart('/app/contacts/import', { csv: `${lines.join('\n')}\n`, map0: 'email', map1: 'consent' });

    const deadline = Date.now() + 60_000;
    while ((await contactsOf(prefix)) === 0) {
      if (Date.now() > deadline) throw new Error('the import never started writing');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const signedOut = await browser.post('/signout', {});
    expect([signedOut.status, signedOut.location]).toEqual([303, '/signin?signed_out=1']);
    const atSignOut = await contactsOf(prefix);

    const stopped = await importing;
    const written = await contactsOf(prefix);
    expect(atSignOut).toBeLessThan(ROWS / 2);
    expect(written).toBeLessThanOrEqual(atSignOut + BATCH);
    // Batches are whole: every contact written has its consent, and the count is a number of batches.
    expect(written % BATCH).toBe(0);
    expect(await consentsOf(prefix)).toBe(written);

    expect(stopped.status).toBe(401);
    expect(stopped.text).toContain('<h1>Import stopped</h1>');
    expect(stopped.text).toContain('<code>invalid_token</code>');
    expect(stopped.text).toContain(`The first ${written} rows of the file were dealt with; nothing after them was imported.`);
    expect(stopped.text).toContain(`<th scope="row">Created</th><td>${written}</td>`);
    expect(stopped.text).toContain('import the same file again');
    // Not the app's frame: nobody is signed in.
    expect(stopped.text).not.toContain('action="/signout"');

    // Nothing goes on after the answer.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await contactsOf(prefix)).toBe(written);
  }, 120_000);
});
