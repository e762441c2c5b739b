import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo, type SendLease } from '../../src/campaigns/send-ledger.repo.js';
import { WEBHOOK_EVENT_TYPES, webhookEventBodySchema, webhookEventCatalogue } from '../../src/webhooks/events.js';
import { recordMailSignal } from '../../src/webhooks/facts.js';
import { verifySignatureHeader } from '../../src/webhooks/signature.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

/*
 * Every event type of the catalogue, from its real fact: a campaign sent through the sandbox
 * (message.sent, campaign.status_changed), opened and clicked (open, click, with verdicts),
 * answered and bounced (reply, bounce, suppression.added by the bounce), unsubscribed with
 * one click (unsubscribe, consent.changed), a suppression removed, a 1:1 send whose mailbox
 * lost its grant (message.failed, mailbox.needs_reconnect). Each payload matches its schema
 * and carries no subject or body (P-02/P-03).
 */

const ctx = useAppWithOwner({ env: { WEBHOOKS_ALLOW_PRIVATE_TARGETS: 'true', WEBHOOKS_RETRY_BASE_SECONDS: '0.02' } });
const SENDER = 'hooks@acme.test';
const SUBJECT = 'W1 secret subject line';
const BODY_TEXT = 'private body words';
let receiver: WebhookReceiver;
let secret: string;
let mailbox: { id: string };

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  const created = await ctx.app.api('POST', '/api/webhooks', { token: ctx.owner.token, json: { url: receiver.url, eventTypes: [...WEBHOOK_EVENT_TYPES] } });
  expect(created.status).toBe(201);
  secret = created.body.secret;
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});
afterAll(async () => {
  await receiver?.close();
});

