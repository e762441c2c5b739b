import { generateKeyPairSync } from 'node:crypto';
import { sql } from 'drizzle-orm';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SANDBOX_PUSH_TOPIC } from '../../src/gmail/google-settings.js';
import { startJobs } from '../../src/jobs.js';
import { createLogger } from '../../src/logger.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * Reading mail into the CRM: the real app on a socket, the real Google client, the Gmail
 * sandbox over HTTP. Tests share one app and run in order; each names the mailbox it uses.
 */

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let alice: { id: string; email: string };
const contactIds: Record<string, string> = {};

const ALICE = 'alice@acme.test';
const BOB = 'bob@contoso.test';
const CAROL = 'carol@contoso.test';

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app);
  for (const email of [BOB, CAROL, 'gone@contoso.test', 'full@contoso.test', 'later@contoso.test']) {
    contactIds[email] = (await app.api('POST', '/api/contacts', { token: owner.token, json: { email } })).body.id;
  }
  app.sandbox.control.createMailbox({ email: BOB });
  alice = await connectedMailbox(app, owner.token, ALICE, { sync: true });
});
afterAll(async () => {
  await app?.close();
});
beforeEach(() => {
  app.sandbox.control.clearFaults();
});

const sync = (mailboxId: string) => app.services.sync.syncMailbox(mailboxId);

