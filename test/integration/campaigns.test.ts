import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/connect.js';
import { lockContactAddress } from '../../src/suppression/address-lock.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { snapshotCounts } from '../helpers/test-db.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();
let mailbox: { id: string; email: string };
const SENDER = 'campaigns@acme.test';

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

const worker = separateWorker;

let seq = 0;
/** Contacts in sandbox mailboxes (so they really receive mail), opted in unless told otherwise. */
async function audience(n: number, options: { optIn?: boolean; prefix?: string } = {}) {
  seq += 1;
  const ids: string[] = [];
  for (let i = 0; i < n; i += 1) {
    const email = `${options.prefix ?? 'r'}${seq}-${i}@contoso.test`;
    ctx.app.sandbox.control.createMailbox({ email });
    const contact = await ctx.app.api('POST', '/api/contacts', {
      token: ctx.owner.token,
      json: { email, firstName: i % 2 === 0 ? `Name${i}` : undefined, attributes: { plan: i % 2 === 0 ? 'pro' : 'free' } },
    });
    if (options.optIn ?? true) {
      await ctx.app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'signup form' } });
    }
    ids.push(contact.body.id);
  }
  return ids;
}

async function createCampaign(json: Record<string, unknown>) {
  const res = await ctx.app.api('POST', '/api/campaigns', {
    token: ctx.owner.token,
    json: { name: 'Launch news', kind: 'marketing', mailboxId: mailbox.id, subject: 'Hi {{firstName | "there"}}', html: '<p>Read <a href="https://acme.test/news">the news</a></p>', ...json },
  });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: string };
}

const launch = (id: string, json: Record<string, unknown> = {}) => ctx.app.api('POST', `/api/campaigns/${id}/launch`, { token: ctx.owner.token, json });
const getCampaign = async (id: string) => (await ctx.app.api('GET', `/api/campaigns/${id}`, { token: ctx.owner.token })).body;
/** What the sandbox's SENT folder of the sender holds per recipient, for messages with this subject marker. */
function sentTo(marker: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' })) {
    if (!m.subject.includes(marker)) continue;
    for (const to of m.to) counts.set(to, (counts.get(to) ?? 0) + 1);
  }
  return counts;
}

