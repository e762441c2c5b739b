import { expect } from 'vitest';
import { liftPause as liftMailboxPause } from '../../src/gmail/limit-store.js';
import type { TestApp } from './test-app.js';

/** The `name=value` of each cookie a response sets, as a browser would send them back. */
export function cookiesFrom(response: { headers: Headers }): string {
  return response.headers.getSetCookie().map((cookie) => cookie.split(';')[0]).join('; ');
}

/**
 * Connects a sandbox mailbox the way a person does: ask for the consent URL, follow it
 * (the test sandbox approves as the mailbox named by login_hint), then hand the callback's
 * query to our callback route with the cookie the connect step set, as the browser would.
 */
export async function connectMailbox(app: TestApp, token: string, email: string, options: { sync?: boolean } = {}) {
  const { start, callbackQuery, finish } = await approveConnection(app, token, email, options);
  return { start, callbackQuery, response: await finish() };
}

/** The connection up to Google's answer; `finish()` opens the callback, as the browser would, whenever the test says. */
export async function approveConnection(app: TestApp, token: string, email: string, options: { sync?: boolean } = {}) {
  if (!app.sandbox.control.getMailbox(email)) app.sandbox.control.createMailbox({ email });
  const start = await app.api('GET', `/api/gmail/connect?sync=${options.sync ?? false}&loginHint=${encodeURIComponent(email)}`, {
    token,
    headers: { accept: 'application/json' },
  });
  expect(start.status).toBe(200);
  const consent = await fetch(start.body.url, { redirect: 'manual' });
  expect(consent.status).toBe(302);
  const callback = new URL(consent.headers.get('location')!);
  const finish = () => app.api('GET', `/api/gmail/callback${callback.search}`, { headers: { accept: 'application/json', cookie: cookiesFrom(start) } });
  return { start, callbackQuery: callback.search, finish };
}

export async function connectedMailbox(app: TestApp, token: string, email: string, options: { sync?: boolean } = {}) {
  const { response } = await connectMailbox(app, token, email, options);
  if (response.status !== 201) throw new Error(`connect failed: ${response.status} ${response.text}`);
  return response.body as { id: string; email: string; status: string; scopes: string[] };
}

/**
 * The recipient answers the campaign message with this subject in the sender's mailbox (what
 * sync reads next): a person's reply, or (`automatic`) an out-of-office, threaded to it.
 */
export async function recipientAnswers(app: TestApp, sender: string, recipient: string, subject: string, automatic = false): Promise<void> {
  const original = app.sandbox.control.listMessages(recipient).find((m) => m.subject.includes(subject))!;
  await app.sandbox.control.deliverInbound(sender, {
    from: recipient,
    subject: automatic ? `Automatic reply: ${subject}` : `Re: ${subject}`,
    inReplyTo: original.messageId,
    references: original.messageId,
    ...(automatic ? { headers: { 'Auto-Submitted': 'auto-replied', 'X-Autoreply': 'yes' } } : {}),
    text: automatic ? 'I am out of the office until next week.' : 'Thanks, not interested.',
  });
}

/**
 * Ends the mailbox's rate-limit pause (a 429 the test caused, limit-store.ts `pause`) and nothing
 * else. `pacer.forget`, a reconnect's reset, also asks for the daily budget to be counted again,
 * and that recount holds the next send until the last grant is budgetClaimGraceMs old.
 */
export async function liftPause(app: TestApp, mailboxId: string): Promise<void> {
  await liftMailboxPause(app.database.db, mailboxId);
}