async function deliverAll() {
  await ctx.app.services.tracking.flush();
  for (let i = 0; i < 50; i += 1) {
    if ((await ctx.app.services.webhookDelivery.tick()) === 0) return;
  }
}
const query = async <T>(statement: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
const eventsOf = (type: string) => receiver.delivered().filter((d) => d.type === type);

describe('every event type from its fact', () => {
  it('a campaign: sent, status changes, opens and clicks with verdicts, a reply, a hard bounce, a one-click unsubscribe', async () => {
    const emails = ['reader', 'answers', 'gone'].map((n) => `${n}@contoso.test`);
    const ids: string[] = [];
    for (const email of emails) {
      if (email !== 'gone@contoso.test') ctx.app.sandbox.control.createMailbox({ email });
      const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email } });
      await ctx.app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'form' } });
      ids.push(contact.body.id);
    }
    ctx.app.sandbox.control.setBouncingAddress('gone@contoso.test', 'hard', undefined, 'text');
    const campaign = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'W1', kind: 'marketing', mailboxId: mailbox.id, subject: SUBJECT, html: `<p>${BODY_TEXT} <a href="https://acme.test/news">news</a></p>`, contactIds: ids },
    });
    expect(campaign.status, campaign.text).toBe(201);
    const campaignId = campaign.body.id as string;
    expect((await ctx.app.api('POST', `/api/campaigns/${campaignId}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
    await ctx.app.services.sendWorker.runUntilIdle();

    const sends = await query<{ id: string; email: string; recipient_id: string }>(sql`select id, email, recipient_id from campaign_sends where campaign_id = ${campaignId}::uuid`);
    const reader = sends.find((s) => s.email === 'reader@contoso.test')!;
    const urls = ctx.app.services.trackingUrls;
    const path = (url: string) => new URL(url).pathname;
    // A human's click and open, some seconds after sending; then a scanner's HEAD.
    await new Promise((resolve) => setTimeout(resolve, 10));
    await fetch(`${ctx.app.baseUrl}${path(urls.openPixel(reader.id))}`, { headers: { 'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15' } });
    await fetch(`${ctx.app.baseUrl}${path(urls.click(reader.id, 0))}`, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0) Chrome/120' } });
    await fetch(`${ctx.app.baseUrl}${path(urls.click(reader.id, 0))}`, { method: 'HEAD', redirect: 'manual' });

    const answers = ctx.app.sandbox.control.listMessages('answers@contoso.test').find((m) => m.subject.includes('W1'))!;
    await ctx.app.sandbox.control.reply('answers@contoso.test', answers.id, { text: 'Tell me more' });
    await ctx.app.services.sync.syncMailbox(mailbox.id);

    const unsubscribe = await fetch(`${ctx.app.baseUrl}${path(urls.unsubscribe(reader.recipient_id, campaignId))}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(unsubscribe.status).toBe(200);
    await deliverAll();

    expect(eventsOf('message.sent').map((e) => e.data.email).sort()).toEqual([...emails].sort());
    expect(eventsOf('message.sent')[0]!.data).toMatchObject({ campaignId, step: 0, messageId: expect.any(String), sendId: expect.any(String) });
    expect(eventsOf('campaign.status_changed').map((e) => `${e.data.from}→${e.data.to}`)).toEqual(expect.arrayContaining(['draft→sending', 'sending→completed']));
    expect(eventsOf('open')).toEqual([expect.objectContaining({ data: expect.objectContaining({ sendId: reader.id, email: 'reader@contoso.test', verdict: expect.stringMatching(/human|machine|unknown/) }) })]);
    const clicks = eventsOf('click');
    expect(clicks).toHaveLength(2);
    expect(clicks.map((c) => c.data.verdict)).toContain('machine');
    for (const click of clicks) expect(click.data).toMatchObject({ linkIndex: 0, campaignId, reasons: expect.any(Array) });
    expect(eventsOf('reply')).toEqual([expect.objectContaining({ data: expect.objectContaining({ email: 'answers@contoso.test', automatic: false, campaignId }) })]);
    expect(eventsOf('bounce')).toEqual([expect.objectContaining({ data: expect.objectContaining({ email: 'gone@contoso.test', kind: 'hard', campaignId }) })]);
    expect(eventsOf('suppression.added').map((e) => `${e.data.email}:${e.data.reason}`).sort()).toEqual(['gone@contoso.test:bounce', 'reader@contoso.test:unsubscribe']);
    expect(eventsOf('unsubscribe')).toEqual([expect.objectContaining({ data: expect.objectContaining({ email: 'reader@contoso.test', campaignId }) })]);
    expect(eventsOf('consent.changed').filter((e) => e.data.status === 'opted_out').map((e) => e.data.email)).toEqual(['reader@contoso.test']);

    // P-13: the bounce's contact deleted, a later notice about the same send names nobody.
    expect((await ctx.app.api('DELETE', `/api/contacts/${ids[2]}`, { token: ctx.owner.token })).status).toBe(204);
    const [bounceEvent] = await query<{ id: string }>(sql`select me.id from mail_events me join campaign_sends cs on cs.message_id = me.message_id where cs.campaign_id = ${campaignId}::uuid and me.type = 'bounce'`);
    await recordMailSignal(ctx.app.database.db, bounceEvent!.id);
    await deliverAll();
    expect(eventsOf('bounce').at(-1)!.data).toMatchObject({ contactId: null, email: null, campaignId });
  });

  it('1:1 mail: sent, and failed when the mailbox lost its grant (which also needs a reconnect)', async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: 'bob@contoso.test', subject: SUBJECT, text: BODY_TEXT } });
    expect(sent.status).toBe(201);
    const fragile = await connectedMailbox(ctx.app, ctx.owner.token, 'fragile-hooks@acme.test');
    ctx.app.sandbox.control.revokeAccess('fragile-hooks@acme.test');
    ctx.app.sandbox.control.expireAccessTokens('fragile-hooks@acme.test');
    const refused = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: fragile.id, to: 'bob@contoso.test', subject: SUBJECT, text: BODY_TEXT } });
    expect(refused.status).toBe(409);
    await deliverAll();

    expect(eventsOf('message.sent').find((e) => e.data.messageId === sent.body.id)!.data).toEqual({ messageId: sent.body.id, mailboxId: mailbox.id });
    expect(eventsOf('message.failed')).toEqual([expect.objectContaining({ data: expect.objectContaining({ mailboxId: fragile.id, errorCode: 'auth_revoked' }) })]);
    expect(eventsOf('mailbox.needs_reconnect')).toEqual([expect.objectContaining({ data: { mailboxId: fragile.id, email: 'fragile-hooks@acme.test' } })]);
  });

  it('a removed suppression, a paused and cancelled campaign', async () => {
    const entry = (await ctx.app.api('GET', '/api/suppressions?email=gone@contoso.test', { token: ctx.owner.token })).body.suppressions[0];
    expect((await ctx.app.api('DELETE', `/api/suppressions/${entry.id}`, { token: ctx.owner.token, json: { note: 'fixed address' } })).status).toBe(204);
    const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: 'later@contoso.test' } });
    const draft = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'W2', kind: 'transactional', mailboxId: mailbox.id, subject: 'W2', text: 'x', contactIds: [contact.body.id] },
    });
    expect((await ctx.app.api('POST', `/api/campaigns/${draft.body.id}/launch`, { token: ctx.owner.token, json: { startAt: new Date(Date.now() + 86_400_000).toISOString() } })).status).toBe(200);
    expect((await ctx.app.api('POST', `/api/campaigns/${draft.body.id}/pause`, { token: ctx.owner.token })).status).toBe(200);
    expect((await ctx.app.api('POST', `/api/campaigns/${draft.body.id}/cancel`, { token: ctx.owner.token })).status).toBe(200);
    await deliverAll();

    expect(eventsOf('suppression.removed')).toEqual([expect.objectContaining({ data: expect.objectContaining({ suppressionId: entry.id, email: 'gone@contoso.test' }) })]);
    expect(eventsOf('campaign.status_changed').filter((e) => e.data.campaignId === draft.body.id).map((e) => `${e.data.from}→${e.data.to}`)).toEqual([
      'draft→scheduled',
      'scheduled→paused',
      'paused→cancelled',
    ]);
  });

  it('P-02 P-03 every payload has its schema, is signed, and carries no subject, body or Gmail content', async () => {
    expect(new Set(receiver.delivered().map((d) => d.type))).toEqual(new Set(WEBHOOK_EVENT_TYPES));
    const ids = new Set<string>();
    for (const request of receiver.received) {
      expect(verifySignatureHeader(String(request.headers['inboxtrail-signature']), secret, request.body)).toBe(true);
      const body = webhookEventBodySchema.parse(JSON.parse(request.body));
      webhookEventCatalogue[body.type].payload.parse(JSON.parse(request.body));
      expect(request.body).not.toContain('W1 secret');
      expect(request.body).not.toContain(BODY_TEXT);
      expect(request.body).not.toContain('Tell me more');
      ids.add(body.id);
    }
    expect(ids.size).toBe(receiver.received.length);
  });
});

