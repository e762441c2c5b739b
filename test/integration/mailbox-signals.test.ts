import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_PUSH_TOPIC } from '../../src/gmail/google-settings.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Issue 10 end to end: campaigns sent through the real Google client to the sandbox, the
 * sandbox answering with Gmail's notice shapes (plain-text and report forms, delays),
 * out-of-office and human replies, and the sync turning each into the right signal.
 */

const ctx = useAppWithOwner({ env: { BOUNCE_SOFT_LIMIT: '2', AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: '3' } });
const SENDER = 'signals@acme.test';
let mailbox: { id: string; email: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
});

async function query<T = Record<string, unknown>>(statement: ReturnType<typeof sql>): Promise<T[]> {
  return ((await ctx.app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
}

let seq = 0;
/** Contacts; sandbox mailboxes unless `external` (then sends to them go nowhere, or bounce when told to). */
async function contacts(names: string[]): Promise<{ ids: string[]; emails: string[] }> {
  seq += 1;
  const ids: string[] = [];
  const emails: string[] = [];
  for (const name of names) {
    const email = `${name}-${seq}@contoso.test`;
    ctx.app.sandbox.control.createMailbox({ email });
    ids.push((await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email } })).body.id);
    emails.push(email);
  }
  return { ids, emails };
}

/** Creates and launches a campaign, then sends what is due: everything, or (`firstStepOnly`) one pass of the worker. */
async function runCampaign(subject: string, contactIds: string[], steps?: unknown[], options: { firstStepOnly?: boolean } = {}) {
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind: 'transactional', mailboxId: mailbox.id, subject, text: 'Hello from Acme', contactIds, ...(steps ? { steps } : {}) },
  });
  expect(created.status, created.text).toBe(201);
  expect((await ctx.app.api('POST', `/api/campaigns/${created.body.id}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  if (options.firstStepOnly) await ctx.app.services.sendWorker.tick();
  else await ctx.app.services.sendWorker.runUntilIdle();
  return created.body.id as string;
}

const stats = async (campaignId: string) => (await ctx.app.api('GET', `/api/campaigns/${campaignId}/stats`, { token: ctx.owner.token })).body;
const sync = () => ctx.app.services.sync.syncMailbox(mailbox.id);
const health = async () => (await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token })).body.mailboxes.find((m: { id: string }) => m.id === mailbox.id).sync.health;
const suppressed = async (email: string) => (await query(sql`select reason from suppressions where workspace_id = ${ctx.owner.workspaceId}::uuid and lower(email) = ${email}`)).length > 0;
/** The campaign message the recipient got, in the recipient's sandbox mailbox. */
const received = (email: string, subject: string) => ctx.app.sandbox.control.listMessages(email).find((m) => m.subject.includes(subject))!;
const sentCopy = (email: string, subject: string) => ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject.includes(subject) && m.to.includes(email))!;

describe('bounces through the sandbox', () => {
  it('a hard bounce in Gmail\'s plain-text form suppresses the address, and the next campaign skips it; a delay does not', async () => {
    const { ids, emails } = await contacts(['gone', 'slow', 'fine']);
    const [gone, slow] = emails as [string, string, string];
    ctx.app.sandbox.control.setBouncingAddress(gone, 'hard', undefined, 'text');
    ctx.app.sandbox.control.setBouncingAddress(slow, 'delay', undefined, 'text');
    const first = await runCampaign('B1 first', ids);
    await sync();

    expect(await stats(first)).toMatchObject({ sent: 3, bounced: 1, bounces: { hard: 1, soft: 0, delayed: 1 }, replied: 0, autoReplied: 0 });
    expect(await suppressed(gone)).toBe(true);
    expect(await suppressed(slow)).toBe(false);
    const [event] = await query<{ type: string; detail: Record<string, unknown> }>(sql`select type, detail from mail_events where recipient = ${gone}`);
    expect(event).toMatchObject({ type: 'bounce', detail: { kind: 'hard', status: '5.1.1', reason: 'unknown_user', format: 'gmail-text', suppressed: true } });
    const timeline = (await ctx.app.api('GET', `/api/contacts/${ids[1]}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.flatMap((e: { events?: { type: string }[] }) => e.events ?? []).map((e: { type: string }) => e.type)).toEqual(['delay']);

    ctx.app.sandbox.control.setBouncingAddress(gone, null);
    ctx.app.sandbox.control.setBouncingAddress(slow, null);
    const second = await runCampaign('B1 second', ids);
    const progress = (await ctx.app.api('GET', `/api/campaigns/${second}`, { token: ctx.owner.token })).body.progress;
    expect(progress).toMatchObject({ sent: 2, skippedBecause: { suppressed: 1 } });
    expect(sentCopy(gone, 'B1 second')).toBeUndefined();
    expect(sentCopy(slow, 'B1 second')).toBeDefined();
  });

  it('the report form and the plain-text form of the same failure give the same signal', async () => {
    const { ids, emails } = await contacts(['r1', 't1']);
    ctx.app.sandbox.control.setBouncingAddress(emails[0]!, 'hard', undefined, 'report');
    ctx.app.sandbox.control.setBouncingAddress(emails[1]!, 'hard', undefined, 'text');
    const campaign = await runCampaign('B2 forms', ids);
    await sync();
    const rows = await query<{ recipient: string; detail: { kind: string; status: string; format: string } }>(
      sql`select recipient, detail from mail_events where type = 'bounce' and recipient in (${emails[0]!}, ${emails[1]!}) order by recipient`,
    );
    expect(rows.map((r) => [r.recipient, r.detail.kind, r.detail.status, r.detail.format])).toEqual([
      [emails[0], 'hard', '5.1.1', 'rfc3464'],
      [emails[1], 'hard', '5.1.1', 'gmail-text'],
    ]);
    expect((await stats(campaign)).bounces).toEqual({ hard: 2, soft: 0, delayed: 0 });
    for (const email of emails) ctx.app.sandbox.control.setBouncingAddress(email, null);
  });

  it('a notice that quotes nothing of the original is matched by recipient and send time', async () => {
    const { ids, emails } = await contacts(['bare']);
    const campaign = await runCampaign('B3 bare', ids);
    const original = sentCopy(emails[0]!, 'B3 bare');
    await ctx.app.sandbox.control.deliverBounce(SENDER, { originalId: original.id, kind: 'hard', form: 'text', includeOriginal: 'none' });
    await sync();
    expect(await suppressed(emails[0]!)).toBe(true);
    expect((await stats(campaign)).bounced).toBe(1);
  });

  it('a notice that quotes nothing matches a send whatever the case its author typed the address in', async () => {
    seq += 1;
    const email = `bare.case-${seq}@contoso.test`;
    ctx.app.sandbox.control.createMailbox({ email });
    const typed = `Bare.Case-${seq}@Contoso.test`;
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: typed, subject: 'B3 mixed case', text: 'hi' } });
    expect(sent.status, sent.text).toBe(201);
    const original = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject === 'B3 mixed case')!;
    await ctx.app.sandbox.control.deliverBounce(SENDER, { originalId: original.id, kind: 'hard', form: 'text', includeOriginal: 'none' });
    await sync();
    expect(await suppressed(email)).toBe(true);
  });

  it('a hard bounce of a Bcc recipient of 1:1 mail suppresses that address, and the next mail to it is refused', async () => {
    const { ids, emails } = await contacts(['seen', 'hidden']);
    const [seen, hidden] = emails as [string, string];
    ctx.app.sandbox.control.setBouncingAddress(hidden, 'hard', undefined, 'report');
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: seen, bcc: hidden, subject: 'B3 bcc', text: 'hi' } });
    expect(sent.status, sent.text).toBe(201);
    expect(sent.body).not.toHaveProperty('bcc');
    await sync();
    expect(await suppressed(hidden)).toBe(true);
    expect(await suppressed(seen)).toBe(false);
    // The bounce is the Bcc recipient's own: on their timeline, not on the To contact's (which would also reveal them).
    const eventsOn = async (contactId: string) =>
      (await ctx.app.api('GET', `/api/contacts/${contactId}`, { token: ctx.owner.token })).body.timeline.flatMap((e: { subject?: string; events?: { type: string }[] }) =>
        e.subject === 'B3 bcc' ? (e.events ?? []).map((x) => x.type) : [],
      );
    expect(await eventsOn(ids[0]!)).toEqual([]);
    expect(await eventsOn(ids[1]!)).toEqual(['bounce']);
    ctx.app.sandbox.control.setBouncingAddress(hidden, null);
    const again = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: hidden, subject: 'B3 bcc again', text: 'hi' } });
    expect([again.status, again.body.error?.code]).toEqual([409, 'recipient_suppressed']);
  });

  it('a forward: the report\'s Original-Recipient is the address we sent to, and the one suppressed', async () => {
    const { ids, emails } = await contacts(['alias']);
    await runCampaign('B6 alias', ids);
    const original = sentCopy(emails[0]!, 'B6 alias');
    const raw = [
      'From: MAILER-DAEMON@relay.contoso.test (Mail Delivery System)',
      `To: ${SENDER}`,
      'Subject: Undelivered Mail Returned to Sender',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="fw"',
      '',
      '--fw',
      'Content-Type: text/plain',
      '',
      'Your message could not be delivered.',
      '--fw',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; relay.contoso.test',
      '',
      'Final-Recipient: rfc822; old.box@forwarded.test',
      `Original-Recipient: rfc822; ${emails[0]}`,
      'Action: failed',
      'Status: 5.1.1',
      '',
      '--fw',
      'Content-Type: text/rfc822-headers',
      '',
      `Message-ID: ${original.messageId}`,
      `To: ${emails[0]}`,
      '',
      '--fw--',
      '',
    ].join('\r\n');
    await ctx.app.sandbox.control.deliverInbound(SENDER, { raw });
    await sync();
    expect(await suppressed(emails[0]!)).toBe(true);
    expect(await suppressed('old.box@forwarded.test')).toBe(false);
    const [event] = await query<{ recipient: string; detail: Record<string, unknown> }>(sql`select recipient, detail from mail_events where recipient = ${emails[0]!}`);
    expect(event).toMatchObject({ recipient: emails[0], detail: { kind: 'hard', finalRecipient: 'old.box@forwarded.test' } });
  });

  it(`soft bounces count: the second within the window suppresses (BOUNCE_SOFT_LIMIT=2)`, async () => {
    const { ids, emails } = await contacts(['full']);
    ctx.app.sandbox.control.setBouncingAddress(emails[0]!, 'soft');
    const first = await runCampaign('B4 soft one', ids);
    await sync();
    expect((await stats(first)).bounces).toEqual({ hard: 0, soft: 1, delayed: 0 });
    expect(await suppressed(emails[0]!)).toBe(false);
    await runCampaign('B4 soft two', ids);
    await sync();
    expect(await suppressed(emails[0]!)).toBe(true);
    const counts = await query<{ n: number }>(sql`select (detail ->> 'softBouncesInWindow')::int as n from mail_events where recipient = ${emails[0]!} order by at`);
    expect(counts.map((c) => Number(c.n))).toEqual([1, 2]);
    ctx.app.sandbox.control.setBouncingAddress(emails[0]!, null);
  });

  it('a forged notice naming an address this mailbox never sent to suppresses nothing; an unreadable one is counted', async () => {
    const { ids } = await contacts(['real']);
    const campaign = await runCampaign('B5 real', ids);
    const victim = (await contacts(['victim'])).emails[0]!;
    const before = await health();
    // Names a real message of ours, but a recipient it never went to.
    const original = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject.includes('B5 real'))!;
    await ctx.app.sandbox.control.deliverBounce(SENDER, { originalId: original.id, recipient: victim, kind: 'hard' });
    // Names nothing of ours at all.
    await ctx.app.sandbox.control.deliverInbound(SENDER, {
      from: 'Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
      subject: 'Delivery Status Notification (Failure)',
      headers: { 'X-Failed-Recipients': victim },
      text: `Delivery to the following recipient failed permanently:\n\n     ${victim}\n\nThe error that the other server returned was: 550 5.1.1 User unknown\n`,
    });
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: 'mailer-daemon@googlemail.com', subject: 'Delivery Status Notification (Failure)', text: 'Something went wrong.' });
    await sync();
    expect(await suppressed(victim)).toBe(false);
    expect((await stats(campaign)).bounced).toBe(0);
    const after = await health();
    expect(after.skipped.recipientNotSent - before.skipped.recipientNotSent).toBe(1);
    expect(after.skipped.unmatchedNotice - before.skipped.unmatchedNotice).toBe(1);
    expect(after.skipped.unparsedNotice - before.skipped.unparsedNotice).toBe(1);
    expect(after.read).toBeGreaterThan(before.read);
  });

  it("a recipient's server cannot get someone else we mailed suppressed by naming them in its answer, which Google's notice quotes", async () => {
    const { ids, emails } = await contacts(['mischief', 'bystander']);
    const [mischief, bystander] = emails as [string, string];
    const campaign = await runCampaign('B5b quoted', ids);
    const theirs = sentCopy(mischief, 'B5b quoted');
    for (const form of ['text', 'report'] as const) {
      await ctx.app.sandbox.control.deliverBounce(SENDER, {
        originalId: theirs.id,
        recipient: mischief,
        kind: 'soft',
        form,
        diagnostic: `550 5.1.1 Your message wasn't delivered to ${bystander} because the address couldn't be found`,
      });
    }
    await sync();
    expect(await suppressed(bystander)).toBe(false);
    // The address the notice is about is the one its report names, on its own mail.
    expect((await stats(campaign)).bounces).toMatchObject({ soft: 1 });
    const events = await query<{ email: string }>(sql`select distinct s.email from mail_events e join campaign_sends s on s.message_id = e.message_id where s.campaign_id = ${campaign}::uuid and e.type = 'bounce'`);
    expect(events.map((e) => e.email)).toEqual([mischief]);
  });

  it('a notice naming no message of ours counts only from a mail system that may report on the address: a stranger writing "Undeliverable" about someone we mailed suppresses nothing', async () => {
    const { ids, emails } = await contacts(['pranked', 'gone']);
    const [pranked, gone] = emails as [string, string];
    const campaign = await runCampaign('B6 mailed', ids);
    const before = await health();
    const notice = (address: string) => `Delivery to the following recipient failed permanently:\n\n     ${address}\n\nThe error that the other server returned was: 550 5.1.1 User unknown\n`;
    // An auditor's forgery: anyone's address, a notice's subject, our recipient named, no Message-ID.
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: 'prankster@evil.test', subject: 'Undeliverable: Hello', text: notice(pranked) });
    // A mail system's address, but of another organization than the address's.
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: 'MAILER-DAEMON@evil.test', subject: 'Undeliverable: Hello', text: notice(pranked) });
    // The address's own organization's mail system: a real notice that quotes nothing.
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: 'Mail Delivery System <postmaster@mx1.contoso.test>', subject: 'Undeliverable: Hello', text: notice(gone) });
    await sync();
    expect(await suppressed(pranked)).toBe(false);
    expect(await suppressed(gone)).toBe(true);
    expect((await stats(campaign)).bounced).toBe(1);
    const after = await health();
    expect(after.skipped.unverifiedNotice - before.skipped.unverifiedNotice).toBe(2);
  });
});

