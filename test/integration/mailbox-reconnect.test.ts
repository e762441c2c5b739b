import { sql } from 'drizzle-orm';
import { expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A mailbox that needed reconnecting, or was disconnected and connected again, and what its
 * campaigns do then (an attacker's findings): a reply that arrived while the mailbox could not be
 * read must stop a follow-up, a send-only reconnect must not leave a sequence sending blind, and a
 * mailbox connected again must still know the mail it sent before.
 */

const ctx = useAppWithOwner();
let seq = 0;

async function query<T = Record<string, unknown>>(statement: ReturnType<typeof sql>): Promise<T[]> {
  return ((await ctx.app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
}

async function contact(name: string) {
  seq += 1;
  const email = `${name}-${seq}@contoso.test`;
  ctx.app.sandbox.control.createMailbox({ email });
  const created = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email } });
  return { id: created.body.id as string, email };
}

/** A campaign with one follow-up due at once, its first step sent. */
async function sequence(mailboxId: string, contactId: string, subject: string) {
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind: 'transactional', mailboxId, subject, text: 'Hello', contactIds: [contactId], steps: [{ afterDays: 0, text: 'Following up' }] },
  });
  expect(created.status, created.text).toBe(201);
  expect((await ctx.app.api('POST', `/api/campaigns/${created.body.id}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  await ctx.app.services.sendWorker.tick();
  return created.body.id as string;
}

const campaignOf = async (id: string) => (await ctx.app.api('GET', `/api/campaigns/${id}`, { token: ctx.owner.token })).body;
const followUp = async (campaignId: string) =>
  (await query<{ status: string; skip_reason: string | null }>(sql`select status::text as status, skip_reason from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1`))[0];
const received = (email: string, subject: string) => ctx.app.sandbox.control.listMessages(email).find((m) => m.subject.includes(subject))!;

function loseAccess(sender: string) {
  ctx.app.sandbox.control.revokeAccess(sender);
  ctx.app.sandbox.control.expireAccessTokens(sender);
}

it('a reply that arrived while the mailbox needed reconnecting stops the follow-up: the campaign resumes only after the reconnect has read it', async () => {
  const sender = 'reconnect-reply@acme.test';
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const rita = await contact('rita');
  const campaign = await sequence(mailbox.id, rita.id, 'R1 hello');
  await ctx.app.services.sync.syncMailbox(mailbox.id);

  loseAccess(sender);
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_needs_reconnect' });
  await ctx.app.sandbox.control.reply(rita.email, received(rita.email, 'R1 hello').id, { text: 'Not interested, do not write again' });

  // The reconnect's sync is slow today (Gmail's history answers after 1.5 s).
  ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 1500, endpoint: 'history', mailbox: sender, times: 1 });
  await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  // The worker right after the reconnect, and the sender resuming by hand: the campaign waits for
  // that sync all the same, and the follow-up does not go out.
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_syncing' });
  expect((await ctx.app.api('POST', `/api/campaigns/${campaign}/resume`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'sending', progress: { waitingFor: 'mailbox_syncing' } });
  expect(await followUp(campaign)).toMatchObject({ status: 'queued' });
  await ctx.app.services.sync.idle();
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await followUp(campaign)).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
  expect((await campaignOf(campaign)).status).toBe('completed');
});

it('a sequence whose mailbox is reconnected send-only pauses (follow_ups_need_sync) instead of sending follow-ups nobody can stop; with sync again it resumes', async () => {
  const sender = 'reconnect-sendonly@acme.test';
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const dave = await contact('dave');
  const campaign = await sequence(mailbox.id, dave.id, 'R2 hello');
  await query(sql`update campaign_sends set due_at = now() + interval '1 day' where campaign_id = ${campaign}::uuid and step = 1`);

  await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: false });
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'follow_ups_need_sync' });
  const resumed = await ctx.app.api('POST', `/api/campaigns/${campaign}/resume`, { token: ctx.owner.token, json: {} });
  expect(resumed.status).toBe(422);
  expect(resumed.body.error.code).toBe('follow_ups_need_sync');

  await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  await ctx.app.services.sync.idle();
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'sending' });
  expect(await followUp(campaign)).toMatchObject({ status: 'queued' });
});

it('a mailbox disconnected and connected again knows the mail it sent before: not stored again as a synced copy, and a bounce of it reaches the campaign', async () => {
  const sender = 'reconnect-bounce@acme.test';
  const first = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const yan = await contact('yan');
  const campaign = await sequence(first.id, yan.id, 'R3 hello');
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${first.id}`, { token: ctx.owner.token })).status).toBe(204);

  const again = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  expect(again.id).not.toBe(first.id);
  await ctx.app.services.sync.idle();
  const sent = ctx.app.sandbox.control.listMessages(sender, { labelId: 'SENT' }).find((m) => m.subject.includes('R3 hello'))!;
  await ctx.app.sandbox.control.deliverBounce(sender, { originalId: sent.id, recipient: yan.email, kind: 'hard' });
  await ctx.app.services.sync.syncMailbox(again.id);

  const copies = await query<{ synced: boolean }>(sql`select synced from messages where subject = 'R3 hello' and workspace_id = ${ctx.owner.workspaceId}::uuid`);
  expect(copies).toEqual([{ synced: false }]);
  expect((await ctx.app.api('GET', `/api/campaigns/${campaign}/stats`, { token: ctx.owner.token })).body).toMatchObject({ bounced: 1 });
});