describe('campaign drafts', () => {
  it('names an unknown merge field with 422 and saves nothing', async () => {
    const before = await snapshotCounts(ctx.app.database.db);
    const res = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'x', kind: 'transactional', mailboxId: mailbox.id, subject: 'Hi {{frstName}}', text: 'Your {{plann}}', contactIds: await audience(1) },
    });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('unknown_merge_field');
    expect(res.body.error.message).toContain('frstName in subject');
    expect(res.body.error.message).toContain('plann in text');
    const after = await snapshotCounts(ctx.app.database.db);
    expect(after.campaigns).toBe(before.campaigns);
  });

  it.each([
    ['no audience', { contactIds: undefined }],
    ['both audiences', { segment: { all: [{ field: 'email', op: 'exists' }] } }],
    ['a header injection in the subject', { subject: 'Hi\r\nBcc: x@y.test' }],
    ['a bad segment field', { contactIds: undefined, segment: { all: [{ field: 'password', op: 'eq', value: 'x' }] } }],
    ['a bad time zone', { sendingWindow: { days: [1], startHour: 9, endHour: 17, timeZone: 'Nowhere/Land' } }],
  ])('rejects %s with 400 validation_failed', async (_name, patch) => {
    const contactIds = await audience(1);
    const res = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'x', kind: 'marketing', mailboxId: mailbox.id, subject: 'Hi', text: 'x', contactIds, ...patch },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
  });

  it('one contact named twice, in two cases, is one recipient', async () => {
    const contact = (await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'twice.named@x.test' } })).body;
    const res = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'x', kind: 'marketing', mailboxId: mailbox.id.toUpperCase(), subject: 'Hi', text: 'x', contactIds: [contact.id, contact.id.toUpperCase()] },
    });
    expect(res.status, res.text).toBe(201);
    expect(new Set(res.body.audience.contactIds)).toEqual(new Set([contact.id]));
  });

  it("refuses another workspace's contacts or mailbox", async () => {
    const stranger = await signUp(ctx.app);
    const theirs = (await ctx.app.api('POST', '/api/contacts', { token: stranger.token, json: { email: 'theirs@x.test' } })).body.id;
    const res = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'x', kind: 'marketing', mailboxId: mailbox.id, subject: 'Hi', text: 'x', contactIds: [theirs] },
    });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('unknown_contacts');
    const byStranger = await ctx.app.api('POST', '/api/campaigns', {
      token: stranger.token,
      json: { name: 'x', kind: 'marketing', mailboxId: mailbox.id, subject: 'Hi', text: 'x', contactIds: [theirs] },
    });
    expect(byStranger.status).toBe(404);
  });

  it('P-10 preflight counts eligible, suppressed, missing consent and renders a sample', async () => {
    const optedIn = await audience(3);
    const noConsent = await audience(2, { optIn: false });
    const suppressedEmail = (await ctx.app.api('GET', `/api/contacts/${optedIn[2]}`, { token: ctx.owner.token })).body.email;
    await ctx.app.database.db.execute(sql`insert into suppressions (workspace_id, email, reason) values (${ctx.owner.workspaceId}::uuid, ${suppressedEmail}, 'unsubscribe')`);
    const campaign = await createCampaign({ contactIds: [...optedIn, ...noConsent] });
    const res = await ctx.app.api('POST', `/api/campaigns/${campaign.id}/preflight`, { token: ctx.owner.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ total: 5, eligible: 2, suppressed: 1, missingConsent: 2, invalid: 0 });
    expect(res.body.sample.subject).toBe('Hi Name0');
    expect(res.body.sample.html).toContain('the news');
    expect(res.body.sample.text).toContain('the news [https://acme.test/news]');
  });

  it('the list pages through every campaign, newest first, however many there are; a forged cursor is a 400', async () => {
    // 230 drafts at once, some in the same microsecond (the cursor carries the id too).
    await ctx.app.database.db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience, created_at)
      select ${ctx.owner.workspaceId}::uuid, 'paged ' || g, 'transactional', 'Hi', 'x', 'draft', '{"contactIds":[]}', now() - (g / 3) * interval '1 second'
      from generate_series(1, 230) g`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; text: string; body: { campaigns: { id: string }[]; nextCursor: string | null } } = await ctx.app.api('GET', `/api/campaigns?limit=100${cursor ? `&cursor=${cursor}` : ''}`, { token: ctx.owner.token });
      expect(res.status, res.text).toBe(200);
      expect(res.body.campaigns.length).toBeLessThanOrEqual(100);
      seen.push(...res.body.campaigns.map((c: { id: string }) => c.id));
      cursor = res.body.nextCursor;
      pages += 1;
    } while (cursor);
    const all = (await ctx.app.database.db.execute(sql`select id from campaigns where workspace_id = ${ctx.owner.workspaceId}::uuid and deleted_at is null`)) as unknown as { rows: { id: string }[] };
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.sort()).toEqual(all.rows.map((r) => r.id).sort());
    expect(pages).toBeGreaterThanOrEqual(3);
    const forged = await ctx.app.api('GET', '/api/campaigns?cursor=bm90LWEtY3Vyc29y', { token: ctx.owner.token });
    expect(forged.status).toBe(400);
    await ctx.app.database.db.execute(sql`delete from campaigns where name like 'paged %' and workspace_id = ${ctx.owner.workspaceId}::uuid`);
  });

  it('selects recipients by a segment over attributes', async () => {
    const ids = await audience(4, { prefix: 'seg' });
    const campaign = await createCampaign({ segment: { all: [{ field: 'attributes.plan', op: 'eq', value: 'pro' }, { field: 'email', op: 'contains', value: `seg${seq}-` }] } });
    const res = await ctx.app.api('POST', `/api/campaigns/${campaign.id}/preflight`, { token: ctx.owner.token });
    expect(res.body.total).toBe(2);
    expect(ids).toHaveLength(4);
  });
});

describe('sending', () => {
  it('marketing: each eligible recipient exactly once, with one-click unsubscribe headers, a visible link, the postal address and tracking', async () => {
    const ids = [...(await audience(4)), ...(await audience(1, { optIn: false }))];
    const campaign = await createCampaign({ subject: 'M1 news for {{firstName | "you"}}', contactIds: ids });
    expect((await launch(campaign.id)).status).toBe(200);
    await ctx.app.services.sendWorker.runUntilIdle();

    const sent = sentTo('M1 news');
    expect(sent.size).toBe(4);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    const message = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject.includes('M1 news'))!;
    const detail = ctx.app.sandbox.control.getMessage(SENDER, message.id);
    const header = (name: string) => detail.headers.find((h) => h.name.toLowerCase() === name)?.value;
    expect(header('list-unsubscribe')).toMatch(/^<http:\/\/127\.0\.0\.1:1\/u\/[A-Za-z0-9_-]+>$/);
    expect(header('list-unsubscribe-post')).toBe('List-Unsubscribe=One-Click');
    expect(detail.html).toContain('Unsubscribe</a>');
    expect(detail.html).toContain('Acme Inc., 1 Main St, Springfield');
    expect(detail.html).toMatch(/\/t\/o\/[A-Za-z0-9_-]+\.gif/);
    expect(detail.html).toMatch(/href="http:\/\/127\.0\.0\.1:1\/t\/c\/[A-Za-z0-9_-]+"/);
    expect(detail.html).not.toContain('href="https://acme.test/news"');
    expect(detail.text).toContain('Unsubscribe: http://127.0.0.1:1/u/');

    const after = await getCampaign(campaign.id);
    expect(after.status).toBe('completed');
    expect(after.progress).toMatchObject({ sent: 4, skipped: 1, queued: 0, sending: 0, skippedBecause: { no_consent: 1 } });
    // The contact's timeline shows the campaign mail.
    const timeline = (await ctx.app.api('GET', `/api/contacts/${ids[0]}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.some((e: { type: string; subject: string }) => e.type === 'message' && e.subject === 'M1 news for Name0')).toBe(true);

    // P-07: the recipient opens it in a browser; the contact shows the open, human first.
    const toFirst = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject === 'M1 news for Name0')!;
    const pixel = /\/t\/o\/[A-Za-z0-9_-]+\.gif/.exec(ctx.app.sandbox.control.getMessage(SENDER, toFirst.id).html!)![0];
    // An hour later (a hit seconds after sending is a prefetch, not a person).
    await ctx.app.database.db.execute(sql`update campaign_sends set sent_at = now() - interval '1 hour' where campaign_id = ${campaign.id}::uuid`);
    const hit = await fetch(`${ctx.app.baseUrl}${pixel}`, {
      headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' },
    });
    expect(hit.status).toBe(200);
    await ctx.app.services.tracking.flush();
    const contact = (await ctx.app.api('GET', `/api/contacts/${ids[0]}`, { token: ctx.owner.token })).body;
    expect(contact.campaignMail[0]).toMatchObject({ campaignId: campaign.id, opens: { human: 1, machine: 0 } });
  });

  it('transactional: no unsubscribe headers or tracking, no opt-in needed, suppression still wins', async () => {
    const ids = await audience(3, { optIn: false });
    const blocked = (await ctx.app.api('GET', `/api/contacts/${ids[1]}`, { token: ctx.owner.token })).body.email;
    await ctx.app.database.db.execute(sql`insert into suppressions (workspace_id, email, reason) values (${ctx.owner.workspaceId}::uuid, ${blocked}, 'unsubscribe')`);
    const campaign = await createCampaign({ kind: 'transactional', subject: 'T1 receipt', contactIds: ids });
    await launch(campaign.id);
    await ctx.app.services.sendWorker.runUntilIdle();
    const sent = sentTo('T1 receipt');
    expect(sent.size).toBe(2);
    expect(sent.has(blocked)).toBe(false);
    const message = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject === 'T1 receipt')!;
    const detail = ctx.app.sandbox.control.getMessage(SENDER, message.id);
    expect(detail.headers.some((h) => h.name.toLowerCase() === 'list-unsubscribe')).toBe(false);
    expect(detail.html).not.toContain('/t/o/');
    expect(detail.html).toContain('href="https://acme.test/news"');
  });

  it('invariant 3: two workers on one campaign send to every recipient exactly once', async () => {
    const ids = await audience(12);
    const campaign = await createCampaign({ subject: 'W2 parallel', contactIds: ids });
    await launch(campaign.id);
    const a = worker(ctx.app, { batchSize: 3 });
    const b = worker(ctx.app, { batchSize: 3 });
    await Promise.all([a.runUntilIdle(), b.runUntilIdle(), a.runUntilIdle()]);
    const sent = sentTo('W2 parallel');
    expect(sent.size).toBe(12);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
  });

  it('invariant 3: a crash between Gmail\'s answer and the ledger update never sends a second message', async () => {
    const ids = await audience(3);
    const campaign = await createCampaign({ subject: 'C3 crash', contactIds: ids });
    await launch(campaign.id);
    let crashes = 0;
    const crashing = worker(ctx.app, {
      concurrency: 1,
      afterGmailAccepted: () => {
        crashes += 1;
        throw new Error('process died');
      },
    });
    // The lane's own error stops the batch (logged, not thrown: other mailboxes' sends go on).
    await crashing.tick();
    expect(crashes).toBe(1);
    // Only the message that was in flight is left `sending`; the rest of the batch stayed queued.
    expect((await getCampaign(campaign.id)).progress).toMatchObject({ sending: 1, queued: 2 });

    // A new process, once the dead one's lease has expired: recovery searches the mailbox for the stuck send's Message-ID first.
    const fresh = worker(ctx.app);
    expect(await fresh.recoverStuck(new Date(Date.now() + 1000))).toBe(0); // lease still live: untouched
    expect(await fresh.recoverStuck(new Date(Date.now() + 300_000))).toBe(1);
    await fresh.runUntilIdle();
    const sent = sentTo('C3 crash');
    expect(sent.size).toBe(3);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    expect((await getCampaign(campaign.id)).progress).toMatchObject({ sent: 3, sending: 0, queued: 0 });
  });

  it('invariant 1: an opt-out committed while a campaign is sending stops that contact\'s mail', async () => {
    const ids = await audience(6);
    const campaign = await createCampaign({ subject: 'O4 optout', contactIds: ids });
    await launch(campaign.id);
    const small = worker(ctx.app, { batchSize: 2 });
    await small.tick();
    expect(sentTo('O4 optout').size).toBe(2);
    // Someone the first batch did not reach yet.
    const emails = await Promise.all(ids.map(async (id) => (await ctx.app.api('GET', `/api/contacts/${id}`, { token: ctx.owner.token })).body.email as string));
    const late = emails.find((email) => !sentTo('O4 optout').has(email))!;
    await ctx.app.database.db.execute(sql`insert into suppressions (workspace_id, email, reason) values (${ctx.owner.workspaceId}::uuid, ${late}, 'unsubscribe')`);
    await small.runUntilIdle();
    const sent = sentTo('O4 optout');
    expect(sent.size).toBe(5);
    expect(sent.has(late)).toBe(false);
    expect((await getCampaign(campaign.id)).progress.skippedBecause).toEqual({ suppressed: 1 });
  });

  it('pause, resume and restart never re-send', async () => {
    const ids = await audience(6);
    const campaign = await createCampaign({ subject: 'P5 pause', contactIds: ids });
    await launch(campaign.id);
    const small = worker(ctx.app, { batchSize: 2 });
    await small.tick();
    expect((await ctx.app.api('POST', `/api/campaigns/${campaign.id}/pause`, { token: ctx.owner.token })).body.status).toBe('paused');
    expect(await small.runUntilIdle()).toBe(0);
    expect(sentTo('P5 pause').size).toBe(2);
    expect((await getCampaign(campaign.id)).progress.waitingFor).toBe('paused_by_user');
    expect((await ctx.app.api('POST', `/api/campaigns/${campaign.id}/resume`, { token: ctx.owner.token })).body.status).toBe('sending');
    await worker(ctx.app, { batchSize: 2 }).runUntilIdle();
    const sent = sentTo('P5 pause');
    expect(sent.size).toBe(6);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    expect((await ctx.app.api('POST', `/api/campaigns/${campaign.id}/resume`, { token: ctx.owner.token })).status).toBe(409);
  });

  it('a reply stops the sequence for that contact only; follow-ups stay in the thread', async () => {
    const ids = await audience(3);
    const campaign = await createCampaign({ subject: 'S6 intro', contactIds: ids, steps: [{ afterDays: 0, html: '<p>Just following up</p>' }] });
    await launch(campaign.id);
    const w = worker(ctx.app);
    await w.tick(); // step 0 to everyone; step 1 is queued, due now
    const first = (await ctx.app.api('GET', `/api/contacts/${ids[0]}`, { token: ctx.owner.token })).body.email;
    const inbox = ctx.app.sandbox.control.listMessages(first).find((m) => m.subject.includes('S6 intro'))!;
    await ctx.app.sandbox.control.reply(first, inbox.id, { text: 'Thanks, not now' });
    await ctx.app.services.sync.syncMailbox(mailbox.id);
    await w.runUntilIdle();

    const sent = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).filter((m) => m.subject.includes('S6 intro'));
    const followUps = sent.filter((m) => m.subject.startsWith('Re: '));
    expect(followUps.map((m) => m.to[0]).sort()).toEqual(sent.filter((m) => !m.subject.startsWith('Re: ') && m.to[0] !== first).map((m) => m.to[0]).sort());
    for (const followUp of followUps) {
      const original = sent.find((m) => !m.subject.startsWith('Re: ') && m.to[0] === followUp.to[0])!;
      expect(followUp.threadId).toBe(original.threadId);
      expect(followUp.inReplyTo).toBe(original.messageId);
    }
    expect((await getCampaign(campaign.id)).progress.skippedBecause).toEqual({ replied: 1 });
  });

  it('429 storms slow the campaign without losing or duplicating anything', async () => {
    const ids = await audience(4);
    const campaign = await createCampaign({ subject: 'R7 storm', contactIds: ids });
    await launch(campaign.id);
    ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'send', mailbox: SENDER, retryAfterSeconds: 1, times: 3 });
    const w = worker(ctx.app);
    const deadline = Date.now() + 20_000;
    while ((await getCampaign(campaign.id)).status !== 'completed' && Date.now() < deadline) {
      await w.tick();
      await new Promise((r) => setTimeout(r, 200));
    }
    const sent = sentTo('R7 storm');
    expect(sent.size).toBe(4);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    expect((await getCampaign(campaign.id)).progress).toMatchObject({ sent: 4, failed: 0 });
  });

  it('needs_reconnect pauses the campaign with a reason; reconnecting resumes it', async () => {
    const fragile = await connectedMailbox(ctx.app, ctx.owner.token, 'fragile-sender@acme.test', { sync: true });
    const ids = await audience(2);
    const res = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'n', kind: 'marketing', mailboxId: fragile.id, subject: 'N8 reconnect', text: 'x', contactIds: ids },
    });
    await launch(res.body.id);
    ctx.app.sandbox.control.revokeAccess('fragile-sender@acme.test');
    ctx.app.sandbox.control.expireAccessTokens('fragile-sender@acme.test');
    const w = worker(ctx.app);
    await w.tick();
    const paused = await getCampaign(res.body.id);
    expect(paused).toMatchObject({ status: 'paused', statusReason: 'mailbox_needs_reconnect' });
    expect(paused.progress).toMatchObject({ sent: 0, queued: 2, waitingFor: 'mailbox_needs_reconnect' });

    await connectedMailbox(ctx.app, ctx.owner.token, 'fragile-sender@acme.test', { sync: true });
    // It resumes once the sync the reconnect starts has read what arrived meanwhile.
    await ctx.app.services.sync.idle();
    await w.runUntilIdle();
    expect((await getCampaign(res.body.id)).progress).toMatchObject({ sent: 2, queued: 0 });
  });

  it('waits outside its sending window and says so', async () => {
    const ids = await audience(1);
    const closedNow = new Date().getUTCDay() === 0 ? [2] : [7];
    const campaign = await createCampaign({ subject: 'W9 window', contactIds: ids, sendingWindow: { days: closedNow, startHour: 0, endHour: 24, timeZone: 'UTC' } });
    await launch(campaign.id);
    expect(await worker(ctx.app).runUntilIdle()).toBe(0);
    const state = await getCampaign(campaign.id);
    expect(state.progress).toMatchObject({ queued: 1, waitingFor: 'sending_window' });
    expect(new Date(state.progress.nextSendAt).getTime()).toBeGreaterThan(Date.now());
  });

  it('stops between rounds when its sending window closes, not after the whole batch', async () => {
    const ids = await audience(12);
    const today = new Date().getUTCDay() || 7;
    const campaign = await createCampaign({ subject: 'W10 closing', contactIds: ids, sendingWindow: { days: [today], startHour: 0, endHour: 24, timeZone: 'UTC' } });
    await launch(campaign.id);
    // The clock jumps to tomorrow (outside the window) as soon as the first message reaches Gmail.
    let clock = Date.now();
    const sends = () => ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: SENDER }).length;
    const before = sends();
    let watching = true;
    const watcher = (async () => {
      while (watching && sends() === before) await new Promise((resolve) => setImmediate(resolve));
      clock += 86_400_000;
    })();
    const sent = await worker(ctx.app, { now: () => new Date(clock) }).tick();
    watching = false;
    await watcher;
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(12);
    expect((await getCampaign(campaign.id)).progress).toMatchObject({ sent, queued: 12 - sent });
    await ctx.app.api('POST', `/api/campaigns/${campaign.id}/cancel`, { token: ctx.owner.token });
  });

  it('marketing launch needs the postal address; a launched campaign cannot be launched or edited again', async () => {
    const other = await signUp(ctx.app);
    const otherBox = await connectedMailbox(ctx.app, other.token, 'nofooter@acme.test');
    const contact = (await ctx.app.api('POST', '/api/contacts', { token: other.token, json: { email: 'c@contoso.test' } })).body;
    const draft = await ctx.app.api('POST', '/api/campaigns', {
      token: other.token,
      json: { name: 'n', kind: 'marketing', mailboxId: otherBox.id, subject: 'x', text: 'x', contactIds: [contact.id] },
    });
    const res = await ctx.app.api('POST', `/api/campaigns/${draft.body.id}/launch`, { token: other.token, json: {} });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('postal_address_required');

    const ids = await audience(1);
    const campaign = await createCampaign({ subject: 'L10', contactIds: ids, startAt: new Date(Date.now() + 3600_000).toISOString() });
    expect((await launch(campaign.id)).body.status).toBe('scheduled');
    expect((await launch(campaign.id)).status).toBe(409);
    const edit = await ctx.app.api('PATCH', `/api/campaigns/${campaign.id}`, {
      token: ctx.owner.token,
      json: { name: 'x', kind: 'marketing', mailboxId: mailbox.id, subject: 'x', text: 'x', contactIds: ids },
    });
    expect(edit.status).toBe(409);
    expect((await ctx.app.api('POST', `/api/campaigns/${campaign.id}/cancel`, { token: ctx.owner.token })).body).toMatchObject({
      status: 'cancelled',
      progress: { queued: 0, skipped: 1 },
    });
  });
});

