import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { ALICE, BOB, CAROL, useSyncApp } from '../helpers/gmail-sync.js';
import { acceptInvitation, signUp } from '../helpers/test-app.js';
import { until } from '../helpers/until.js';

/*
 * Reading mail into the CRM: full and incremental sync, replies and bounces, Gmail failing
 * during a sync, reading a message's content on demand, and disconnecting. The real app on a
 * socket, the real Google client, the Gmail sandbox over HTTP (test/helpers/gmail-sync.ts).
 * Tests share one app and run in order; each names the mailbox it uses. What starts a sync
 * (push, watches, the poller) is in gmail-sync-triggers.test.ts.
 */

const ctx = useSyncApp();
const { sync, query, syncedRows, mailboxView } = ctx;

describe('full and incremental sync', () => {
  it('a full sync keeps only mail with CRM contacts, as metadata only, and shows its status', async () => {
    const c = ctx.app.sandbox.control;
    await c.deliverInbound(ALICE, { from: `Bob <${BOB}>`, subject: 'Proposal', text: 'SECRET-BODY-ONE about the proposal' });
    await c.deliverInbound(ALICE, { from: 'news@nowhere.test', subject: 'Newsletter', text: 'SECRET-BODY-NEWS' });
    await c.deliverInbound(ALICE, { from: 'stranger@nowhere.test', cc: `CAROL@contoso.test`, subject: 'Intro', text: 'SECRET-BODY-CC' });
    // Sent from Gmail itself (another client), not through inboxtrail: outbound.
    await c.sendAs(ALICE, { to: CAROL, subject: 'From Gmail web', text: 'SECRET-BODY-SENT' });

    const outcome = await sync(ctx.alice.id);
    expect(outcome).toMatchObject({ status: 'synced', mode: 'full', examined: 4, kept: 3 });

    const rows = await syncedRows(ctx.alice.id);
    expect(rows.map((r) => [r.subject, r.direction, r.status]).sort()).toEqual([
      ['From Gmail web', 'outbound', 'sent'],
      ['Intro', 'inbound', 'received'],
      ['Proposal', 'inbound', 'received'],
    ]);
    expect(rows.find((r) => r.subject === 'Proposal')).toMatchObject({ from_address: BOB, to_addresses: [ALICE] });

    // Metadata only: no column can hold a body, and no stored value contains one.
    const columns = await query<{ column_name: string }>(sql`select column_name from information_schema.columns where table_name = 'messages'`);
    expect(columns.map((c) => c.column_name).filter((n) => /body|snippet|text|html|raw|content/.test(n))).toEqual([]);
    const dump = JSON.stringify(await query(sql`select m.*, mc.* from messages m left join message_contacts mc on mc.message_id = m.id`));
    expect(dump).not.toContain('SECRET-BODY');
    expect(dump).not.toContain('Newsletter');
    expect(ctx.app.logs.join('')).not.toContain('SECRET-BODY');

    // Linked to the contacts, so they show on their timelines.
    const carol = (await ctx.app.api('GET', `/api/contacts/${ctx.contactIds[CAROL]}`, { token: ctx.owner.token })).body;
    expect(carol.timeline.filter((e: { type: string }) => e.type === 'message').map((e: { subject: string }) => e.subject).sort()).toEqual(['From Gmail web', 'Intro']);

    const [stored] = await query<{ history_id: string }>(sql`select history_id from mailboxes where id = ${ctx.alice.id}::uuid`);
    expect(stored!.history_id).toMatch(/^\d+$/);
    expect((await mailboxView(ctx.alice.id)).sync).toMatchObject({ enabled: true, lastError: null, messagesSeen: 4 });
    expect((await mailboxView(ctx.alice.id)).sync.lastSuccessAt).toBeTruthy();
  });

  it('an incremental sync follows history and picks up a new message without listing the mailbox', async () => {
    const lists = ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).list;
    await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Follow-up', text: 'x' });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', examined: 1, kept: 1 });
    expect(ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).list).toBe(lists);
    expect((await syncedRows(ctx.alice.id)).map((r) => r.subject)).toContain('Follow-up');
    // Nothing new: nothing fetched, nothing written.
    const gets = ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).get;
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', examined: 0 });
    expect(ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).get).toBe(gets);
    expect((await mailboxView(ctx.alice.id)).sync.messagesSeen).toBe(5);
  });

  it('a request while a sync runs is queued behind it once, never run alongside', async () => {
    const first = sync(ctx.alice.id);
    const second = sync(ctx.alice.id);
    const third = sync(ctx.alice.id);
    expect(third).toBe(second);
    expect(await first).toMatchObject({ status: 'synced' });
    expect(await second).toMatchObject({ status: 'synced' });
  });

  it('a history id too old for Gmail (404) → a full resync that still finds the new mail', async () => {
    const before = (await syncedRows(ctx.alice.id)).length;
    await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'After truncation', text: 'x' });
    // Gmail forgets history older than now: the stored id (from before that mail) gets a 404.
    ctx.app.sandbox.control.truncateHistory(ALICE);
    const outcome = await sync(ctx.alice.id);
    expect(outcome).toMatchObject({ status: 'synced', mode: 'full', resynced: true });
    const rows = await syncedRows(ctx.alice.id);
    expect(rows.map((r) => r.subject)).toContain('After truncation');
    // Already-synced mail was not duplicated by the resync.
    expect(rows.length).toBe(before + 1);
    expect(new Set(rows.map((r) => r.gmail_message_id)).size).toBe(rows.length);
    expect((await mailboxView(ctx.alice.id)).sync.lastError).toBeNull();
    expect(ctx.app.logs.join('')).toContain('doing a full resync');
  });
});