describe('replies, automatic replies and sequences', () => {
  it("a teammate answering on the thread (the workspace's own member) is not the recipient replying: no reply event, the sequence goes on", async () => {
    const { ids, emails } = await contacts(['discussed']);
    const [discussed] = emails as [string];
    const campaign = await runCampaign('S0 internal', ids, [{ afterDays: 0, text: 'Just following up' }], { firstStepOnly: true });
    const original = received(discussed, 'S0 internal');
    // The owner (a member of this workspace) replies on the thread, from another client.
    await ctx.app.sandbox.control.deliverInbound(SENDER, { from: ctx.owner.email, subject: 'Re: S0 internal', inReplyTo: original.messageId, references: original.messageId, text: 'Looping in the team' });
    await sync();
    expect((await stats(campaign)).replied).toBe(0);
    expect(await query(sql`select type from mail_events where recipient = ${ctx.owner.email}`)).toEqual([]);
    await ctx.app.services.sendWorker.runUntilIdle();
    const step = await query<{ status: string }>(sql`select status::text as status from campaign_sends where campaign_id = ${campaign}::uuid and step = 1`);
    expect(step).toEqual([{ status: 'sent' }]);
  });

  it('an out-of-office is not a reply and does not stop the sequence (it waits 3 days); a human reply stops it', async () => {
    const { ids, emails } = await contacts(['away', 'human', 'silent']);
    const [away, human] = emails as [string, string, string];
    const campaign = await runCampaign('S1 intro', ids, [{ afterDays: 0, text: 'Just following up' }], { firstStepOnly: true });
    // Step 1 was queued due now for each; the replies arrive before the worker sends it.
    const original = received(away, 'S1 intro');
    await ctx.app.sandbox.control.deliverInbound(SENDER, {
      from: away,
      subject: 'Automatic reply: S1 intro',
      inReplyTo: original.messageId,
      references: original.messageId,
      headers: { 'Auto-Submitted': 'auto-replied', 'X-Autoreply': 'yes' },
      text: 'I am out of the office until Monday.',
    });
    await ctx.app.sandbox.control.reply(human, received(human, 'S1 intro').id, { text: 'Not interested, thanks' });
    await sync();

    expect(await stats(campaign)).toMatchObject({ replied: 1, autoReplied: 1, bounced: 0 });
    const events = await query<{ type: string; recipient: string }>(sql`select type, recipient from mail_events where recipient in (${away}, ${human}) order by type`);
    expect(events.map((e) => [e.type, e.recipient])).toEqual([
      ['reply', human],
      ['auto_reply', away],
    ]);
    const awayTimeline = (await ctx.app.api('GET', `/api/contacts/${ids[0]}`, { token: ctx.owner.token })).body.timeline;
    expect(awayTimeline.flatMap((e: { events?: { type: string }[] }) => e.events ?? []).map((e: { type: string }) => e.type)).toEqual(['auto_reply']);

    await ctx.app.services.sendWorker.runUntilIdle();
    const steps = await query<{ email: string; status: string; skip_reason: string | null; due_at: Date }>(
      sql`select email, status::text as status, skip_reason, due_at from campaign_sends where campaign_id = ${campaign}::uuid and step = 1 order by email`,
    );
    const byEmail = new Map(steps.map((s) => [s.email, s]));
    expect(byEmail.get(human)).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
    expect(byEmail.get(emails[2]!)).toMatchObject({ status: 'sent' });
    // The out-of-office pushed the follow-up back by 3 days instead of stopping it.
    expect(byEmail.get(away)).toMatchObject({ status: 'queued' });
    expect(new Date(byEmail.get(away)!.due_at).getTime()).toBeGreaterThan(Date.now() + 2.9 * 86_400_000);

    // Three days later it goes out: the follow-up due, the out-of-office three days old (the gate
    // reads the out-of-office too: auto-reply-hold-sql.ts).
    await query(sql`update campaign_sends set due_at = now() where campaign_id = ${campaign}::uuid and email = ${away} and step = 1`);
    await query(sql`update mail_events set at = at - interval '3 days' where type = 'auto_reply' and recipient = ${away}`);
    await ctx.app.services.sendWorker.runUntilIdle();
    expect((await query<{ status: string }>(sql`select status::text as status from campaign_sends where campaign_id = ${campaign}::uuid and email = ${away} and step = 1`))[0]!.status).toBe('sent');
  });

  it('GET /api/mailboxes shows per mailbox what sync read, kept, recorded and skipped', async () => {
    const view = await health();
    expect(view.read).toBeGreaterThan(0);
    expect(view.kept).toBeGreaterThan(0);
    expect(view.signals).toMatchObject({ reply: expect.any(Number), autoReply: expect.any(Number), bounce: expect.any(Number), delay: expect.any(Number) });
    expect(view.signals.reply).toBeGreaterThanOrEqual(1);
    expect(view.signals.autoReply).toBeGreaterThanOrEqual(1);
    expect(view.signals.bounce).toBeGreaterThanOrEqual(4);
    expect(view.signals.delay).toBeGreaterThanOrEqual(1);
    expect(view.resyncGaps).toBe(0);
    expect(Object.keys(view.skipped).sort()).toEqual(['gone', 'ignoredLabel', 'notContact', 'ownSend', 'recipientNotSent', 'unmatchedNotice', 'unparsedNotice', 'unstorable', 'unverifiedNotice']);
  });
});