describe('an opt-out by the link of mail sent before the contact\'s address changed', () => {
  it('P-08 suppresses the address mailed and opts the contact out, so marketing to its new address needs a new opt-in', async () => {
    const [contactId] = await audience(1, { prefix: 'moved' });
    const campaign = await createCampaign({ subject: 'Before the move', contactIds: [contactId] });
    expect((await launch(campaign.id)).status).toBe(200);
    await ctx.app.services.sendWorker.runUntilIdle();
    const [send] = ((await ctx.app.database.db.execute(sql`select recipient_id, email, status from campaign_sends where campaign_id = ${campaign.id}`)) as unknown as {
      rows: { recipient_id: string; email: string; status: string }[];
    }).rows;
    expect(send!.status).toBe('sent');
    const moved = await ctx.app.api('PATCH', `/api/contacts/${contactId}`, { token: ctx.owner.token, json: { email: `moved-new-${seq}@contoso.test` } });
    expect(moved.status, moved.text).toBe(200);

    const link = createTrackingUrls(createTokenCodec(ctx.app.config.trackingSecrets), '').unsubscribe(send!.recipient_id, campaign.id);
    const optOut = await ctx.app.api('POST', link, { body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(optOut.status).toBe(200);

    const consents = await ctx.app.api('GET', `/api/contacts/${contactId}/consents`, { token: ctx.owner.token });
    expect(consents.body.consents[0]).toMatchObject({ status: 'opted_out', source: 'unsubscribe-link' });
    const next = await createCampaign({ subject: 'After the move', contactIds: [contactId] });
    expect((await ctx.app.api('POST', `/api/campaigns/${next.id}/preflight`, { token: ctx.owner.token })).body).toMatchObject({ total: 1, eligible: 0, missingConsent: 1 });
    const suppressed = await ctx.app.api('GET', `/api/suppressions?email=${encodeURIComponent(send!.email)}`, { token: ctx.owner.token });
    expect(suppressed.body.suppressions).toHaveLength(1);
  });
});

describe('a consent opt-out of a contact whose address changed after its campaign was launched', () => {
  it('P-08 takes the opt-out lock of the address its queued send will go to, as well as its address now (the claim locks the first and re-checks consent)', async () => {
    const [contactId] = await audience(1, { prefix: 'relocked' });
    const campaign = await createCampaign({ subject: 'Queued before the move', contactIds: [contactId], startAt: new Date(Date.now() + 3600_000).toISOString() });
    expect((await launch(campaign.id)).status).toBe(200);
    const moved = await ctx.app.api('PATCH', `/api/contacts/${contactId}`, { token: ctx.owner.token, json: { email: `relocked-new-${seq}@contoso.test` } });
    expect(moved.status, moved.text).toBe(200);
    const held = await ctx.app.database.db.transaction(async (tx) => {
      await lockContactAddress(tx as unknown as Db, contactId!);
      const rows = (await tx.execute(sql`select count(*)::int as n from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()`)) as unknown as { rows: { n: number }[] };
      return Number(rows.rows[0]!.n);
    });
    expect(held).toBe(2);
    await ctx.app.api('POST', `/api/campaigns/${campaign.id}/cancel`, { token: ctx.owner.token });
  });
});

describe('links', () => {
  it('a campaign may hold 1,000 distinct links; more is a 422 and nothing is stored (13,107 were a 500: past 65,535 parameters)', async () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `<a href="https://e.test/${i}">x</a>`).join('');
    const before = await snapshotCounts(ctx.app.database.db);
    const many = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'Links', kind: 'transactional', mailboxId: mailbox.id, subject: 'Hi', html: body(13_107), contactIds: await audience(1) },
    });
    expect(many.status).toBe(422);
    expect(many.body.error.code).toBe('too_many_links');
    expect((await snapshotCounts(ctx.app.database.db)).campaigns).toBe(before.campaigns);
    const enough = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'Links', kind: 'transactional', mailboxId: mailbox.id, subject: 'Hi', html: body(1_000), contactIds: await audience(1) },
    });
    expect(enough.status, enough.text).toBe(201);
  });
});

