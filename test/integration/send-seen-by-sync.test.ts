import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { RESOLVE_LOOKS } from '../../src/campaigns/send-recovery.js';
import { messages } from '../../src/db/schema.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { SENT_SCAN_MAX_MESSAGES } from '../../src/gmail/sent-copy.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sentCopyFixtures } from '../helpers/sent-copies.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Invariant 3 when Gmail's search index lags behind what it stores (gmail/sent-copy.ts): a send
 * whose worker died after Gmail accepted it is found by what sync read in the mailbox's history,
 * not only by `rfc822msgid:` search. Before, three searches that missed it queued a campaign
 * send again — a second copy to the same person — and reported a 1:1 send "not sent".
 * The sandbox's search index lag (`setSearchIndexLag`) hides the message from every `q=` search
 * for an hour while history and get see it at once.
 */
const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = 'seen-by-sync@acme.test';
const HOUR = 3_600_000;
let sender: { id: string };

beforeAll(async () => {
  sender = await syncedSender(SENDER);
  ctx.app.sandbox.control.setSearchIndexLag(SENDER, HOUR);
});

const db = () => ctx.app.database.db;
const later = () => new Date(Date.now() + HOUR);
const searches = () => ctx.app.sandbox.control.calls({ mailbox: SENDER, endpoint: 'list' }).length;

/** A campaign of one contact whose worker died right after Gmail accepted its message. */
const { sentCopiesWith, messageRow, oneToOneRecovery, syncedSender, ...copies } = sentCopyFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
/** A 1:1 send from this mailbox (SENDER's by default) whose worker died. */
const openOneToOne = (subject: string, from = { id: sender.id, email: SENDER }) => copies.openOneToOne(subject, from);
const crashedAfterGmail = (subject: string) => fx.crashedAfterGmail({ id: sender.id, email: SENDER }, subject, { prefix: 'seen', leaseMs: 1_000 });

describe('a send Gmail stored but its search does not show yet', { timeout: 90_000 }, () => {
  it('campaign: a look that misses has the mailbox synced, which finds it in history; recorded sent, no second copy', async () => {
    const subject = 'S1 stored, not indexed';
    const { campaignId, person } = await crashedAfterGmail(subject);
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s1', resolveDelayMs: 1 });
    const before = searches();
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) {
      await rescuer.recoverStuck(later());
      await ctx.app.services.sync.idle();
    }
    // It was searched for (and the index, an hour behind, did not have it): what sync read found it.
    expect(searches() - before).toBeGreaterThanOrEqual(1);
    const [row] = await fx.ledger(campaignId);
    expect(row).toMatchObject({ status: 'sent', attempts: 1 });
    const stored = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    expect(stored).toHaveLength(1);
    expect(row!.gmail_message_id).toBe(stored[0]!.id);

    // Nothing is queued again: the worker has nothing of it to send.
    await separateWorker(ctx.app, { workerId: 'after-s1' }).tick();
    expect(fx.sentTo(SENDER, subject).get(person.email)).toBe(1);
  });

  it('campaign: a sync pass that ran on its own (a push, the poller) settles it at the first look', async () => {
    const subject = 'S2 seen by the poller';
    const { campaignId } = await crashedAfterGmail(subject);
    expect((await ctx.app.services.sync.syncMailbox(sender.id)).status).toBe('synced');
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s2', resolveDelayMs: 1 });
    await rescuer.recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
  });

  it('1:1: found by what sync read, or the last look\'s listing of Sent; recorded sent, not "not sent"', async () => {
    const subject = 'S3 one to one';
    const row = await openOneToOne(subject);
    await ctx.app.sandbox.control.sendAs(SENDER, { to: 'someone@contoso.test', subject, text: 'hi', messageId: `<${row.rfc822MessageId}>` });
    const recovery = oneToOneRecovery('rescuer-s3');
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await recovery.recoverExpired(later());
    const stored = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    expect(await messageRow(row.id)).toMatchObject({ status: 'sent', gmailMessageId: stored[0]!.id, errorCode: null });
  });

  it('mail received with our Message-ID proves nothing (anyone who got it knows it): not found, the 1:1 send is reported not sent', async () => {
    const subject = 'S4 mailed back in';
    const row = await openOneToOne(subject);
    // Never sent; a message naming its Message-ID arrives from outside.
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: 'someone@contoso.test', subject, text: 'x', messageId: `<${row.rfc822MessageId}>` });
    expect((await ctx.app.services.sync.syncMailbox(sender.id)).status).toBe('synced');
    expect((await messageRow(row.id)).gmailMessageId).toBeNull();
    const recovery = oneToOneRecovery('rescuer-s4');
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await recovery.recoverExpired(later());
    expect(await messageRow(row.id)).toMatchObject({ status: 'failed', errorCode: 'not_sent', gmailMessageId: null });
  });
});

