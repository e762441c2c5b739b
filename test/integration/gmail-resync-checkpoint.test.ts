import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { resyncFixtures } from '../helpers/gmail-resync.js';
import { ALICE, BOB, useSyncApp } from '../helpers/gmail-sync.js';

/*
 * A resync reads every message since the last sync, oldest first (up to 50,000): a pass that
 * fails part way — Gmail failing for a while, the process killed by a deploy — used to start
 * over from the first message, so a large resync could keep failing at the same place and
 * never finish, the mailbox's sequences waiting all along. It now records how far it got
 * (`mailboxes.resync_checkpoint`, after each batch of 200 read), and the next try of the same
 * window goes on after that — first reading what entered the window since the first try began
 * (history since then), and with the counts of what was read before recorded once.
 */
const ctx = useSyncApp();
const { sync, syncedRows, mailboxView, query } = ctx;
const { reads, checkpointOf, deliver, unreadInWindow, resyncFailingAfter } = resyncFixtures(ctx);

describe('a resync that fails part way', () => {
  it('a reply taken out of Spam between the two tries (before the checkpoint in the listing) is read (a reviewer\'s finding)', { timeout: 120_000 }, async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: BOB, subject: 'Offer', text: 'x' } });
    expect(sent.status).toBe(201);
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced' });
    const bobsCopy = ctx.app.sandbox.control.listMessages(BOB).find((m) => m.subject === 'Offer')!;
    await ctx.app.sandbox.control.reply(BOB, bobsCopy.id, { text: 'yes please' });
    const reply = ctx.app.sandbox.control.listMessages(ALICE).find((m) => m.subject === 'Re: Offer')!;
    ctx.app.sandbox.control.modifyLabels(ALICE, reply.id, { add: ['SPAM'], remove: ['INBOX'] });
    await deliver(500, 'noise');
    await resyncFailingAfter(300);

    // The person marks it "Not spam" before the next try.
    ctx.app.sandbox.control.modifyLabels(ALICE, reply.id, { add: ['INBOX'], remove: ['SPAM'] });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    expect(await query(sql`select id from mail_events where message_id = ${sent.body.id}::uuid and type = 'reply'`)).toHaveLength(1);
  });

  it('goes on after what it read, and keeps everything', { timeout: 120_000 }, async () => {
    const MESSAGES = 1_000;
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced' });
    const before = (await syncedRows(ctx.alice.id)).length;
    const healthBefore = (await mailboxView(ctx.alice.id)).sync.health;
    // Mostly strangers' mail (read, not kept), every tenth message from a contact (kept).
    await deliver(MESSAGES, 'while away', 10);
    const toRead = await unreadInWindow();
    // Gmail starts failing every read once the resync has read half of the window.
    const firstTry = await resyncFailingAfter(toRead / 2);

    const secondStart = reads();
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    const secondTry = reads() - secondStart;
    // The first try read about half and recorded a checkpoint after each batch of 200: the second goes on after
    // the last, reading the rest but what the first stored — from the start, it read all but that.
    expect(firstTry).toBeGreaterThanOrEqual(toRead / 2);
    expect(secondTry).toBeLessThanOrEqual(toRead - 200 * Math.floor(toRead / 2 / 200));
    const subjects = (await syncedRows(ctx.alice.id)).map((r) => r.subject);
    expect(subjects.length).toBe(before + MESSAGES / 10);
    for (let i = 0; i < MESSAGES; i += 10) expect(subjects).toContain(`while away ${i}`);
    expect(await checkpointOf()).toBeNull();
    const view = await mailboxView(ctx.alice.id);
    expect(view.sync.lastError).toBeNull();
    expect(view.sync.lastGap).toBeNull();
    // Each message of the window counted once as read, whichever try read it last: what the
    // first try read up to its checkpoint (not read again) with the checkpoint, the rest once.
    expect(view.sync.health.read - healthBefore.read).toBe(toRead);
    expect(view.sync.health.kept - healthBefore.kept).toBe(MESSAGES / 10);
    // A sync after it reads history again.
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental' });
  });

});