describe('recipients from a CSV file', () => {
  it('imports the rows as contacts and makes exactly them the draft\'s audience', async () => {
    const campaign = await createCampaign({ kind: 'transactional', subject: 'CSV1', contactIds: await audience(1) });
    const csv = 'email,first name,plan\ncsv-a@contoso.test,Ann,pro\nCSV-B@contoso.test,Bo,free\nnot-an-address,X,\n';
    const res = await ctx.app.api('POST', `/api/campaigns/${campaign.id}/recipients`, { token: ctx.owner.token, body: csv, headers: { 'content-type': 'text/csv' } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ recipients: 2, import: { created: 2, failed: 1 } });
    const preflight = await ctx.app.api('POST', `/api/campaigns/${campaign.id}/preflight`, { token: ctx.owner.token });
    expect(preflight.body).toMatchObject({ total: 2, eligible: 2 });
    const wrongType = await ctx.app.api('POST', `/api/campaigns/${campaign.id}/recipients`, { token: ctx.owner.token, json: {} });
    expect(wrongType.status).toBe(415);
    // A file every row of which is refused leaves the audience as it was.
    const refused = await ctx.app.api('POST', `/api/campaigns/${campaign.id}/recipients`, { token: ctx.owner.token, body: 'email\nnot-an-address\n', headers: { 'content-type': 'text/csv' } });
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'no_recipients', details: { import: { failed: 1 } } });
    expect((await ctx.app.api('POST', `/api/campaigns/${campaign.id}/preflight`, { token: ctx.owner.token })).body).toMatchObject({ total: 2 });
  });
});