describe('replies and bounces to mail we sent', () => {
  it('a reply to a message sent with POST /api/messages becomes a reply event on it, in the contact\'s timeline, once', async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: BOB, subject: 'Our offer', text: 'x' } });
    expect(sent.status).toBe(201);
    const bobsCopy = ctx.app.sandbox.control.listMessages(BOB).find((m) => m.subject === 'Our offer')!;
    const reply = await ctx.app.sandbox.control.reply(BOB, bobsCopy.id, { text: 'Yes please, SECRET-REPLY-BODY' });

    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', events: 1 });
    const events = await query<{ type: string; message_id: string; recipient: string; detail: { automatic: boolean } }>(
      sql`select * from mail_events where message_id = ${sent.body.id}::uuid`,
    );
    expect(events).toMatchObject([{ type: 'reply', recipient: BOB, detail: { automatic: false } }]);
    // Our own send was recognized in SENT and not copied in as a synced row.
    const copies = await query(sql`select id from messages where rfc822_message_id = ${sent.body.messageId}`);
    expect(copies).toHaveLength(1);

    const timeline = (await ctx.app.api('GET', `/api/contacts/${ctx.contactIds[BOB]}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.find((e: { messageId: string }) => e.messageId === sent.body.id).events).toMatchObject([{ type: 'reply' }]);
    expect(timeline.some((e: { subject: string; direction: string }) => e.direction === 'inbound' && e.subject === 'Re: Our offer')).toBe(true);

    // Syncing the same history again (a resync) records nothing twice.
    await query(sql`update mailboxes set history_id = null where id = ${ctx.alice.id}::uuid`);
    await query(sql`delete from messages where gmail_message_id = ${reply.id} and mailbox_id = ${ctx.alice.id}::uuid`);
    await sync(ctx.alice.id);
    expect(await query(sql`select id from mail_events where message_id = ${sent.body.id}::uuid`)).toHaveLength(1);
  });

  it('a reply that landed in Spam is skipped, and read by the next sync once it is marked "Not spam"', async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: BOB, subject: 'Spam-bound offer', text: 'x' } });
    expect(sent.status).toBe(201);
    await sync(ctx.alice.id);
    const bobsCopy = ctx.app.sandbox.control.listMessages(BOB).find((m) => m.subject === 'Spam-bound offer')!;
    await ctx.app.sandbox.control.reply(BOB, bobsCopy.id, { text: 'Yes, but my mail lands in your spam' });
    const inAlice = ctx.app.sandbox.control.listMessages(ALICE).find((m) => m.subject === 'Re: Spam-bound offer')!;
    ctx.app.sandbox.control.modifyLabels(ALICE, inAlice.id, { add: ['SPAM'], remove: ['INBOX'] });
    await sync(ctx.alice.id);
    const replies = () => query(sql`select id from mail_events where message_id = ${sent.body.id}::uuid and type = 'reply'`);
    expect(await replies()).toHaveLength(0);

    ctx.app.sandbox.control.modifyLabels(ALICE, inAlice.id, { add: ['INBOX'], remove: ['SPAM'] });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', events: 1 });
    expect(await replies()).toHaveLength(1);
  });

  it('a hard bounce becomes a bounce event and suppresses the address; the next send to it is 409', async () => {
    ctx.app.sandbox.control.setBouncingAddress('gone@contoso.test', 'hard');
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: 'gone@contoso.test', subject: 'Hello?', text: 'x' } });
    expect(sent.status).toBe(201);
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', events: 1 });

    const [event] = await query<{ type: string; recipient: string; detail: Record<string, unknown>; source_gmail_message_id: string }>(
      sql`select * from mail_events where message_id = ${sent.body.id}::uuid`,
    );
    expect(event).toMatchObject({ type: 'bounce', recipient: 'gone@contoso.test', detail: { kind: 'hard', status: '5.1.1', recipient: 'gone@contoso.test' } });
    const suppressions = await query(sql`select email, reason, source, scope from suppressions where workspace_id = ${ctx.owner.workspaceId}::uuid`);
    expect(suppressions).toEqual([{ email: 'gone@contoso.test', reason: 'bounce', source: `dsn:${event!.source_gmail_message_id}`, scope: 'all' }]);

    const again = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: 'gone@contoso.test', subject: 'Again', text: 'x' } });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('recipient_suppressed');
    const timeline = (await ctx.app.api('GET', `/api/contacts/${ctx.contactIds['gone@contoso.test']}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.find((e: { messageId: string }) => e.messageId === sent.body.id).events).toMatchObject([{ type: 'bounce' }]);
  });

  it('a hard bounce of a Bcc recipient of mail sent from another client suppresses the address; the Bcc is kept, never shown, not on her timeline', async () => {
    const hidden = 'hidden-bcc@contoso.test';
    const created = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: hidden } });
    expect(created.status, created.text).toBe(201);
    ctx.app.sandbox.control.setBouncingAddress(hidden, 'hard');
    // Alice writes from Gmail itself: the sent copy keeps its Bcc header, as Gmail's does.
    await ctx.app.sandbox.control.sendAs(ALICE, { to: 'someone-open@contoso.test', bcc: hidden, subject: 'Bcc from Gmail', text: 'x' });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', events: 1 });

    const suppressions = await query(sql`select email, reason from suppressions where workspace_id = ${ctx.owner.workspaceId}::uuid and email = ${hidden}`);
    expect(suppressions).toEqual([{ email: hidden, reason: 'bounce' }]);
    const [stored] = await query<{ id: string; bcc_addresses: string[] }>(
      sql`select id, bcc_addresses from messages where synced and subject = 'Bcc from Gmail' and mailbox_id = ${ctx.alice.id}::uuid`,
    );
    expect(stored!.bcc_addresses).toEqual([hidden]);
    // Not on her timeline, which teammates read (it would show her as the hidden recipient), and
    // no answer of the API names the Bcc.
    const contact = await ctx.app.api('GET', `/api/contacts/${created.body.id}`, { token: ctx.owner.token });
    expect(contact.body.timeline.find((e: { messageId: string }) => e.messageId === stored!.id)).toBeUndefined();
    const message = await ctx.app.api('GET', `/api/messages/${stored!.id}`, { token: ctx.owner.token });
    expect(message.status).toBe(200);
    expect(message.text).not.toContain(hidden);
  });

  it('a bounce read in the same pass as the mail written in Gmail it is about waits for that mail to be stored, however slowly it is read', async () => {
    const gone = 'slow-copy-gone@contoso.test';
    expect((await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: gone } })).status).toBe(201);
    ctx.app.sandbox.control.setBouncingAddress(gone, 'hard');
    // The pass reads the sent copy first (oldest first): Gmail answers that read slowly, so the
    // notice's read and match would come before the copy is stored (a flaky CI run found it).
    const copy = await ctx.app.sandbox.control.sendAs(ALICE, { to: gone, subject: 'Slow copy', text: 'x' });
    const readsBefore = ctx.app.sandbox.control.calls({ mailbox: ALICE, endpoint: 'get' }).length;
    ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 400, endpoint: 'get', mailbox: ALICE, times: 1 });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', events: 1 });
    // The slowed read was the sent copy's (else this test proves nothing about the ordering).
    const slowed = ctx.app.sandbox.control.calls({ mailbox: ALICE, endpoint: 'get' }).slice(readsBefore).filter((c) => Date.parse(c.at) - Date.parse(c.receivedAt) >= 400);
    expect(slowed.map((c) => c.messageId)).toEqual([copy.id]);
    expect(await query(sql`select email from suppressions where workspace_id = ${ctx.owner.workspaceId}::uuid and email = ${gone}`)).toHaveLength(1);
  });

  it('a Bcc header on received mail is not believed (only the sender\'s own copy keeps one)', async () => {
    const decoy = 'decoy-bcc@contoso.test';
    ctx.app.sandbox.control.setBouncingAddress(decoy, 'hard');
    await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, to: ALICE, subject: 'Inbound with a Bcc', text: 'x', headers: { Bcc: decoy } });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced' });
    const [stored] = await query<{ bcc_addresses: string[] }>(sql`select bcc_addresses from messages where synced and subject = 'Inbound with a Bcc'`);
    expect(stored!.bcc_addresses).toEqual([]);
  });

  it('a delay notice is recorded as a delay and does not suppress, also when the report carries the whole original', async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: 'full@contoso.test', subject: 'Quota', text: 'SECRET-ORIGINAL' } });
    await ctx.app.sandbox.control.deliverBounce(ALICE, { originalMessageId: `<${sent.body.messageId}>`, kind: 'delay', includeOriginal: 'full' });
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', events: 1 });
    const events = await query(sql`select type, detail from mail_events where message_id = ${sent.body.id}::uuid`);
    expect(events).toMatchObject([{ type: 'delay', detail: { kind: 'delay', status: '4.2.2', recipient: 'full@contoso.test', suppressed: false } }]);
    expect(await query(sql`select id from suppressions where email = 'full@contoso.test'`)).toEqual([]);
    const next = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: 'full@contoso.test', subject: 'Still fine', text: 'x' } });
    expect(next.status).toBe(201);
    expect(JSON.stringify(await query(sql`select * from messages`))).not.toContain('SECRET-ORIGINAL');
    const timeline = (await ctx.app.api('GET', `/api/contacts/${ctx.contactIds['full@contoso.test']}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.find((e: { messageId: string }) => e.messageId === sent.body.id).events).toMatchObject([{ type: 'delay', kind: 'delay', status: '4.2.2' }]);
  });
});

describe('Gmail failing during sync', () => {
  it('rides out a 429 storm on list, get and history (Retry-After honoured), and duplicates nothing', async () => {
    const storm = await connectedMailbox(ctx.app, ctx.owner.token, 'storm@acme.test', { sync: true });
    for (const subject of ['one', 'two', 'three']) await ctx.app.sandbox.control.deliverInbound('storm@acme.test', { from: BOB, subject, text: 'x' });
    for (const endpoint of ['list', 'get'] as const) {
      ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint, mailbox: 'storm@acme.test', retryAfterSeconds: 1, times: 2 });
    }
    const started = Date.now();
    expect(await sync(storm.id)).toMatchObject({ status: 'synced', mode: 'full', kept: 3 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);

    await ctx.app.sandbox.control.deliverInbound('storm@acme.test', { from: BOB, subject: 'four', text: 'x' });
    ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'history', mailbox: 'storm@acme.test', retryAfterSeconds: 1, times: 2 });
    expect(await sync(storm.id)).toMatchObject({ status: 'synced', mode: 'incremental', kept: 1 });
    expect(ctx.app.sandbox.control.listFaults()).toEqual([]);

    const rows = await syncedRows(storm.id);
    expect(rows.map((r) => r.subject).sort()).toEqual(['four', 'one', 'three', 'two']);
    expect(ctx.app.sandbox.control.calls({ mailbox: 'storm@acme.test' }).filter((c) => c.status === 429)).toHaveLength(6);
  });

  it('a rate limit that outlasts the pacer leaves history where it was and shows lastError; the poller waits it out', async () => {
    const SLOW = 'slow@acme.test';
    const slow = await connectedMailbox(ctx.app, ctx.owner.token, SLOW, { sync: true });
    await sync(slow.id);
    const historyOf = async () => (await query<{ history_id: string }>(sql`select history_id from mailboxes where id = ${slow.id}::uuid`))[0]!.history_id;
    const before = await historyOf();
    await ctx.app.sandbox.control.deliverInbound(SLOW, { from: BOB, subject: 'later', text: 'x' });
    ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'history', mailbox: SLOW, retryAfterSeconds: 30 });
    expect(await sync(slow.id)).toEqual({ status: 'failed', kind: 'rate_limited' });
    expect((await mailboxView(slow.id)).sync.lastError).toMatch(/^rate_limited: Gmail is rate limiting this mailbox \(retry after 30s\)/);
    expect(await historyOf()).toBe(before);
    expect((await syncedRows(slow.id)).map((r) => r.subject)).not.toContain('later');
    // Paused for the Retry-After: the poller does not even call Gmail for it meanwhile.
    const calls = ctx.app.sandbox.control.calls({ mailbox: SLOW }).length;
    await ctx.app.services.sync.syncAllDue({ minIntervalMs: 0 });
    expect(ctx.app.sandbox.control.calls({ mailbox: SLOW }).length).toBe(calls);
  });

  it('invalid_grant mid-sync → needs_reconnect, rows already written stay, lastError visible; after reconnecting sync resumes', async () => {
    const FRAGILE = 'fragile@acme.test';
    const fragile = await connectedMailbox(ctx.app, ctx.owner.token, FRAGILE, { sync: true });
    for (let i = 1; i <= 12; i += 1) await ctx.app.sandbox.control.deliverInbound(FRAGILE, { from: BOB, subject: `note ${i}`, text: 'x' });
    // Slow answers (4 in flight at a time), so the grant can be revoked between two waves of fetches:
    // 1 s apart, not 300 ms, which a loaded host could spend between the first rows and the revocation.
    ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 1_000, endpoint: 'get', mailbox: FRAGILE, times: 'always' });

    const running = sync(fragile.id);
    // Once the first rows are in, Google stops accepting the grant.
    await until(async () => (await syncedRows(fragile.id)).length > 0, 'sync stores its first rows');
    ctx.app.sandbox.control.injectFault({ kind: 'invalidGrant' });
    ctx.app.sandbox.control.expireAccessTokens(FRAGILE);
    expect(await running).toEqual({ status: 'failed', kind: 'auth_revoked' });

    const kept = (await syncedRows(fragile.id)).length;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(12);
    const view = await mailboxView(fragile.id);
    expect(view.status).toBe('needs_reconnect');
    expect(view.sync.lastError).toMatch(/^auth_revoked: /);
    expect((await query<{ history_id: string | null }>(sql`select history_id from mailboxes where id = ${fragile.id}::uuid`))[0]!.history_id).toBeNull();
    // Paused: nothing is tried until the owner reconnects.
    expect(await sync(fragile.id)).toEqual({ status: 'skipped', reason: 'needs_reconnect' });

    ctx.app.sandbox.control.clearFaults();
    expect(await connectedMailbox(ctx.app, ctx.owner.token, FRAGILE, { sync: true })).toMatchObject({ id: fragile.id, status: 'active' });
    expect(await sync(fragile.id)).toMatchObject({ status: 'synced' });
    const rows = await syncedRows(fragile.id);
    expect(rows).toHaveLength(12);
    expect(new Set(rows.map((r) => r.gmail_message_id)).size).toBe(12);
    const healed = await mailboxView(fragile.id);
    expect(healed.sync.lastError).toBeNull();
    // Each stored message counted once: the failed pass's own, and the retry's (it skips what is stored).
    expect(healed.sync.health).toMatchObject({ read: 12, kept: 12 });
    expect(healed.sync.messagesSeen).toBe(12);
  });
});

describe('P-03 message content, read on demand', () => {
  it('the owner reads a synced message\'s body; it is fetched from Gmail, never stored, never logged', async () => {
    const proposal = (await syncedRows(ctx.alice.id)).find((r) => r.subject === 'Proposal')!;
    const res = await ctx.app.api('GET', `/api/messages/${proposal.id}/content`, { token: ctx.owner.token });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toMatchObject({ id: proposal.id, subject: 'Proposal', from: { name: 'Bob', address: BOB }, to: [{ address: ALICE }], cc: [], html: null });
    expect(res.body.text).toContain('SECRET-BODY-ONE about the proposal');
    expect(new Date(res.body.date).getTime()).toBeGreaterThan(0);

    expect(JSON.stringify(await query(sql`select * from messages`))).not.toContain('SECRET-BODY-ONE');
    expect(ctx.app.logs.join('')).not.toContain('SECRET-BODY-ONE');
  });

  it('a message we sent can be read by its owner too', async () => {
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: ctx.alice.id, to: CAROL, subject: 'Readable', html: '<p>Hello <b>Carol</b></p>' } });
    const res = await ctx.app.api('GET', `/api/messages/${sent.body.id}/content`, { token: ctx.owner.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ subject: 'Readable', to: [{ address: CAROL }] });
    expect(res.body.html).toContain('<b>Carol</b>');
  });

  it('a teammate without a basis is refused by the privacy guard (403); another workspace gets 404, as for a message that does not exist', async () => {
    const proposal = (await syncedRows(ctx.alice.id)).find((r) => r.subject === 'Proposal')!;
    const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'teammate@acme.test', role: 'admin' } });
    const teammate = await acceptInvitation(ctx.app, { token: invite.body.token, password: 'teammate password' });
    const stranger = await signUp(ctx.app);
    const gets = ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).get;
    const refused = await ctx.app.api('GET', `/api/messages/${proposal.id}/content`, { token: teammate.body.token as string });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('access_basis_required');
    const elsewhere = await ctx.app.api('GET', `/api/messages/${proposal.id}/content`, { token: stranger.token });
    expect(elsewhere.status).toBe(404);
    for (const res of [refused, elsewhere]) expect(res.text).not.toContain('Proposal');
    expect(ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).get).toBe(gets);
    expect((await ctx.app.api('GET', '/api/messages/not-a-uuid/content', { token: ctx.owner.token })).status).toBe(404);
  });

  it('a send-only mailbox cannot be read: 409 read_access_not_granted, and the mailbox stays active', async () => {
    const sendOnly = await connectedMailbox(ctx.app, ctx.owner.token, 'sendonly@acme.test');
    const sent = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: sendOnly.id, to: CAROL, subject: 'x', text: 'x' } });
    const res = await ctx.app.api('GET', `/api/messages/${sent.body.id}/content`, { token: ctx.owner.token });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('read_access_not_granted');
    expect((await mailboxView(sendOnly.id)).status).toBe('active');
    expect(await sync(sendOnly.id)).toEqual({ status: 'skipped', reason: 'sync_disabled' });
  });
});

describe('P-06 disconnect', () => {
  it('disconnecting deletes every synced row of the mailbox with its contact links, and keeps the mail we sent', async () => {
    const synced = (await syncedRows(ctx.alice.id)).length;
    expect(synced).toBeGreaterThan(0);
    const ours = await query<{ id: string }>(sql`select id from messages where mailbox_id = ${ctx.alice.id}::uuid and not synced`);
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${ctx.alice.id}`, { token: ctx.owner.token })).status).toBe(204);

    expect(await query(sql`select id from messages where synced`)).toHaveLength(
      // Other mailboxes' synced rows stay; none of alice's, and no orphan without a mailbox.
      (await query(sql`select id from messages where synced and mailbox_id is not null`)).length,
    );
    expect(await query(sql`select id from messages where synced and mailbox_id is null`)).toEqual([]);
    const kept = await query<{ id: string; mailbox_id: string | null }>(sql`select id, mailbox_id from messages where id in ${sql.raw(`('${ours.map((o) => o.id).join("','")}')`)}`);
    expect(kept).toHaveLength(ours.length);
    // The mailbox row itself is marked deleted and purged later (P-13); the mail we sent keeps pointing at it until then.
    expect(kept.every((m) => m.mailbox_id === ctx.alice.id)).toBe(true);
    expect(await query(sql`select id from messages where synced and mailbox_id = ${ctx.alice.id}::uuid`)).toEqual([]);
    expect(await query(sql`select email from suppressions where email = 'gone@contoso.test'`)).toHaveLength(1);
  });
});

