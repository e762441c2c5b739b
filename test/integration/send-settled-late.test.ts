import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { RESOLVE_LOOKS } from '../../src/campaigns/send-recovery.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { GMAIL_SCOPES } from '../../src/gmail/gmail-client.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { SENT_SCAN_MAX_MESSAGES, UNDECIDED } from '../../src/gmail/sent-copy.js';
import { createSyncRepo, type SyncRepo } from '../../src/gmail/sync.repo.js';
import { createSyncService } from '../../src/gmail/sync.service.js';
import { createLogger } from '../../src/logger.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { sentCopyFixtures } from '../helpers/sent-copies.js';
import { useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const { sentCopiesWith, messageRow, oneToOneRecovery, openOneToOne, syncedSender } = sentCopyFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = 'settled-late@acme.test';
const HOUR = 3_600_000;
let sender: { id: string };

beforeAll(async () => {
  sender = await syncedSender(SENDER);
});

const db = () => ctx.app.database.db;
const later = () => new Date(Date.now() + HOUR);

/*
 * A send recovery gave up on — a 1:1 "not sent", an outcome left unknown for good — that sync
 * later meets in Sent went out after all: recorded sent (sync.repo.ts recordLateSent), with
 * the `message.sent` webhook event of a sent outcome, so the person is not told a sent mail
 * failed (and does not send it again by hand).
 */
describe('a send recovery gave up on, met later in Sent', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    await db().execute(sql`
      insert into webhook_endpoints (workspace_id, url, event_types, secret_ciphertext)
      values (${ctx.owner.workspaceId}::uuid, 'https://hooks.example.com/late-sent', '{message.sent,message.failed}', 'x')`);
  });
  const sentEvents = async (key: 'messageId' | 'sendId', id: string) =>
    rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from webhook_events where type = 'message.sent' and data->>${key} = ${id}`))[0]!.n;

  it('1:1 reported not sent, then stored by Gmail: sync records it sent, once; a copy received with its Message-ID does not', async () => {
    const subject = 'S13 stored after the verdict';
    const row = await openOneToOne(subject, { id: sender.id, email: SENDER });
    const recovery = oneToOneRecovery('rescuer-s13');
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await recovery.recoverExpired(later());
    expect(await messageRow(row.id)).toMatchObject({ status: 'failed', errorCode: 'not_sent' });

    // Anyone who received mail knows its Message-ID: mail received naming it proves nothing.
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: 'someone@contoso.test', subject, text: 'x', messageId: `<${row.rfc822MessageId}>` });
    expect((await ctx.app.services.sync.syncMailbox(sender.id)).status).toBe('synced');
    expect(await messageRow(row.id)).toMatchObject({ status: 'failed', errorCode: 'not_sent', gmailMessageId: null });

    await ctx.app.sandbox.control.sendAs(SENDER, { to: 'someone@contoso.test', subject, text: 'hi', messageId: `<${row.rfc822MessageId}>` });
    expect((await ctx.app.services.sync.syncMailbox(sender.id)).status).toBe('synced');
    const stored = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    expect(stored).toHaveLength(1);
    expect(await messageRow(row.id)).toMatchObject({ status: 'sent', errorCode: null, gmailMessageId: stored[0]!.id });
    expect(await sentEvents('messageId', row.id)).toBe(1);
    const { body } = await ctx.app.api('GET', `/api/messages/${row.id}`, { token: ctx.owner.token });
    expect(body).toMatchObject({ status: 'sent', gmailMessageId: stored[0]!.id });
  });

  it('campaign send whose outcome stayed unknown (too much sent since to tell): sync records it sent, counters and ledger agree, never sent again', async () => {
    const BUSY = 'settled-late-busy@acme.test';
    const busy = await connectedMailbox(ctx.app, ctx.owner.token, BUSY, { sync: true });
    expect((await ctx.app.services.sync.syncMailbox(busy.id)).status).toBe('synced');
    ctx.app.sandbox.control.setSearchIndexLag(BUSY, HOUR);
    const subject = 'S14 unknown, then seen';
    const { campaignId, person } = await fx.crashedAfterGmail({ id: busy.id, email: BUSY }, subject, { prefix: 's14', leaseMs: 1_000 });
    for (let i = 0; i <= SENT_SCAN_MAX_MESSAGES; i += 1) await ctx.app.sandbox.control.sendAs(BUSY, { to: 'someone@contoso.test', subject: `S14 other ${i}`, text: 'x' });
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s14', resolveDelayMs: 1, sentCopies: sentCopiesWith({ requestSync: () => {} }) });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    const [unknown] = await fx.ledger(campaignId);
    expect(unknown).toMatchObject({ status: 'failed', error_code: 'outcome_unknown' });

    expect((await ctx.app.services.sync.syncMailbox(busy.id)).status).toBe('synced');
    const stored = ctx.app.sandbox.control.listMessages(BUSY, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    expect(stored).toHaveLength(1);
    const [settled] = await fx.ledger(campaignId);
    expect(settled).toMatchObject({ status: 'sent', error_code: null, gmail_message_id: stored[0]!.id });
    expect(await messageRow(settled!.message_id!)).toMatchObject({ status: 'sent', errorCode: null, gmailMessageId: stored[0]!.id });
    expect(await sendCountMismatches(db())).toEqual([]);
    expect(await sentEvents('sendId', settled!.id)).toBe(1);
    const { body } = await ctx.app.api('GET', `/api/campaigns/${campaignId}/stats`, { token: ctx.owner.token });
    expect(body).toMatchObject({ sent: 1, failed: 0 });

    await separateWorker(ctx.app, { workerId: 'after-s14' }).tick();
    expect(fx.sentTo(BUSY, subject).get(person.email)).toBe(1);
  });

  it('send-only mailbox, then connected again with reading: its first sync meets the unknown send in Sent and records it sent', async () => {
    const SEND_ONLY = 'settled-late-send-only@acme.test';
    const sendOnly = await connectedMailbox(ctx.app, ctx.owner.token, SEND_ONLY);
    const subject = 'S15 unknown on a send-only mailbox';
    const { campaignId, person } = await fx.crashedAfterGmail({ id: sendOnly.id, email: SEND_ONLY }, subject, { prefix: 's15', leaseMs: 1_000 });
    await separateWorker(ctx.app, { workerId: 'rescuer-s15', resolveDelayMs: 1 }).recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'failed', error_code: 'outcome_unknown' });
    // Meanwhile the contact was deleted: the late event names no one (P-13, as reply and bounce events).
    expect((await ctx.app.api('DELETE', `/api/contacts/${person.id}`, { token: ctx.owner.token })).status).toBe(204);

    const reading = await connectedMailbox(ctx.app, ctx.owner.token, SEND_ONLY, { sync: true });
    expect((await ctx.app.services.sync.syncMailbox(reading.id)).status).toBe('synced');
    const stored = ctx.app.sandbox.control.listMessages(SEND_ONLY, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    const [settled] = await fx.ledger(campaignId);
    expect(settled).toMatchObject({ status: 'sent', error_code: null, gmail_message_id: stored[0]!.id });
    expect(await sendCountMismatches(db())).toEqual([]);
    const [event] = rowsOf<{ data: Record<string, unknown> }>(await db().execute(sql`select data from webhook_events where type = 'message.sent' and data->>'sendId' = ${settled!.id}`));
    expect(event!.data).toMatchObject({ sendId: settled!.id, campaignId, contactId: null, email: null });
    // Dated when it was found: after the message.failed it corrects, for a consumer ordering by occurredAt.
    const events = rowsOf<{ type: string }>(await db().execute(sql`select type from webhook_events where data->>'sendId' = ${settled!.id} order by occurred_at`));
    expect(events.map((e) => e.type)).toEqual(['message.failed', 'message.sent']);
  });
});

/*
 * Sync recorded a send's copy for recovery, then the mailbox lost read access (its grant
 * revoked, then connected again send-only: the same row, its scopes replaced) before recovery
 * looked (an attacker's finding): "cannot be asked" gives way to the copy already recorded.
 */
describe('a copy sync recorded, then the mailbox cannot be read', { timeout: 120_000 }, () => {
  const readingNoMore = (mailboxId: string) =>
    db().execute(sql`update mailboxes set scopes = array_remove(scopes, ${GMAIL_SCOPES.readonly}), sync_enabled = false where id = ${mailboxId}::uuid`);

  it('campaign: recorded sent, not failed/outcome_unknown', async () => {
    const MAILBOX = 'settled-late-seen-then-send-only@acme.test';
    const box = await syncedSender(MAILBOX);
    ctx.app.sandbox.control.setSearchIndexLag(MAILBOX, HOUR);
    const { campaignId, person } = await fx.crashedAfterGmail({ id: box.id, email: MAILBOX }, 'S21 seen, then send-only', { prefix: 's21', leaseMs: 1_000 });
    expect((await ctx.app.services.sync.syncMailbox(box.id)).status).toBe('synced');
    const [open] = await fx.ledger(campaignId);
    const seen = (await messageRow(open!.message_id!)).gmailMessageId;
    expect(seen).not.toBeNull();
    await readingNoMore(box.id);
    await separateWorker(ctx.app, { workerId: 'rescuer-s21', resolveDelayMs: 1 }).recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', error_code: null, gmail_message_id: seen });
    expect(await sendCountMismatches(db())).toEqual([]);
    await separateWorker(ctx.app, { workerId: 'after-s21' }).tick();
    expect(fx.sentTo(MAILBOX, 'S21 seen, then send-only').get(person.email)).toBe(1);
  });

  it('campaign, its mailbox disconnected since: recorded sent, not left sending (a reviewer\'s finding)', async () => {
    const MAILBOX = 'settled-late-seen-then-gone@acme.test';
    const box = await syncedSender(MAILBOX);
    ctx.app.sandbox.control.setSearchIndexLag(MAILBOX, HOUR);
    const { campaignId } = await fx.crashedAfterGmail({ id: box.id, email: MAILBOX }, 'S23 seen, then gone', { prefix: 's23', leaseMs: 1_000 });
    expect((await ctx.app.services.sync.syncMailbox(box.id)).status).toBe('synced');
    const [open] = await fx.ledger(campaignId);
    const seen = (await messageRow(open!.message_id!)).gmailMessageId;
    expect(seen).not.toBeNull();
    // Disconnected: the row stays until its purge, no longer live.
    await db().execute(sql`update mailboxes set deleted_at = now(), purge_after = now() + interval '30 days', sync_enabled = false where id = ${box.id}::uuid`);
    expect(await separateWorker(ctx.app, { workerId: 'rescuer-s23', resolveDelayMs: 1 }).recoverStuck(later())).toBe(1);
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', error_code: null, gmail_message_id: seen });
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('1:1: recorded sent, not failed/outcome_unknown', async () => {
    const MAILBOX = 'settled-late-seen-then-send-only-1to1@acme.test';
    const box = await syncedSender(MAILBOX);
    ctx.app.sandbox.control.setSearchIndexLag(MAILBOX, HOUR);
    const row = await openOneToOne('S22 seen, then send-only', { id: box.id, email: MAILBOX });
    const copy = await ctx.app.sandbox.control.sendAs(MAILBOX, { to: 'someone@contoso.test', subject: 'S22 seen, then send-only', text: 'hi', messageId: `<${row.rfc822MessageId}>` });
    expect((await ctx.app.services.sync.syncMailbox(box.id)).status).toBe('synced');
    await readingNoMore(box.id);
    await oneToOneRecovery('rescuer-s22').recoverExpired(later());
    expect(await messageRow(row.id)).toMatchObject({ status: 'sent', errorCode: null, gmailMessageId: copy.id });
  });
});

/*
 * The verdicts and sync's record racing (a reviewer's findings): whichever commits first, a
 * send Gmail stored ends `sent`.
 */
describe('a verdict and sync meeting the copy at the same moment', { timeout: 120_000 }, () => {
  /** The app's sync, with some of its repo's queries replaced. */
  function syncWith(overrides: Partial<SyncRepo>) {
    const repo: SyncRepo = { ...createSyncRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey)), ...overrides };
    const { services, config } = ctx.app;
    return createSyncService({ repo, mailboxesRepo: createMailboxesRepo(db()), mailboxes: services.mailboxes, pacer: services.pacer, config, guard: services.contentGuard, logger: createLogger('silent') });
  }

  it('1:1: "not sent" commits after sync read the send as open, before it recorded the copy: recorded sent all the same', async () => {
    const subject = 'S17 verdict inside the sync step';
    const row = await openOneToOne(subject, { id: sender.id, email: SENDER });
    await ctx.app.sandbox.control.sendAs(SENDER, { to: 'someone@contoso.test', subject, text: 'hi', messageId: `<${row.rfc822MessageId}>` });
    const plain = createSyncRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey));
    const racing = syncWith({
      recordSeenSend: async (id, gmail) => {
        // Recovery's last look (its walk missed the copy) commits its verdict right now.
        await db().execute(sql`update messages set status = 'failed', error_code = 'not_sent', lease_owner = null, lease_expires_at = null
          where id = ${id}::uuid and status = 'sending' and gmail_message_id is null`);
        return plain.recordSeenSend(id, gmail);
      },
    });
    expect((await racing.syncMailbox(sender.id)).status).toBe('synced');
    expect(await messageRow(row.id)).toMatchObject({ status: 'sent', errorCode: null });
  });

  it('campaign: sync records the copy after the last look could not tell, before its verdict: recorded sent, not failed', async () => {
    const BUSY = 'settled-late-race@acme.test';
    const busy = await syncedSender(BUSY);
    ctx.app.sandbox.control.setSearchIndexLag(BUSY, HOUR);
    const subject = 'S18 recorded before the verdict';
    const { campaignId, person } = await fx.crashedAfterGmail({ id: busy.id, email: BUSY }, subject, { prefix: 's18', leaseMs: 1_000 });
    for (let i = 0; i <= SENT_SCAN_MAX_MESSAGES; i += 1) await ctx.app.sandbox.control.sendAs(BUSY, { to: 'someone@contoso.test', subject: `S18 other ${i}`, text: 'x' });
    const copies = sentCopiesWith({ requestSync: () => {} });
    let looks = 0;
    const racing = {
      ...copies,
      find: async (...args: Parameters<typeof copies.find>) => {
        const found = await copies.find(...args);
        looks += 1;
        if (looks === RESOLVE_LOOKS) {
          expect(found).toBe(UNDECIDED);
          expect((await ctx.app.services.sync.syncMailbox(busy.id)).status).toBe('synced');
        }
        return found;
      },
    };
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s18', resolveDelayMs: 1, sentCopies: racing });
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    const stored = ctx.app.sandbox.control.listMessages(BUSY, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', error_code: null, gmail_message_id: stored[0]!.id });
    expect(await sendCountMismatches(db())).toEqual([]);
    await separateWorker(ctx.app, { workerId: 'after-s18' }).tick();
    expect(fx.sentTo(BUSY, subject).get(person.email)).toBe(1);
  });

  it.runIf(process.env.TEST_DATABASE_URL)('recording it late locks the ledger row before the message row, as a purge does: no deadlock', async () => {
    const SEND_ONLY = 'settled-late-lock-order@acme.test';
    const sendOnly = await connectedMailbox(ctx.app, ctx.owner.token, SEND_ONLY);
    const { campaignId } = await fx.crashedAfterGmail({ id: sendOnly.id, email: SEND_ONLY }, 'S19 lock order', { prefix: 's19', leaseMs: 1_000 });
    await separateWorker(ctx.app, { workerId: 'rescuer-s19', resolveDelayMs: 1 }).recoverStuck(later());
    const [send] = await fx.ledger(campaignId);
    expect(send).toMatchObject({ status: 'failed', error_code: 'outcome_unknown' });
    const repo = createSyncRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey));
    const outcome = (work: Promise<unknown>) => work.then((value) => ({ value }), (error: { cause?: { code?: string } }) => ({ error: error.cause?.code ?? String(error) }));
    // As a purge: the ledger row locked first, then (a moment later) its message row deleted.
    const purge = outcome(
      db().transaction(async (tx) => {
        await tx.execute(sql`select id from campaign_sends where id = ${send!.id}::uuid for update`);
        await new Promise((resolve) => setTimeout(resolve, 500));
        await tx.execute(sql`delete from messages where id = ${send!.message_id}::uuid`);
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 150));
    const late = outcome(repo.transaction((tx) => tx.recordLateSent(send!.message_id!, { id: 'gmail-late', threadId: 'thread-late' }, new Date())));
    expect(await purge).toEqual({ value: undefined });
    expect(await late).toEqual({ value: false });
  });
});