describe('message.sent time', () => {
  it('each event of a group-committed sent record carries its own message’s sent time, not the group’s', async () => {
    const ids: string[] = [];
    for (const name of ['first-timed', 'second-timed']) {
      const contact = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: `${name}@contoso.test` } });
      await ctx.app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'form' } });
      ids.push(contact.body.id);
    }
    const draft = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'W3', kind: 'transactional', mailboxId: mailbox.id, subject: 'W3', text: 'x', contactIds: ids },
    });
    expect((await ctx.app.api('POST', `/api/campaigns/${draft.body.id}/launch`, { token: ctx.owner.token, json: {} })).status).toBe(200);
    const campaign = (await createCampaignsRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, draft.body.id))!;
    const ledger = createSendLedgerRepo(ctx.app.database.db, { serializedEngine: ctx.app.database.kind === 'pglite' });
    const t0 = new Date();
    const candidates = await ledger.reserveDue(campaign, 'worker-t', 10, t0, new Date(t0.getTime() + 60_000));
    const verdicts = await ledger.claimMany(
      candidates.map((candidate) => ({
        campaign,
        mailbox: { id: mailbox.id, email: SENDER },
        candidate,
        owner: 'worker-t',
        messageRowId: crypto.randomUUID(),
        subject: 'W3',
        now: t0,
        leaseUntil: new Date(t0.getTime() + 60_000),
      })),
    );
    // Gmail answered the two sends 1.5 s apart; their records commit in one statement.
    const sentAt = [new Date(t0.getTime() + 1_000), new Date(t0.getTime() + 2_500)];
    const recorded = await ledger.markSentMany(
      verdicts.map((verdict, i) => ({
        lease: (verdict as { lease: SendLease }).lease,
        gmail: { id: `gmail-${i}`, threadId: `thread-${i}` },
        at: sentAt[i]!,
        subject: 'W3',
      })),
    );
    expect(recorded).toEqual([true, true]);

    const events = await query<{ send_id: string; occurred_at: Date | string }>(sql`
      select data->>'sendId' as send_id, occurred_at from webhook_events where type = 'message.sent' and data->>'campaignId' = ${campaign.id}`);
    const times = new Map(events.map((e) => [e.send_id, new Date(e.occurred_at).toISOString()]));
    expect(times).toEqual(new Map(candidates.map((c, i) => [c.id, sentAt[i]!.toISOString()])));
  });
});