async function query<T = Record<string, unknown>>(statement: ReturnType<typeof sql>): Promise<T[]> {
  return ((await app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
}

const syncedRows = (mailboxId: string) =>
  query<{ id: string; subject: string | null; direction: string; status: string; gmail_message_id: string; from_address: string; to_addresses: string[] }>(
    sql`select * from messages where mailbox_id = ${mailboxId}::uuid and synced order by at, gmail_message_id`,
  );

async function mailboxView(id: string) {
  const res = await app.api('GET', '/api/mailboxes', { token: owner.token });
  return res.body.mailboxes.find((m: { id: string }) => m.id === id);
}

const pushAudience = () => `${app.config.publicBaseUrl}/webhooks/gmail`;
const pushBody = (email: string) => app.sandbox.control.pushNotificationBody(email);
const push = (token: string | undefined, body: unknown) =>
  app.api('POST', '/webhooks/gmail', { json: body, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

describe('full and incremental sync', () => {
  it('a full sync keeps only mail with CRM contacts, as metadata only, and shows its status', async () => {
    const c = app.sandbox.control;
    await c.deliverInbound(ALICE, { from: `Bob <${BOB}>`, subject: 'Proposal', text: 'SECRET-BODY-ONE about the proposal' });
    await c.deliverInbound(ALICE, { from: 'news@nowhere.test', subject: 'Newsletter', text: 'SECRET-BODY-NEWS' });
    await c.deliverInbound(ALICE, { from: 'stranger@nowhere.test', cc: `CAROL@contoso.test`, subject: 'Intro', text: 'SECRET-BODY-CC' });
    // Sent from Gmail itself (another client), not through inboxtrail: outbound.
    await c.sendAs(ALICE, { to: CAROL, subject: 'From Gmail web', text: 'SECRET-BODY-SENT' });

    const outcome = await sync(alice.id);
    expect(outcome).toMatchObject({ status: 'synced', mode: 'full', examined: 4, kept: 3 });

    const rows = await syncedRows(alice.id);
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
    expect(app.logs.join('')).not.toContain('SECRET-BODY');

    // Linked to the contacts, so they show on their timelines.
    const carol = (await app.api('GET', `/api/contacts/${contactIds[CAROL]}`, { token: owner.token })).body;
    expect(carol.timeline.filter((e: { type: string }) => e.type === 'message').map((e: { subject: string }) => e.subject).sort()).toEqual(['From Gmail web', 'Intro']);

    const [stored] = await query<{ history_id: string }>(sql`select history_id from mailboxes where id = ${alice.id}::uuid`);
    expect(stored!.history_id).toMatch(/^\d+$/);
    expect((await mailboxView(alice.id)).sync).toMatchObject({ enabled: true, lastError: null, messagesSeen: 4 });
    expect((await mailboxView(alice.id)).sync.lastSuccessAt).toBeTruthy();
  });

  it('an incremental sync follows history and picks up a new message without listing the mailbox', async () => {
    const lists = app.sandbox.control.callCounts({ mailbox: ALICE }).list;
    await app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Follow-up', text: 'x' });
    expect(await sync(alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', examined: 1, kept: 1 });
    expect(app.sandbox.control.callCounts({ mailbox: ALICE }).list).toBe(lists);
    expect((await syncedRows(alice.id)).map((r) => r.subject)).toContain('Follow-up');
    // Nothing new: nothing fetched, nothing written.
    const gets = app.sandbox.control.callCounts({ mailbox: ALICE }).get;
    expect(await sync(alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', examined: 0 });
    expect(app.sandbox.control.callCounts({ mailbox: ALICE }).get).toBe(gets);
    expect((await mailboxView(alice.id)).sync.messagesSeen).toBe(5);
  });

  it('a request while a sync runs is queued behind it once, never run alongside', async () => {
    const first = sync(alice.id);
    const second = sync(alice.id);
    const third = sync(alice.id);
    expect(third).toBe(second);
    expect(await first).toMatchObject({ status: 'synced' });
    expect(await second).toMatchObject({ status: 'synced' });
  });

  it('a history id too old for Gmail (404) → a full resync that still finds the new mail', async () => {
    const before = (await syncedRows(alice.id)).length;
    await app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'After truncation', text: 'x' });
    // Gmail forgets history older than now: the stored id (from before that mail) gets a 404.
    app.sandbox.control.truncateHistory(ALICE);
    const outcome = await sync(alice.id);
    expect(outcome).toMatchObject({ status: 'synced', mode: 'full', resynced: true });
    const rows = await syncedRows(alice.id);
    expect(rows.map((r) => r.subject)).toContain('After truncation');
    // Already-synced mail was not duplicated by the resync.
    expect(rows.length).toBe(before + 1);
    expect(new Set(rows.map((r) => r.gmail_message_id)).size).toBe(rows.length);
    expect((await mailboxView(alice.id)).sync.lastError).toBeNull();
    expect(app.logs.join('')).toContain('doing a full resync');
  });
});

describe('replies and bounces to mail we sent', () => {
  it('a reply to a message sent with POST /api/messages becomes a reply event on it, in the contact\'s timeline, once', async () => {
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: alice.id, to: BOB, subject: 'Our offer', text: 'x' } });
    expect(sent.status).toBe(201);
    const bobsCopy = app.sandbox.control.listMessages(BOB).find((m) => m.subject === 'Our offer')!;
    const reply = await app.sandbox.control.reply(BOB, bobsCopy.id, { text: 'Yes please, SECRET-REPLY-BODY' });

    expect(await sync(alice.id)).toMatchObject({ status: 'synced', events: 1 });
    const events = await query<{ type: string; message_id: string; recipient: string; detail: { automatic: boolean } }>(
      sql`select * from mail_events where message_id = ${sent.body.id}::uuid`,
    );
    expect(events).toMatchObject([{ type: 'reply', recipient: BOB, detail: { automatic: false } }]);
    // Our own send was recognized in SENT and not copied in as a synced row.
    const copies = await query(sql`select id from messages where rfc822_message_id = ${sent.body.messageId}`);
    expect(copies).toHaveLength(1);

    const timeline = (await app.api('GET', `/api/contacts/${contactIds[BOB]}`, { token: owner.token })).body.timeline;
    expect(timeline.find((e: { messageId: string }) => e.messageId === sent.body.id).events).toMatchObject([{ type: 'reply' }]);
    expect(timeline.some((e: { subject: string; direction: string }) => e.direction === 'inbound' && e.subject === 'Re: Our offer')).toBe(true);

    // Syncing the same history again (a resync) records nothing twice.
    await query(sql`update mailboxes set history_id = null where id = ${alice.id}::uuid`);
    await query(sql`delete from messages where gmail_message_id = ${reply.id} and mailbox_id = ${alice.id}::uuid`);
    await sync(alice.id);
    expect(await query(sql`select id from mail_events where message_id = ${sent.body.id}::uuid`)).toHaveLength(1);
  });

  it('a hard bounce becomes a bounce event and suppresses the address; the next send to it is 409', async () => {
    app.sandbox.control.setBouncingAddress('gone@contoso.test', 'hard');
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: alice.id, to: 'gone@contoso.test', subject: 'Hello?', text: 'x' } });
    expect(sent.status).toBe(201);
    expect(await sync(alice.id)).toMatchObject({ status: 'synced', events: 1 });

    const [event] = await query<{ type: string; recipient: string; detail: Record<string, unknown>; source_gmail_message_id: string }>(
      sql`select * from mail_events where message_id = ${sent.body.id}::uuid`,
    );
    expect(event).toMatchObject({ type: 'bounce', recipient: 'gone@contoso.test', detail: { kind: 'hard', status: '5.1.1', recipient: 'gone@contoso.test' } });
    const suppressions = await query(sql`select email, reason, source, scope from suppressions where workspace_id = ${owner.workspaceId}::uuid`);
    expect(suppressions).toEqual([{ email: 'gone@contoso.test', reason: 'bounce', source: `dsn:${event!.source_gmail_message_id}`, scope: 'all' }]);

    const again = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: alice.id, to: 'gone@contoso.test', subject: 'Again', text: 'x' } });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('recipient_suppressed');
    const timeline = (await app.api('GET', `/api/contacts/${contactIds['gone@contoso.test']}`, { token: owner.token })).body.timeline;
    expect(timeline.find((e: { messageId: string }) => e.messageId === sent.body.id).events).toMatchObject([{ type: 'bounce' }]);
  });

  it('a delay notice is recorded as a delay and does not suppress, also when the report carries the whole original', async () => {
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: alice.id, to: 'full@contoso.test', subject: 'Quota', text: 'SECRET-ORIGINAL' } });
    await app.sandbox.control.deliverBounce(ALICE, { originalMessageId: `<${sent.body.messageId}>`, kind: 'delay', includeOriginal: 'full' });
    expect(await sync(alice.id)).toMatchObject({ status: 'synced', events: 1 });
    const events = await query(sql`select type, detail from mail_events where message_id = ${sent.body.id}::uuid`);
    expect(events).toMatchObject([{ type: 'delay', detail: { kind: 'delay', status: '4.2.2', recipient: 'full@contoso.test', suppressed: false } }]);
    expect(await query(sql`select id from suppressions where email = 'full@contoso.test'`)).toEqual([]);
    const next = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: alice.id, to: 'full@contoso.test', subject: 'Still fine', text: 'x' } });
    expect(next.status).toBe(201);
    expect(JSON.stringify(await query(sql`select * from messages`))).not.toContain('SECRET-ORIGINAL');
    const timeline = (await app.api('GET', `/api/contacts/${contactIds['full@contoso.test']}`, { token: owner.token })).body.timeline;
    expect(timeline.find((e: { messageId: string }) => e.messageId === sent.body.id).events).toMatchObject([{ type: 'delay', kind: 'delay', status: '4.2.2' }]);
  });
});

