import { sql } from 'drizzle-orm';
import { expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * An out-of-office (automatic reply) pushes the recipient's queued follow-up back by
 * AUTO_REPLY_FOLLOW_UP_DELAY_DAYS (follow-ups.repo.ts deferFollowUps). The worker reserves a batch
 * of due rows first and claims each one later, when the pacer reaches it (at 60 a minute, up to
 * ~50 s later): the gate checks that the row is still due, so a follow-up reserved before the
 * deferral stays queued for its new time. Before, it went out anyway, days early — 4 of 4 (an
 * attacker's finding).
 */
const ctx = useAppWithOwner({ env: { AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: '3' }, pacer: { sendsPerMinute: 60 } });

const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(s)) as unknown as { rows: T[] }).rows;

it('a follow-up deferred by an out-of-office while the batch that reserved it is being paced waits for its new time', async () => {
  const SENDER = `ooo-${Date.now()}@acme.test`;
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  const emails: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < 4; i += 1) {
    const email = `away${i}-${Date.now()}@contoso.test`;
    ctx.app.sandbox.control.createMailbox({ email });
    ids.push((await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email } })).body.id);
    emails.push(email);
  }
  const subject = `OOO ${Date.now()}`;
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind: 'transactional', mailboxId: mailbox.id, subject, text: 'Hello', contactIds: ids, steps: [{ afterDays: 0, text: 'Just following up' }] },
  });
  expect(created.status, created.text).toBe(201);
  const campaignId = created.body.id as string;
  expect((await ctx.app.api('POST', `/api/campaigns/${campaignId}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  await ctx.app.services.sendWorker.tick(); // step 0 to all four; step 1 queued, due now
  expect((await query(sql`select 1 from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1 and status = 'queued'`)).length).toBe(4);

  // The worker's next pass reserves the four follow-ups and paces them a second apart.
  const pass = ctx.app.services.sendWorker.tick();
  await new Promise((r) => setTimeout(r, 300));
  // Everyone is out of the office; the auto-replies are read by sync while the batch is paced.
  for (const email of emails) {
    const original = ctx.app.sandbox.control.listMessages(email).find((m) => m.subject.includes(subject))!;
    await ctx.app.sandbox.control.deliverInbound(SENDER, {
      from: email,
      subject: `Automatic reply: ${subject}`,
      inReplyTo: original.messageId,
      references: original.messageId,
      headers: { 'Auto-Submitted': 'auto-replied', 'X-Autoreply': 'yes' },
      text: 'I am out of the office until next week.',
    });
  }
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  const syncedAt = new Date();
  const events = await query<{ recipient: string; at: Date }>(sql`select recipient, at from mail_events where type = 'auto_reply' and recipient = any(${`{${emails.join(',')}}`}::text[])`);
  expect(events.length).toBe(4);
  await pass;

  const rows = await query<{ email: string; status: string; claimed_at: Date | null; due_at: Date }>(
    sql`select email, status::text as status, claimed_at, due_at from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1 order by claimed_at nulls last`,
  );
  // A follow-up claimed after the out-of-office was recorded must not have gone out.
  const early = rows.filter((r) => r.status === 'sent' && r.claimed_at && new Date(r.claimed_at) > syncedAt);
  expect(early, 'follow-ups claimed after their out-of-office deferral was committed').toEqual([]);
  // Those not sent before the deferral wait, queued, for the day it set.
  for (const row of rows.filter((r) => r.status !== 'sent')) {
    expect(row.status).toBe('queued');
    expect(new Date(row.due_at).getTime()).toBeGreaterThan(syncedAt.getTime() + 2 * 86_400_000);
  }
}, 60_000);