describe('seconds, not minutes', () => {
  it('a mailbox connected after boot is watched at once, and a reply reaches the campaign stats by push within 5 s', async () => {
    ctx.app.sandbox.control.addPushSubscription({ topicName: SANDBOX_PUSH_TOPIC, endpoint: `${ctx.app.baseUrl}/webhooks/gmail`, audience: `${ctx.app.config.publicBaseUrl}/webhooks/gmail` });
    const late = await connectedMailbox(ctx.app, ctx.owner.token, 'late@acme.test', { sync: true });
    await ctx.app.services.sync.idle();
    expect(ctx.app.sandbox.control.getMailbox('late@acme.test')!.watch).toMatchObject({ topicName: SANDBOX_PUSH_TOPIC });
    // The first push makes a full sync (no history yet); sync once so the measured one is the usual incremental.
    await ctx.app.services.sync.syncMailbox(late.id);

    const { ids, emails } = await contacts(['quick']);
    const created = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'P1', kind: 'transactional', mailboxId: late.id, subject: 'P1 push', text: 'Hi', contactIds: ids },
    });
    await ctx.app.api('POST', `/api/campaigns/${created.body.id}/launch`, { token: ctx.owner.token, json: {} });
    await ctx.app.services.sendWorker.runUntilIdle();

    const started = Date.now();
    await ctx.app.sandbox.control.reply(emails[0]!, received(emails[0]!, 'P1 push').id, { text: 'Yes!' });
    // No sync is called here: only the watch → Pub/Sub push → webhook path can bring it in.
    let replied = 0;
    while (Date.now() - started < 10_000 && replied === 0) {
      replied = (await stats(created.body.id)).replied;
      if (replied === 0) await new Promise((r) => setTimeout(r, 50));
    }
    const elapsed = Date.now() - started;
    expect(replied).toBe(1);
    expect(elapsed).toBeLessThan(5_000);
  });

  it('reconnecting a mailbox (a new grant) sets its watch again at once', async () => {
    const watches = () => ctx.app.sandbox.control.callCounts({ mailbox: 'late@acme.test', successfulOnly: true }).watch ?? 0;
    const before = watches();
    await connectedMailbox(ctx.app, ctx.owner.token, 'late@acme.test', { sync: true });
    await ctx.app.services.sync.idle();
    expect(watches()).toBe(before + 1);
  });
});