it('an address connected again reads what arrived since its earlier connection last synced, not only the newest 500: a reply there is found', async () => {
  const sender = 'reconnect-gap@acme.test';
  const first = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const carl = await contact('carl');
  const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: first.id, to: carl.email, subject: 'R4 offer', text: 'x' } });
  expect(sent.status, sent.text).toBe(201);
  await ctx.app.services.sync.syncMailbox(first.id);
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${first.id}`, { token: ctx.owner.token })).status).toBe(204);

  await ctx.app.sandbox.control.reply(carl.email, received(carl.email, 'R4 offer').id, { text: 'Interested, call me' });
  for (let i = 0; i < 505; i += 1) await ctx.app.sandbox.control.deliverInbound(sender, { from: `news${i}@nowhere.test`, subject: `Newsletter ${i}`, text: 'x' });

  const again = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const outcome = await ctx.app.services.sync.syncMailbox(again.id);
  expect(outcome).toMatchObject({ status: 'synced', mode: 'full' });
  // The 505 newsletters, the reply and our own message of the day before (the resync's margin): more than a first sync's 500.
  expect((outcome as { examined: number }).examined).toBeGreaterThan(500);
  const replies = await query(sql`select id from mail_events where message_id = ${sent.body.id}::uuid and type = 'reply'`);
  expect(replies).toHaveLength(1);
}, 60_000);

it('a sequence paused for a reconnect of a mailbox never read at all (its sync failing) waits for a good sync before the worker resumes it', async () => {
  const sender = 'reconnect-unread@acme.test';
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const rose = await contact('rose');
  const campaign = await sequence(mailbox.id, rose.id, 'R5 hello');
  const broken = ctx.app.sandbox.control.injectFault({ kind: 'backendError', status: 500, endpoint: 'profile', mailbox: sender, times: 'always' });

  loseAccess(sender);
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_needs_reconnect' });
  await ctx.app.sandbox.control.reply(rose.email, received(rose.email, 'R5 hello').id, { text: 'Please stop' });
  await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  await ctx.app.services.sync.idle();
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_syncing' });
  expect(await followUp(campaign)).toMatchObject({ status: 'queued' });

  ctx.app.sandbox.control.removeFault(broken.id);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await followUp(campaign)).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
}, 60_000);

it('a campaign paused for a reconnect whose mailbox is then disconnected says so (mailbox_disconnected), not that it waits for a reconnect', async () => {
  const sender = 'reconnect-gone@acme.test';
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const gus = await contact('gus');
  const campaign = await sequence(mailbox.id, gus.id, 'R6 hello');
  loseAccess(sender);
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_needs_reconnect' });
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token })).status).toBe(204);
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_disconnected', progress: { waitingFor: 'mailbox_disconnected' } });
});

it('a sequence waits while its mailbox\'s sync is failing: a reply that arrived meanwhile stops the follow-up once a pass succeeds (an attacker\'s finding)', async () => {
  const sender = 'failing-sync@acme.test';
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, sender, { sync: true });
  const fay = await contact('fay');
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: 'F1 hello', kind: 'transactional', mailboxId: mailbox.id, subject: 'F1 hello', text: 'Hello', contactIds: [fay.id], steps: [{ afterDays: 1, text: 'Following up' }] },
  });
  expect((await ctx.app.api('POST', `/api/campaigns/${created.body.id}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  const campaign = created.body.id as string;
  await ctx.app.services.sendWorker.tick();
  await ctx.app.services.sync.syncMailbox(mailbox.id);

  // Gmail stops answering this mailbox's sync; Fay answers.
  const faults = (['history', 'list'] as const).map((endpoint) => ctx.app.sandbox.control.injectFault({ kind: 'backendError', status: 503, endpoint, mailbox: sender, times: 'always' }));
  await ctx.app.sandbox.control.reply(fay.email, received(fay.email, 'F1 hello').id, { text: 'Please stop' });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  const [row] = await query<{ failed: boolean }>(sql`select last_sync_failed_at > last_sync_at as failed from mailboxes where id = ${mailbox.id}::uuid`);
  expect(row!.failed).toBe(true);

  // The follow-up falls due while the mailbox cannot be read: it waits, the campaign says why.
  await query(sql`update campaign_sends set due_at = now() where campaign_id = ${campaign}::uuid and step = 1`);
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await followUp(campaign)).toMatchObject({ status: 'queued' });
  expect(await campaignOf(campaign)).toMatchObject({ status: 'sending', progress: { waitingFor: 'mailbox_syncing' } });

  // Sync works again: it reads the reply, and the follow-up is skipped for it.
  for (const fault of faults) ctx.app.sandbox.control.removeFault(fault.id);
  await ctx.app.services.sync.syncMailbox(mailbox.id);
  await ctx.app.services.sendWorker.runUntilIdle();
  expect(await followUp(campaign)).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
  expect(ctx.app.sandbox.control.listMessages(fay.email).filter((m) => m.from?.includes(sender))).toHaveLength(1);
});

