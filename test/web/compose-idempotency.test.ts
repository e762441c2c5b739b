import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { parseInput } from '../../src/http/validate.js';
import { sendMessageBody } from '../../src/messages/messages.routes.js';
import { composeRequestHash } from '../../src/web/messages.pages.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { signUpInBrowser } from '../helpers/web-client.js';

/*
 * The compose form's one-time key is the send's Idempotency-Key as on POST /api/messages
 * (idempotency/README.md): it holds a lease until the send's claim links the message. A request
 * that died before its claim (modelled as in idempotency.test.ts: the row a kill -9 leaves) left
 * a key a resubmit could never use ("being sent already" for 24 hours, nothing sent); now the
 * resubmit takes it over once the lease is over and the mail goes out once.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUpInBrowser>>;
let token: string;
let mailboxId: string;

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUpInBrowser(app);
  token = (await app.api('POST', '/api/auth/login', { json: { email: owner.email, password: owner.password } })).body.token;
  mailboxId = (await connectedMailbox(app, token, 'compose-key-sender@acme.test')).id;
});
afterAll(async () => {
  await app?.close();
});

const inbox = (to: string) => app.sandbox.control.listMessages(to);

/** A contact of one's own at an address of its own (a contact per address), whose mailbox the sandbox keeps. */
async function contactAt(to: string): Promise<string> {
  app.sandbox.control.createMailbox({ email: to });
  const created = await app.api('POST', '/api/contacts', { token, json: { email: to } });
  expect(created.status).toBe(201);
  return created.body.id as string;
}
const keyRow = async (key: string) =>
  rowsOf<{ state: string; message_id: string | null; lease_expires_at: unknown }>(
    await app.database.db.execute(sql`select state, message_id, lease_expires_at from idempotency_keys where key = ${key}`),
  )[0];

/** A compose form of `contactId`, with its own key, for `subject`. */
async function composeForm(contactId: string, subject: string) {
  const page = await owner.browser.get(`/app/contacts/${contactId}/compose`);
  const sendKey = /name="sendKey" value="([A-Za-z0-9_-]+)"/.exec(page.text)![1]!;
  return { mailboxId, subject, text: 'hello', sendKey };
}

/** What a crash leaves of the form's send: its key `in_progress`, ten minutes old, with `left` (lease: SQL interval from now). */
async function leaveKey(contactId: string, to: string, form: { sendKey: string; subject: string }, left: { lease?: string; messageId?: string }) {
  const mail = parseInput(sendMessageBody, { mailboxId, to, subject: form.subject, text: 'hello' });
  const lease = left.lease === undefined ? sql`null` : sql`now() + ${left.lease}::interval`;
  const me = (await app.api('GET', '/api/me', { token })).body as { user: { id: string }; workspace: { id: string } };
  await app.database.db.execute(sql`
    insert into idempotency_keys (workspace_id, caller, route, key, request_hash, state, created_at, expires_at, message_id, lease_expires_at)
    values (${me.workspace.id}::uuid, ${`user:${me.user.id}`}, 'POST /app/contacts/:id/compose', ${form.sendKey},
            ${composeRequestHash(contactId, mail)}, 'in_progress', date_trunc('milliseconds', now()) - interval '10 minutes', now() + interval '1 day',
            ${left.messageId ?? null}::uuid, ${lease})`);
}

describe('the compose form\'s Idempotency-Key is the send\'s, as on POST /api/messages', () => {
  it('a send from the form links its message to the key (the lease ends with the link); a resubmit answers it', async () => {
    const to = 'linked@contoso.test';
    const contactId = await contactAt(to);
    const form = await composeForm(contactId, 'Linked');
    const sent = await owner.browser.post(`/app/contacts/${contactId}/compose`, form);
    expect([sent.status, sent.location]).toEqual([303, `/app/contacts/${contactId}?notice=sent`]);
    const row = await keyRow(form.sendKey);
    expect(row).toMatchObject({ state: 'completed', lease_expires_at: null });
    expect(row!.message_id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await owner.browser.post(`/app/contacts/${contactId}/compose`, form)).location).toBe(`/app/contacts/${contactId}?notice=sent`);
    expect(inbox(to)).toHaveLength(1);
  });

  it('a send that died before its claim: "being sent" while its lease is live; once it is over, the resubmit takes the key over and sends once', async () => {
    const to = 'gone@contoso.test';
    const contactId = await contactAt(to);
    const form = await composeForm(contactId, 'Gone before its claim');
    await leaveKey(contactId, to, form, { lease: '1 minute' });
    const live = await owner.browser.post(`/app/contacts/${contactId}/compose`, form);
    expect(live.status).toBe(409);
    expect(live.text).toContain('This mail is being sent already');
    expect(inbox(to)).toHaveLength(0);

    await app.database.db.execute(sql`update idempotency_keys set lease_expires_at = now() - interval '1 second' where key = ${form.sendKey}`);
    const taken = await owner.browser.post(`/app/contacts/${contactId}/compose`, form);
    expect([taken.status, taken.location]).toEqual([303, `/app/contacts/${contactId}?notice=sent`]);
    const again = await owner.browser.post(`/app/contacts/${contactId}/compose`, form);
    expect([again.status, again.location]).toEqual([303, `/app/contacts/${contactId}?notice=sent`]);
    expect(inbox(to)).toHaveLength(1);
    expect(await keyRow(form.sendKey)).toMatchObject({ state: 'completed', lease_expires_at: null });
  });

  it('a send that died after its claim: the resubmit answers the message it claimed (sent), and sends nothing more', async () => {
    const to = 'claimed@contoso.test';
    const contactId = await contactAt(to);
    const form = await composeForm(contactId, 'Claimed then crashed');
    // The message the crashed request claimed and Gmail accepted (sent through the API here, under another key).
    const first = await app.api('POST', '/api/messages', { token, json: { mailboxId, to, subject: form.subject, text: 'hello' } });
    expect(first.status).toBe(201);
    await leaveKey(contactId, to, form, { messageId: first.body.id });
    const resubmit = await owner.browser.post(`/app/contacts/${contactId}/compose`, form);
    expect([resubmit.status, resubmit.location]).toEqual([303, `/app/contacts/${contactId}?notice=sent`]);
    expect(inbox(to)).toHaveLength(1);
  });
});