describe('Gmail failing during sync', () => {
  it('rides out a 429 storm on list, get and history (Retry-After honoured), and duplicates nothing', async () => {
    const storm = await connectedMailbox(app, owner.token, 'storm@acme.test', { sync: true });
    for (const subject of ['one', 'two', 'three']) await app.sandbox.control.deliverInbound('storm@acme.test', { from: BOB, subject, text: 'x' });
    for (const endpoint of ['list', 'get'] as const) {
      app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint, mailbox: 'storm@acme.test', retryAfterSeconds: 1, times: 2 });
    }
    const started = Date.now();
    expect(await sync(storm.id)).toMatchObject({ status: 'synced', mode: 'full', kept: 3 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);

    await app.sandbox.control.deliverInbound('storm@acme.test', { from: BOB, subject: 'four', text: 'x' });
    app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'history', mailbox: 'storm@acme.test', retryAfterSeconds: 1, times: 2 });
    expect(await sync(storm.id)).toMatchObject({ status: 'synced', mode: 'incremental', kept: 1 });
    expect(app.sandbox.control.listFaults()).toEqual([]);

    const rows = await syncedRows(storm.id);
    expect(rows.map((r) => r.subject).sort()).toEqual(['four', 'one', 'three', 'two']);
    expect(app.sandbox.control.calls({ mailbox: 'storm@acme.test' }).filter((c) => c.status === 429)).toHaveLength(6);
  });

  it('a rate limit that outlasts the pacer leaves history where it was and shows lastError; the poller waits it out', async () => {
    const SLOW = 'slow@acme.test';
    const slow = await connectedMailbox(app, owner.token, SLOW, { sync: true });
    await sync(slow.id);
    const historyOf = async () => (await query<{ history_id: string }>(sql`select history_id from mailboxes where id = ${slow.id}::uuid`))[0]!.history_id;
    const before = await historyOf();
    await app.sandbox.control.deliverInbound(SLOW, { from: BOB, subject: 'later', text: 'x' });
    app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'history', mailbox: SLOW, retryAfterSeconds: 30 });
    expect(await sync(slow.id)).toEqual({ status: 'failed', kind: 'rate_limited' });
    expect((await mailboxView(slow.id)).sync.lastError).toMatch(/^rate_limited: Gmail is rate limiting this mailbox \(retry after 30s\)/);
    expect(await historyOf()).toBe(before);
    expect((await syncedRows(slow.id)).map((r) => r.subject)).not.toContain('later');
    // Paused for the Retry-After: the poller does not even call Gmail for it meanwhile.
    const calls = app.sandbox.control.calls({ mailbox: SLOW }).length;
    await app.services.sync.syncAllDue({ minIntervalMs: 0 });
    expect(app.sandbox.control.calls({ mailbox: SLOW }).length).toBe(calls);
  });

  it('invalid_grant mid-sync → needs_reconnect, rows already written stay, lastError visible; after reconnecting sync resumes', async () => {
    const FRAGILE = 'fragile@acme.test';
    const fragile = await connectedMailbox(app, owner.token, FRAGILE, { sync: true });
    for (let i = 1; i <= 12; i += 1) await app.sandbox.control.deliverInbound(FRAGILE, { from: BOB, subject: `note ${i}`, text: 'x' });
    // Slow answers (4 in flight at a time), so the grant can be revoked between two waves of fetches.
    app.sandbox.control.injectFault({ kind: 'latency', ms: 300, endpoint: 'get', mailbox: FRAGILE, times: 'always' });

    const running = sync(fragile.id);
    // Once the first rows are in, Google stops accepting the grant.
    for (let i = 0; i < 300 && (await syncedRows(fragile.id)).length === 0; i += 1) await new Promise((r) => setTimeout(r, 10));
    app.sandbox.control.injectFault({ kind: 'invalidGrant' });
    app.sandbox.control.expireAccessTokens(FRAGILE);
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

    app.sandbox.control.clearFaults();
    expect(await connectedMailbox(app, owner.token, FRAGILE, { sync: true })).toMatchObject({ id: fragile.id, status: 'active' });
    expect(await sync(fragile.id)).toMatchObject({ status: 'synced' });
    const rows = await syncedRows(fragile.id);
    expect(rows).toHaveLength(12);
    expect(new Set(rows.map((r) => r.gmail_message_id)).size).toBe(12);
    expect((await mailboxView(fragile.id)).sync.lastError).toBeNull();
  });
});