/*
 * A sync writing its record between the last look's read and the verdict (another process's
 * pass, or one that outlived the wait): the verdict gives way to it. The record is written by a
 * real sync pass, run right after the last look's final read.
 */
describe('a sync record landing just before the verdict', { timeout: 90_000 }, () => {
  /**
   * Sent copies whose last look lists nothing (every id counts as held already) and whose looks
   * ask for no sync; a real sync pass runs right after the `n`-th read of what sync saw.
   */
  function syncRightAfterRead(n: number) {
    let reads = 0;
    const plain = sentCopiesWith();
    return sentCopiesWith({
      heldGmailIds: async (_mailboxId, ids) => new Map(ids.map((id) => [id, new Date(0)])),
      requestSync: () => {},
      seenBySync: async (messageRowId) => {
        const seen = await plain.seenBySync(messageRowId);
        reads += 1;
        if (reads === n) expect((await ctx.app.services.sync.syncMailbox(sender.id)).status).toBe('synced');
        return seen;
      },
    });
  }

  it('campaign: the send is recorded sent, not queued again', async () => {
    const subject = 'S5 recorded at the verdict';
    const { campaignId, person } = await crashedAfterGmail(subject);
    // One read per look, two on the last: the fourth read is the last look's final one.
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s5', resolveDelayMs: 1, sentCopies: syncRightAfterRead(RESOLVE_LOOKS + 1) });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    await separateWorker(ctx.app, { workerId: 'after-s5' }).tick();
    expect(fx.sentTo(SENDER, subject).get(person.email)).toBe(1);
  });

  it('1:1: the send is recorded sent, not reported not sent', async () => {
    const subject = 'S6 one to one recorded at the verdict';
    const row = await openOneToOne(subject);
    await ctx.app.sandbox.control.sendAs(SENDER, { to: 'someone@contoso.test', subject, text: 'hi', messageId: `<${row.rfc822MessageId}>` });
    const recovery = oneToOneRecovery('rescuer-s6', syncRightAfterRead(RESOLVE_LOOKS + 1));
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await recovery.recoverExpired(later());
    expect(await messageRow(row.id)).toMatchObject({ status: 'sent', errorCode: null });
  });
});

describe('the search counts sent mail only', { timeout: 90_000 }, () => {
  it('a copy mailed back into the inbox (search index current) is not taken for the send: not sent', async () => {
    const OTHER = 'seen-by-sync-current@acme.test';
    const other = await connectedMailbox(ctx.app, ctx.owner.token, OTHER, { sync: true });
    const row = await openOneToOne('S7 inbound copy', { id: other.id, email: OTHER });
    await ctx.app.sandbox.control.deliverInbound(OTHER, { from: 'someone@contoso.test', subject: 'S7 inbound copy', text: 'x', messageId: `<${row.rfc822MessageId}>` });
    const recovery = oneToOneRecovery('rescuer-s7');
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await recovery.recoverExpired(later());
    expect(await messageRow(row.id)).toMatchObject({ status: 'failed', errorCode: 'not_sent', gmailMessageId: null });
  });
});