it('a campaign whose mailbox was disconnected resumes from the same address connected again (409 mailbox_disconnected until then); the rest goes out once, from the new mailbox', async () => {
  const sender = 'disconnected-resume@acme.test';
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, sender);
  const people = [await contact('hal'), await contact('ivy'), await contact('jo')];
  const subject = `R7 hello ${Date.now()}`;
  const created = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: subject, kind: 'transactional', mailboxId: mailbox.id, subject, text: 'Hello', contactIds: people.map((p) => p.id) },
  });
  const campaign = created.body.id as string;
  expect((await ctx.app.api('POST', `/api/campaigns/${campaign}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token })).status).toBe(204);
  await ctx.app.services.sendWorker.tick();
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', statusReason: 'mailbox_disconnected' });

  // Before: the resume answered 200, the worker paused it again, and nothing could ever send the rest.
  const early = await ctx.app.api('POST', `/api/campaigns/${campaign}/resume`, { token: ctx.owner.token, json: {} });
  expect([early.status, early.body.error?.code]).toEqual([409, 'mailbox_disconnected']);
  expect(await campaignOf(campaign)).toMatchObject({ status: 'paused', mailboxId: mailbox.id });

  const again = await connectedMailbox(ctx.app, ctx.owner.token, sender);
  expect(again.id).not.toBe(mailbox.id);
  const resumed = await ctx.app.api('POST', `/api/campaigns/${campaign}/resume`, { token: ctx.owner.token, json: {} });
  expect(resumed.status, resumed.text).toBe(200);
  expect(resumed.body).toMatchObject({ status: 'sending', mailboxId: again.id });
  await ctx.app.services.sendWorker.runUntilIdle();
  for (const person of people) {
    expect(ctx.app.sandbox.control.listMessages(person.email).filter((m) => m.subject === subject)).toHaveLength(1);
  }
  const fromNew = await query<{ n: number }>(sql`select count(*)::int as n from messages where mailbox_id = ${again.id}::uuid and direction = 'outbound' and status = 'sent'`);
  expect(fromNew[0]!.n).toBe(3);
  expect(await campaignOf(campaign)).toMatchObject({ status: 'completed' });
}, 60_000);