describe('push (POST /webhooks/gmail)', () => {
  const subjects = async () => (await syncedRows(alice.id)).map((r) => r.subject);
  const gmailReads = () => {
    const counts = app.sandbox.control.callCounts({ mailbox: ALICE });
    return counts.history + counts.list + counts.get + counts.profile;
  };
  const validToken = () => app.sandbox.control.signPushToken({ audience: pushAudience(), email: 'gmail-push@inboxtrail-sandbox.iam.gserviceaccount.com' });

  it('a push with a valid Pub/Sub token is answered 204 at once and triggers an incremental sync', async () => {
    await app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Pushed', text: 'x' });
    const res = await push(validToken(), pushBody(ALICE));
    expect(res.status).toBe(204);
    await app.services.sync.idle();
    expect(await subjects()).toContain('Pushed');
  });

  describe('a push that cannot prove it comes from Pub/Sub → 401 and nothing synced', () => {
    beforeAll(async () => {
      await app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Must wait for a real push', text: 'x' });
    });

    const forged = () => {
      // Same kid and claims as a real token, signed with a key the sandbox never published.
      const kid = (jwt.decode(validToken(), { complete: true })!.header as { kid: string }).kid;
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const claims = { aud: pushAudience(), email: 'gmail-push@inboxtrail-sandbox.iam.gserviceaccount.com', email_verified: true, iss: 'https://accounts.google.com' };
      return jwt.sign(claims, privateKey.export({ type: 'pkcs8', format: 'pem' }), { algorithm: 'RS256', keyid: kid, expiresIn: 3600 });
    };
    const cases: [string, () => string | undefined][] = [
      ['no token', () => undefined],
      ['not a JWT', () => 'not-a-jwt'],
      ['forged (another key)', forged],
      ['wrong audience', () => app.sandbox.control.signPushToken({ audience: 'https://elsewhere.test/webhooks/gmail', email: 'gmail-push@x.iam.gserviceaccount.com' })],
      [
        'expired',
        () => app.sandbox.control.signPushToken({ audience: pushAudience(), email: 'gmail-push@x.iam.gserviceaccount.com', issuedAt: new Date(Date.now() - 7_200_000), expiresInSeconds: 3600 }),
      ],
      ['wrong issuer', () => app.sandbox.control.signPushToken({ audience: pushAudience(), email: 'gmail-push@x.iam.gserviceaccount.com', issuer: 'https://issuer.evil.test' })],
    ];

    it.each(cases)('%s', async (_name, token) => {
      const reads = gmailReads();
      const res = await push(token(), pushBody(ALICE));
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_push_token');
      await app.services.sync.idle();
      expect(gmailReads()).toBe(reads);
      expect(await subjects()).not.toContain('Must wait for a real push');
    });
  });

  it('a malformed body → 400; an unknown or already-synced mailbox → 204 without reading Gmail', async () => {
    const reads = gmailReads();
    const encode = (json: unknown) => ({ message: { data: Buffer.from(JSON.stringify(json)).toString('base64') } });
    const malformed = [{}, { message: { data: 'not base64 json' } }, encode({ emailAddress: 'x' }), encode({ emailAddress: ALICE, historyId: 1e22 }), encode({ emailAddress: ALICE, historyId: 'abc' })];
    for (const body of malformed) {
      const res = await push(validToken(), body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_push_message');
    }
    const unknown = { message: { data: Buffer.from(JSON.stringify({ emailAddress: 'nobody@acme.test', historyId: 99 })).toString('base64') } };
    expect((await push(validToken(), unknown)).status).toBe(204);
    const stale = { message: { data: Buffer.from(JSON.stringify({ emailAddress: ALICE, historyId: '1' })).toString('base64') } };
    expect((await push(validToken(), stale)).status).toBe(204);
    await app.services.sync.idle();
    expect(gmailReads()).toBe(reads);
    // A real push then syncs what was waiting.
    expect((await push(validToken(), pushBody(ALICE))).status).toBe(204);
    await app.services.sync.idle();
    expect(await subjects()).toContain('Must wait for a real push');
  });

  it('with GMAIL_PUSH_SERVICE_ACCOUNT set, only a token naming that service account is accepted', async () => {
    const account = 'gmail-push@inboxtrail-prod.iam.gserviceaccount.com';
    const strict = await startTestApp({ env: { GMAIL_PUSH_SERVICE_ACCOUNT: account } });
    try {
      const audience = `${strict.config.publicBaseUrl}/webhooks/gmail`;
      const body = { message: { data: Buffer.from(JSON.stringify({ emailAddress: 'nobody@acme.test', historyId: 5 })).toString('base64') } };
      const as = (email: string) => ({ authorization: `Bearer ${strict.sandbox.control.signPushToken({ audience, email })}` });
      expect((await strict.api('POST', '/webhooks/gmail', { json: body, headers: as('someone@other.iam.gserviceaccount.com') })).status).toBe(401);
      expect((await strict.api('POST', '/webhooks/gmail', { json: body, headers: as(account) })).status).toBe(204);
    } finally {
      await strict.close();
    }
  });
});

describe('P-03 message content, read on demand', () => {
  it('the owner reads a synced message\'s body; it is fetched from Gmail, never stored, never logged', async () => {
    const proposal = (await syncedRows(alice.id)).find((r) => r.subject === 'Proposal')!;
    const res = await app.api('GET', `/api/messages/${proposal.id}/content`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toMatchObject({ id: proposal.id, subject: 'Proposal', from: { name: 'Bob', address: BOB }, to: [{ address: ALICE }], cc: [], html: null });
    expect(res.body.text).toContain('SECRET-BODY-ONE about the proposal');
    expect(new Date(res.body.date).getTime()).toBeGreaterThan(0);

    expect(JSON.stringify(await query(sql`select * from messages`))).not.toContain('SECRET-BODY-ONE');
    expect(app.logs.join('')).not.toContain('SECRET-BODY-ONE');
  });

  it('a message we sent can be read by its owner too', async () => {
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: alice.id, to: CAROL, subject: 'Readable', html: '<p>Hello <b>Carol</b></p>' } });
    const res = await app.api('GET', `/api/messages/${sent.body.id}/content`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ subject: 'Readable', to: [{ address: CAROL }] });
    expect(res.body.html).toContain('<b>Carol</b>');
  });

  it('a teammate without a basis is refused by the privacy guard (403); another workspace gets 404, as for a message that does not exist', async () => {
    const proposal = (await syncedRows(alice.id)).find((r) => r.subject === 'Proposal')!;
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: 'teammate@acme.test', role: 'admin' } });
    const teammate = await app.api('POST', '/api/invitations/accept', { json: { token: invite.body.token, password: 'teammate password' } });
    const stranger = await signUp(app);
    const gets = app.sandbox.control.callCounts({ mailbox: ALICE }).get;
    const refused = await app.api('GET', `/api/messages/${proposal.id}/content`, { token: teammate.body.token as string });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('access_basis_required');
    const elsewhere = await app.api('GET', `/api/messages/${proposal.id}/content`, { token: stranger.token });
    expect(elsewhere.status).toBe(404);
    for (const res of [refused, elsewhere]) expect(res.text).not.toContain('Proposal');
    expect(app.sandbox.control.callCounts({ mailbox: ALICE }).get).toBe(gets);
    expect((await app.api('GET', '/api/messages/not-a-uuid/content', { token: owner.token })).status).toBe(404);
  });

  it('a send-only mailbox cannot be read: 409 read_access_not_granted, and the mailbox stays active', async () => {
    const sendOnly = await connectedMailbox(app, owner.token, 'sendonly@acme.test');
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: sendOnly.id, to: CAROL, subject: 'x', text: 'x' } });
    const res = await app.api('GET', `/api/messages/${sent.body.id}/content`, { token: owner.token });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('read_access_not_granted');
    expect((await mailboxView(sendOnly.id)).status).toBe('active');
    expect(await sync(sendOnly.id)).toEqual({ status: 'skipped', reason: 'sync_disabled' });
  });
});