describe('the last look lists the sent mail itself', { timeout: 90_000 }, () => {
  it('when sync saw nothing (it never ran): the send is found there; recorded sent, one copy', async () => {
    const subject = 'S8 found by the last look';
    const { campaignId, person } = await crashedAfterGmail(subject);
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s8', resolveDelayMs: 1, sentCopies: sentCopiesWith({ requestSync: () => {} }) });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    const [row] = await fx.ledger(campaignId);
    expect(row).toMatchObject({ status: 'sent', attempts: 1 });
    expect(row!.gmail_message_id).toBe(ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject === subject)!.id);
    await separateWorker(ctx.app, { workerId: 'after-s8' }).tick();
    expect(fx.sentTo(SENDER, subject).get(person.email)).toBe(1);
  });

  it('when the person moved the copy to Trash: found all the same, one copy (a reviewer\'s finding)', async () => {
    const subject = 'S11 copy in Trash';
    const { campaignId, person } = await crashedAfterGmail(subject);
    const copy = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject === subject)!;
    ctx.app.sandbox.control.modifyLabels(SENDER, copy.id, { add: ['TRASH'] });
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s11', resolveDelayMs: 1, sentCopies: sentCopiesWith({ requestSync: () => {} }) });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1, gmail_message_id: copy.id });
    await separateWorker(ctx.app, { workerId: 'after-s11' }).tick();
    expect(fx.sentTo(SENDER, subject).get(person.email)).toBe(1);
  });

  it('a message we hold, dated by our row well before Gmail stored it, does not end the walk early (a reviewer\'s finding)', async () => {
    const subject = 'S13 behind a held message';
    const { campaignId, person } = await crashedAfterGmail(subject);
    const [open] = rowsOf<{ message_id: string }>(await db().execute(sql`select message_id from campaign_sends where campaign_id = ${campaignId}::uuid`));
    await db().execute(sql`update messages set created_at = now() - interval '6 minutes' where id = ${open!.message_id}::uuid`);
    // Sent after our copy, held by a 1:1 row dated 40 minutes back (a row is dated at its claim).
    const later1to1 = await ctx.app.sandbox.control.sendAs(SENDER, { to: 'someone@contoso.test', subject: 'S13 held', text: 'x' });
    await db().insert(messages).values({
      workspaceId: ctx.owner.workspaceId,
      mailboxId: sender.id,
      direction: 'outbound',
      status: 'sent',
      rfc822MessageId: `${randomUUID()}@acme.test`,
      gmailMessageId: later1to1.id,
      subject: 'S13 held',
      fromAddress: SENDER,
      toAddresses: ['someone@contoso.test'],
      at: new Date(Date.now() - 40 * 60_000),
    });
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s13', resolveDelayMs: 1, sentCopies: sentCopiesWith({ requestSync: () => {} }) });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    await separateWorker(ctx.app, { workerId: 'after-s13' }).tick();
    expect(fx.sentTo(SENDER, subject).get(person.email)).toBe(1);
  });

  it('when a resync moved past the copy (history gone, read by search): found all the same (an attacker\'s finding)', async () => {
    const subject = 'S10 behind a resync';
    const { campaignId, person } = await crashedAfterGmail(subject);
    ctx.app.sandbox.control.truncateHistory(SENDER);
    expect(await ctx.app.services.sync.syncMailbox(sender.id)).toMatchObject({ status: 'synced', mode: 'full', resynced: true });
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s10', resolveDelayMs: 1 });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) {
      await rescuer.recoverStuck(later());
      await ctx.app.services.sync.idle();
    }
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    await separateWorker(ctx.app, { workerId: 'after-s10' }).tick();
    expect(fx.sentTo(SENDER, subject).get(person.email)).toBe(1);
  });

  it('of three sends of one mailbox in one recovery pass, none stored: one listing serves all three, each queued again', async () => {
    // Gmail answers 500 and stores nothing: three sends of unknown outcome, none to be found.
    const fault = ctx.app.sandbox.control.injectFault({ kind: 'backendError', status: 500, endpoint: 'send', mailbox: SENDER, times: 'always' });
    const campaignIds: string[] = [];
    try {
      for (const n of [1, 2, 3]) {
        const [person] = await fx.audience(1, { prefix: `s9-${n}` });
        campaignIds.push(await fx.launched(sender.id, `S9 not stored ${n}`, [person!.id]));
      }
      await separateWorker(ctx.app, { workerId: 'failing-s9', concurrency: 1 }).tick();
    } finally {
      ctx.app.sandbox.control.removeFault(fault.id);
    }
    for (const id of campaignIds) expect((await fx.ledger(id))[0]).toMatchObject({ status: 'sending', error_code: 'outcome_unknown' });
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s9', resolveDelayMs: 1, sentCopies: sentCopiesWith({ requestSync: () => {} }) });
    for (let look = 0; look < RESOLVE_LOOKS - 1; look += 1) await rescuer.recoverStuck(later());
    const listsBefore = searches();
    await rescuer.recoverStuck(later());
    for (const id of campaignIds) expect((await fx.ledger(id))[0]).toMatchObject({ status: 'queued', error_code: 'recovered_unsent' });
    // Three searches, one listing of Sent.
    expect(searches() - listsBefore).toBe(4);
  });
});

