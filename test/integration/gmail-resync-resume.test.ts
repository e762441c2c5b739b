import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { resyncFixtures } from '../helpers/gmail-resync.js';
import { ALICE, BOB, useSyncApp } from '../helpers/gmail-sync.js';

/*
 * The resync's resume (gmail/sync-pass.ts) where a second reviewer broke it, and what a resync
 * lists: three tries in a row, a try that must start over, a reply already in Trash.
 */
const ctx = useSyncApp();
const { sync, syncedRows, mailboxView, query } = ctx;
const { deliver, unreadInWindow, resyncFailingAfter } = resyncFixtures(ctx);

describe('resuming a resync', () => {
  it('a reply the person deleted before the resync is read all the same (Trash is listed, Spam is not)', { timeout: 60_000 }, async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: BOB, subject: 'Offer', text: 'x' } });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced' });
    const bobsCopy = ctx.app.sandbox.control.listMessages(BOB).find((m) => m.subject === 'Offer')!;
    await ctx.app.sandbox.control.reply(BOB, bobsCopy.id, { text: 'no thanks' });
    const reply = ctx.app.sandbox.control.listMessages(ALICE).find((m) => m.subject === 'Re: Offer')!;
    ctx.app.sandbox.control.modifyLabels(ALICE, reply.id, { add: ['TRASH'], remove: ['INBOX'] });
    ctx.app.sandbox.control.truncateHistory(ALICE);
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    expect(await query(sql`select id from mail_events where message_id = ${sent.body.id}::uuid and type = 'reply'`)).toHaveLength(1);
  });

  it('a try that must start over (the history since the failed one began is gone) counts each message once', { timeout: 120_000 }, async () => {
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced' });
    const before = (await mailboxView(ctx.alice.id)).sync.health.read;
    await deliver(400, 'noise');
    const toRead = await unreadInWindow();
    await resyncFailingAfter(250);
    await deliver(1, 'later');
    // History since the first try began is gone too: the second try reads the window from the start.
    ctx.app.sandbox.control.truncateHistory(ALICE);
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    expect((await mailboxView(ctx.alice.id)).sync.health.read - before).toBe(toRead + 1);
  });

  it('three tries in a row, new mail between them: the third reads everything the first two did not', { timeout: 180_000 }, async () => {
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced' });
    await deliver(600, 'old', 10);
    await resyncFailingAfter(250);
    // New mail, then a second try (it reads what came since the first began, then goes on) that fails too.
    await deliver(300, 'new');
    await resyncFailingAfter(230, { keepHistory: true });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    const subjects = new Set((await syncedRows(ctx.alice.id)).map((r) => r.subject));
    const missing = Array.from({ length: 60 }, (_, i) => `old ${i * 10}`).filter((subject) => !subjects.has(subject));
    expect(missing).toEqual([]);
  });
});