describe('watches and background jobs', () => {
  it('a syncing mailbox is watched as soon as it connects; renewWatches renews only when due', async () => {
    await app.services.sync.idle();
    expect(app.sandbox.control.getMailbox(ALICE)!.watch).toMatchObject({ topicName: SANDBOX_PUSH_TOPIC, labelIds: ['INBOX'] });
    const expires = new Date((await mailboxView(alice.id)).sync.watchExpiresAt).getTime();
    expect(expires).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    const watches = app.sandbox.control.callCounts({ mailbox: ALICE }).watch;
    // Watched at connect: not due (slow@ may still be paused by its rate limit, so count alice's calls).
    await app.services.sync.renewWatches();
    expect(app.sandbox.control.callCounts({ mailbox: ALICE }).watch).toBe(watches);
    // A day before expiry it is due again.
    await query(sql`update mailboxes set watch_expires_at = now() + interval '1 day' where id = ${alice.id}::uuid`);
    expect((await app.services.sync.renewWatches()).renewed).toBeGreaterThanOrEqual(1);
    expect(app.sandbox.control.callCounts({ mailbox: ALICE }).watch).toBe(watches + 1);
    expect(new Date((await mailboxView(alice.id)).sync.watchExpiresAt).getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);
  });

  it('a send-only mailbox is never watched', async () => {
    await connectedMailbox(app, owner.token, 'quiet@acme.test');
    await app.services.sync.idle();
    expect(app.sandbox.control.getMailbox('quiet@acme.test')!.watch).toBeUndefined();
  });

  it('end to end: a watched mailbox\'s new mail is pushed through (sandbox) Pub/Sub to the webhook, which syncs it', async () => {
    app.sandbox.control.addPushSubscription({ topicName: SANDBOX_PUSH_TOPIC, endpoint: `${app.baseUrl}/webhooks/gmail`, audience: pushAudience() });
    await app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Via Pub/Sub', text: 'x' });
    await app.sandbox.control.flushPushes();
    await app.services.sync.idle();
    expect(app.sandbox.control.pushDeliveries().filter((d) => d.mailbox === ALICE).at(-1)).toMatchObject({ status: 204 });
    expect((await syncedRows(alice.id)).map((r) => r.subject)).toContain('Via Pub/Sub');
  });

  it('the poller syncs due mailboxes in the background and stops cleanly', async () => {
    await app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Polled', text: 'x' });
    const config = { ...app.config, gmail: { ...app.config.gmail, syncPollSeconds: 1 } };
    const jobs = startJobs({ services: app.services, config, logger: createLogger('silent') });
    try {
      for (let i = 0; i < 100 && !(await syncedRows(alice.id)).some((r) => r.subject === 'Polled'); i += 1) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await jobs.stop();
    }
    expect((await syncedRows(alice.id)).map((r) => r.subject)).toContain('Polled');
  });
});

