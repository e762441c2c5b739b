import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { RESOLVE_LOOKS } from '../../src/campaigns/send-recovery.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { SENT_SCAN_MAX_MESSAGES } from '../../src/gmail/sent-copy.js';
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
      values (${ctx.owner.workspaceId}::uuid, 'https://hooks.example.com/late-sent', '{message.sent}', 'x')`);
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
    const { campaignId } = await fx.crashedAfterGmail({ id: sendOnly.id, email: SEND_ONLY }, subject, { prefix: 's15', leaseMs: 1_000 });
    await separateWorker(ctx.app, { workerId: 'rescuer-s15', resolveDelayMs: 1 }).recoverStuck(later());
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'failed', error_code: 'outcome_unknown' });

    const reading = await connectedMailbox(ctx.app, ctx.owner.token, SEND_ONLY, { sync: true });
    expect((await ctx.app.services.sync.syncMailbox(reading.id)).status).toBe('synced');
    const stored = ctx.app.sandbox.control.listMessages(SEND_ONLY, { labelId: 'SENT' }).filter((m) => m.subject === subject);
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', error_code: null, gmail_message_id: stored[0]!.id });
    expect(await sendCountMismatches(db())).toEqual([]);
  });
});