describe('one walk of Sent per mailbox and recovery pass', { timeout: 90_000 }, () => {
  it('a last look for an older claim carries the walk on from where the previous one stopped, never over again; both found', async () => {
    const WALK = 'seen-by-sync-walk@acme.test';
    const box = await syncedSender(WALK);
    const mailbox = (await createMailboxesRepo(db()).findById(ctx.owner.workspaceId, box.id))!;
    ctx.app.sandbox.control.setSearchIndexLag(WALK, HOUR);
    const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000);
    const storedAt = async (subject: string, at: Date, messageId?: string) => {
      const copy = await ctx.app.sandbox.control.sendAs(WALK, { to: 'someone@contoso.test', subject, text: 'x', ...(messageId ? { messageId: `<${messageId}>` } : {}) });
      return ctx.app.sandbox.control.setInternalDate(WALK, copy.id, at);
    };
    // Newest first in Sent: the newer send's copy, 150 of the person's own from 25 minutes ago, the older send's copy from 40.
    const older = await openOneToOne('S16 older', { id: box.id, email: WALK });
    await db().update(messages).set({ createdAt: minutesAgo(40) }).where(eq(messages.id, older.id));
    const olderCopy = await storedAt('S16 older', minutesAgo(40), older.rfc822MessageId);
    for (let i = 0; i < 150; i += 1) await storedAt(`S16 other ${i}`, minutesAgo(25));
    const newer = await openOneToOne('S16 newer', { id: box.id, email: WALK });
    const newerCopy = await storedAt('S16 newer', new Date(), newer.rfc822MessageId);

    const copies = sentCopiesWith({ requestSync: () => {} });
    const calls = (endpoint: 'list' | 'get') => ctx.app.sandbox.control.calls({ mailbox: WALK, endpoint }).length;
    const round = { round: new Date() };
    const [lists, gets] = [calls('list'), calls('get')];
    expect(await copies.find(mailbox, { rfc822MessageId: newer.rfc822MessageId, messageRowId: newer.id }, round)).toMatchObject({ id: newerCopy.id });
    // Its search, one page; read back just past its claim (less 10 minutes): its copy and the first of the others.
    expect([calls('list') - lists, calls('get') - gets]).toEqual([2, 2]);
    expect(await copies.find(mailbox, { rfc822MessageId: older.rfc822MessageId, messageRowId: older.id }, round)).toMatchObject({ id: olderCopy.id });
    // Its search and the second page only; every message read once in all (152), none again.
    expect([calls('list') - lists, calls('get') - gets]).toEqual([4, 152]);
  });
});