describe('P-06 disconnect', () => {
  it('disconnecting deletes every synced row of the mailbox with its contact links, and keeps the mail we sent', async () => {
    const synced = (await syncedRows(alice.id)).length;
    expect(synced).toBeGreaterThan(0);
    const ours = await query<{ id: string }>(sql`select id from messages where mailbox_id = ${alice.id}::uuid and not synced`);
    expect((await app.api('DELETE', `/api/mailboxes/${alice.id}`, { token: owner.token })).status).toBe(204);

    expect(await query(sql`select id from messages where synced`)).toHaveLength(
      // Other mailboxes' synced rows stay; none of alice's, and no orphan without a mailbox.
      (await query(sql`select id from messages where synced and mailbox_id is not null`)).length,
    );
    expect(await query(sql`select id from messages where synced and mailbox_id is null`)).toEqual([]);
    const kept = await query<{ id: string; mailbox_id: string | null }>(sql`select id, mailbox_id from messages where id in ${sql.raw(`('${ours.map((o) => o.id).join("','")}')`)}`);
    expect(kept).toHaveLength(ours.length);
    // The mailbox row itself is marked deleted and purged later (P-13); the mail we sent keeps pointing at it until then.
    expect(kept.every((m) => m.mailbox_id === alice.id)).toBe(true);
    expect(await query(sql`select id from messages where synced and mailbox_id = ${alice.id}::uuid`)).toEqual([]);
    expect(await query(sql`select email from suppressions where email = 'gone@contoso.test'`)).toHaveLength(1);
  });
});
