import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { RESOLVE_LOOKS } from '../../src/campaigns/send-recovery.js';
import { messages } from '../../src/db/schema.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createLogger } from '../../src/logger.js';
import { createMessagesRepo } from '../../src/messages/messages.repo.js';
import { createMessagesService } from '../../src/messages/messages.service.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
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
  sender = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
  // Its first pass (a full listing) now, so that later passes read history.
  expect((await ctx.app.services.sync.syncMailbox(sender.id)).status).toBe('synced');
  ctx.app.sandbox.control.setSearchIndexLag(SENDER, HOUR);
});

const db = () => ctx.app.database.db;
const later = () => new Date(Date.now() + HOUR);
const searches = () => ctx.app.sandbox.control.calls({ mailbox: SENDER, endpoint: 'list' }).length;

/** A campaign of one contact whose worker died right after Gmail accepted its message. */
const crashedAfterGmail = (subject: string) => fx.crashedAfterGmail({ id: sender.id, email: SENDER }, subject, { prefix: 'seen', leaseMs: 1_000 });

describe('a send Gmail stored but its search does not show yet', { timeout: 90_000 }, () => {
  it('campaign: the last look syncs the mailbox, finds it in history, and records it sent; no second copy', async () => {
    const subject = 'S1 stored, not indexed';
    const { campaignId, person } = await crashedAfterGmail(subject);
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-s1', resolveDelayMs: 1 });
    const before = searches();
    for (let look = 0; look < RESOLVE_LOOKS; look += 1) await rescuer.recoverStuck(later());
    // Every look searched, and missed.
    expect(searches() - before).toBeGreaterThanOrEqual(RESOLVE_LOOKS);
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

  it('1:1: the last look syncs the mailbox and records the send sent, not "not sent"', async () => {
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

const messageRow = async (id: string) => (await db().select().from(messages).where(eq(messages.id, id)))[0]!;

/** A 1:1 send from SENDER whose worker died: `sending`, its lease expired a minute ago. */
async function openOneToOne(subject: string) {
  ctx.app.sandbox.control.createMailbox({ email: 'someone@contoso.test' });
  const [row] = await db()
    .insert(messages)
    .values({
      workspaceId: ctx.owner.workspaceId,
      mailboxId: sender.id,
      direction: 'outbound',
      status: 'sending',
      rfc822MessageId: `${randomUUID()}@acme.test`,
      subject,
      fromAddress: SENDER,
      toAddresses: ['someone@contoso.test'],
      leaseOwner: 'dead-worker',
      leaseExpiresAt: new Date(Date.now() - 60_000),
    })
    .returning();
  return row!;
}

/** The 1:1 recovery as the app wires it, its looks a millisecond apart. */
function oneToOneRecovery(workerId: string) {
  return createMessagesService({
    repo: createMessagesRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey)),
    mailboxes: ctx.app.services.mailboxes,
    mailboxRepo: createMailboxesRepo(db()),
    findSentCopy: ctx.app.services.findSentCopy,
    logger: createLogger('silent'),
    workerId,
    resolveDelayMs: 1,
  });
}