describe('one walk of Sent per mailbox for the campaign and 1:1 recoveries of a pass', { timeout: 90_000 }, () => {
  it('a campaign send and a 1:1 send of one mailbox at their last looks in one pass: one listing serves both; both recorded sent', async () => {
    const SHARED = 'seen-by-sync-shared-walk@acme.test';
    const box = await syncedSender(SHARED);
    ctx.app.sandbox.control.setSearchIndexLag(SHARED, HOUR);
    const { campaignId } = await fx.crashedAfterGmail({ id: box.id, email: SHARED }, 'S20 campaign', { prefix: 's20', leaseMs: 1_000 });
    const oneToOne = await copies.openOneToOne('S20 one to one', { id: box.id, email: SHARED });
    await ctx.app.sandbox.control.sendAs(SHARED, { to: 'someone@contoso.test', subject: 'S20 one to one', text: 'hi', messageId: `<${oneToOne.rfc822MessageId}>` });
    // As app.ts wires them: one sent-copies instance; the 1:1 recovery runs in the campaign recovery's pass.
    const shared = sentCopiesWith({ requestSync: () => {} });
    const oneToOneSide = oneToOneRecovery('rescuer-s20-1to1', shared);
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s20', resolveDelayMs: 1, sentCopies: shared, alsoRecover: (asOf, round) => oneToOneSide.recoverExpired(asOf, round) });
    const calls = (endpoint: 'list' | 'get') => ctx.app.sandbox.control.calls({ mailbox: SHARED, endpoint }).length;
    const [lists, gets] = [calls('list'), calls('get')];
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    expect(await messageRow(oneToOne.id)).toMatchObject({ status: 'sent', errorCode: null });
    // A search per look and send (2 × RESOLVE_LOOKS), one page of Sent listed, each copy read once.
    expect([calls('list') - lists, calls('get') - gets]).toEqual([2 * RESOLVE_LOOKS + 1, 2]);
  });
});

describe('a last look that cannot read back to the claim', { timeout: 120_000 }, () => {
  it('more unknown sent mail since than it reads: the outcome stays unknown (failed, outcome_unknown), never sent again', async () => {
    const BUSY = 'seen-by-sync-busy@acme.test';
    const busy = await connectedMailbox(ctx.app, ctx.owner.token, BUSY, { sync: true });
    const fault = ctx.app.sandbox.control.injectFault({ kind: 'backendError', status: 500, endpoint: 'send', mailbox: BUSY, times: 'always' });
    const [person] = await fx.audience(1, { prefix: 's12' });
    const campaignId = await fx.launched(busy.id, 'S12 not stored', [person!.id]);
    try {
      await separateWorker(ctx.app, { workerId: 'failing-s12', concurrency: 1 }).tick();
    } finally {
      ctx.app.sandbox.control.removeFault(fault.id);
    }
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sending', error_code: 'outcome_unknown' });
    // The person writes more mail from Gmail since than a last look reads.
    for (let i = 0; i <= SENT_SCAN_MAX_MESSAGES; i += 1) await ctx.app.sandbox.control.sendAs(BUSY, { to: 'someone@contoso.test', subject: `S12 other ${i}`, text: 'x' });
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s12', resolveDelayMs: 1, sentCopies: sentCopiesWith({ requestSync: () => {} }) });
    const reads = () => ctx.app.sandbox.control.calls({ mailbox: BUSY, endpoint: 'get' }).length;
    const readsBefore = reads();
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'failed', error_code: 'outcome_unknown' });
    expect(reads() - readsBefore).toBe(SENT_SCAN_MAX_MESSAGES);
    await separateWorker(ctx.app, { workerId: 'after-s12' }).tick();
    expect(fx.sentTo(BUSY, 'S12 not stored').get(person!.email)).toBeUndefined();
  });
});