describe('hostile mail cannot stop sync or pass for ours', () => {
  it('a message naming 70,000 message ids and 2,000 addresses is kept (addresses capped), and the pass succeeds', async () => {
    const hostile = await connectedMailbox(ctx.app, ctx.owner.token, 'hostile@acme.test', { sync: true });
    expect(await sync(hostile.id)).toMatchObject({ status: 'synced' });
    const references = Array.from({ length: 70_000 }, (_, i) => `<${i.toString(36)}@f>`).join(' ');
    const crowd = [BOB, ...Array.from({ length: 2_000 }, (_, i) => `n${i}@crowd.test`)].join(', ');
    const raw = `From: anyone@flood.test\r\nTo: ${crowd}\r\nSubject: Flood\r\nMessage-ID: <flood-1@flood.test>\r\nReferences: ${references}\r\n\r\nx\r\n`;
    await ctx.app.sandbox.control.deliverInbound('hostile@acme.test', { raw });
    expect(await sync(hostile.id)).toMatchObject({ status: 'synced', kept: 1 });
    const [row] = await query<{ n: number }>(sql`select cardinality(to_addresses) as n from messages where mailbox_id = ${hostile.id}::uuid and subject = 'Flood'`);
    expect(row!.n).toBe(1000);
    expect((await mailboxView(hostile.id)).sync.lastError).toBeNull();
  });

  it("mail in the inbox whose From is the mailbox's own address is inbound: it is not taken for ours, nor counted in today's sends", async () => {
    const forged = await connectedMailbox(ctx.app, ctx.owner.token, 'forged@acme.test', { sync: true });
    const before = (await mailboxView(forged.id)).sentToday;
    await ctx.app.sandbox.control.deliverInbound('forged@acme.test', { from: 'forged@acme.test', to: CAROL, subject: 'Not ours', text: 'x' });
    expect(await sync(forged.id)).toMatchObject({ status: 'synced', kept: 1 });
    expect(await query(sql`select direction from messages where mailbox_id = ${forged.id}::uuid and subject = 'Not ours'`)).toEqual([{ direction: 'inbound' }]);
    expect((await mailboxView(forged.id)).sentToday).toBe(before);
  });
});
