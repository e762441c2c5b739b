import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { AppError } from '../../src/errors.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { requestHashOf } from '../../src/idempotency/idempotency.middleware.js';
import { createIdempotencyRepo } from '../../src/idempotency/idempotency.repo.js';
import { createIdempotencyService } from '../../src/idempotency/idempotency.service.js';

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
let mailboxId: string;
const SENDER = 'idem-sender@acme.test';
const inbox = (email: string, subject: string) => ctx.app.sandbox.control.listMessages(email).filter((m) => m.subject === subject);

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, SENDER)).id;
});

function send(subject: string, key: string | undefined, to = 'idem-rcpt@contoso.test', token = ctx.owner.token) {
  if (!ctx.app.sandbox.control.getMailbox(to)) ctx.app.sandbox.control.createMailbox({ email: to });
  return ctx.app.api('POST', '/api/messages', {
    token,
    json: { mailboxId, to, subject, text: 'hello' },
    headers: key ? { 'idempotency-key': key } : {},
  });
}

/**
 * What a kill -9 mid-request leaves (idempotency-kill.test.ts kills for real): the key `in_progress`,
 * `messageId` linked by a send's claim or none, and `lease` (`interval` SQL from now) the request's
 * liveness before its claim, or none. `created_at` to the millisecond, as the app's Date writes it (a claim is told by it).
 */
async function leaveKey(key: string, subject: string, left: { messageId?: string; lease?: string; route?: string; path?: string; json?: unknown } = {}) {
  const json = left.json ?? { mailboxId, to: 'idem-rcpt@contoso.test', subject, text: 'hello' };
  const lease = left.lease === undefined ? sql`null` : sql`now() + ${left.lease}::interval`;
  await ctx.app.database.db.execute(sql`
    insert into idempotency_keys (workspace_id, caller, route, key, request_hash, state, created_at, expires_at, message_id, lease_expires_at)
    values (${ctx.owner.workspaceId}::uuid, ${`user:${ctx.owner.userId}`}, ${left.route ?? 'POST /api/messages'}, ${key},
            ${requestHashOf('POST', left.path ?? '/api/messages', json)}, 'in_progress', date_trunc('milliseconds', now()) - interval '10 minutes', now() + interval '1 day',
            ${left.messageId ?? null}::uuid, ${lease})`);
}

describe('Idempotency-Key', () => {
  it('POST /api/messages: the same key returns the first answer and never sends twice', async () => {
    const first = await send('Once only', 'key-1');
    expect(first.status).toBe(201);
    const again = await send('Once only', 'key-1');
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(inbox('idem-rcpt@contoso.test', 'Once only')).toHaveLength(1);
  });

  it('the same key with a different body → 422 idempotency_key_reused, nothing sent', async () => {
    await send('Original', 'key-2');
    const reused = await send('Something else', 'key-2');
    expect([reused.status, reused.body.error.code]).toEqual([422, 'idempotency_key_reused']);
    expect(inbox('idem-rcpt@contoso.test', 'Something else')).toHaveLength(0);
  });

  it('two identical requests at once: one sends, the other gets 409 idempotency_in_progress; a retry gets the answer; one mail in the sandbox', async () => {
    // Gmail takes a while, so the second request arrives while the first is inside its send.
    ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 700, endpoint: 'send', times: 1 });
    const sendsBefore = ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send;
    const [a, b] = await Promise.all([send('Raced', 'key-3'), send('Raced', 'key-3')]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([201, 409]);
    const loser = a.status === 409 ? a : b;
    expect(loser.body.error.code).toBe('idempotency_in_progress');
    const retried = await send('Raced', 'key-3');
    expect(retried.status).toBe(201);
    expect(retried.body.id).toBe((a.status === 201 ? a : b).body.id);
    expect(inbox('idem-rcpt@contoso.test', 'Raced')).toHaveLength(1);
    expect(ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send - sendsBefore).toBe(1);
  });

  it('a retry while the first is inside Gmail, after its claim: 409 naming the message the first then answers', async () => {
    ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 700, endpoint: 'send', times: 1 });
    const first = send('Claimed first', 'key-claimed');
    // The gate claims the send, linking the key, before the request goes to Gmail (which holds it 700 ms).
    const linked = sql`select 1 from idempotency_keys where key = 'key-claimed' and state = 'in_progress' and message_id is not null`;
    while (((await ctx.app.database.db.execute(linked)) as unknown as { rows: unknown[] }).rows.length === 0) await new Promise((r) => setTimeout(r, 5));
    const retry = await send('Claimed first', 'key-claimed');
    expect([retry.status, retry.body.error.code]).toEqual([409, 'idempotency_in_progress']);
    const answered = await first;
    expect(answered.status).toBe(201);
    expect(retry.body.error.details).toEqual({ messageId: answered.body.id });
    expect(inbox('idem-rcpt@contoso.test', 'Claimed first')).toHaveLength(1);
  });

  it('a send Gmail refused whose request died before freeing its key: the retry answers the refusal naming it, frees the key, and sends nothing', async () => {
    ctx.app.sandbox.control.injectFault({ kind: 'googleError', endpoint: 'send', status: 400, reason: 'invalidArgument', message: 'Invalid To header', times: 1 });
    const refused = await send('Refused, then a crash', 'key-refused');
    expect([refused.status, refused.body.error.code]).toEqual([422, 'gmail_rejected']);
    const messageId = refused.body.error.details.messageId as string;
    // What a kill -9 between recording the refusal and freeing the key leaves (idempotency-kill.test.ts kills for real):
    // the key in_progress, linked by the claim to the failed record.
    await leaveKey('key-refused', 'Refused, then a crash', { messageId });
    const sendsBefore = ctx.app.sandbox.control.calls({ endpoint: 'send' }).length;

    const retry = await send('Refused, then a crash', 'key-refused');
    expect([retry.status, retry.body.error.code, retry.body.error.details]).toEqual([422, 'gmail_rejected', { messageId }]);
    expect(ctx.app.sandbox.control.calls({ endpoint: 'send' })).toHaveLength(sendsBefore);
    // The key is free again, as the refused request itself would have left it: the next retry sends.
    const again = await send('Refused, then a crash', 'key-refused');
    expect(again.status).toBe(201);
    expect(again.body.id).not.toBe(messageId);
    expect(inbox('idem-rcpt@contoso.test', 'Refused, then a crash')).toHaveLength(1);
  });

  it('a retry answering a refusal frees only the claim it read: a retry that claimed the key again meanwhile keeps it, also when the first request finishes late', async () => {
    ctx.app.sandbox.control.injectFault({ kind: 'googleError', endpoint: 'send', status: 400, reason: 'invalidArgument', message: 'Invalid To header', times: 1 });
    const refused = await send('Refused, raced', 'key-refused-raced');
    expect([refused.status, refused.body.error.code]).toEqual([422, 'gmail_rejected']);
    const messageId = refused.body.error.details.messageId as string;
    // Each claim a second apart, as claims of one key are (a Gmail call lies between them).
    let clock = Date.now();
    const repo = createIdempotencyRepo(ctx.app.database.db);
    const service = createIdempotencyService({ repo, now: () => new Date((clock += 1000)) });
    const scope = { workspaceId: ctx.owner.workspaceId, caller: `user:${ctx.owner.userId}`, route: 'POST /api/messages', key: 'key-race' };

    // The first request claims the key and links the send Gmail refused; it is still alive.
    const first = await service.begin(scope, 'hash');
    if (first.kind !== 'first') throw new Error('expected the first claim');
    await repo.linkMessage({ scope, claimedAt: first.claimedAt }, messageId);
    // Retry A reads the key (in progress, linked) and asks the message; meanwhile the first
    // request answers its refusal (freeing its key) and retry B claims the key for a send of its own.
    let second: Awaited<ReturnType<typeof service.begin>> | undefined;
    const retry = service.begin(scope, 'hash', async (id) => {
      await service.finish(scope, first.claimedAt, 422, null);
      second = await service.begin(scope, 'hash');
      throw new AppError('gmail_rejected', 422, 'Gmail refused the message', { messageId: id });
    });
    await expect(retry).rejects.toMatchObject({ code: 'gmail_rejected' });
    expect(second?.kind).toBe('first');
    // B's claim stands: without it a third request would run the route beside B (a second mail).
    expect(await repo.find(scope)).toMatchObject({ state: 'in_progress', messageId: null });
    // A finish of the first claim arriving after B's claim leaves B's alone too.
    await service.finish(scope, first.claimedAt, 422, null);
    expect(await repo.find(scope)).toMatchObject({ state: 'in_progress' });
    if (second?.kind !== 'first') throw new Error('expected the second claim');
    await service.finish(scope, second.claimedAt, 201, { id: 'b' });
    expect(await repo.find(scope)).toMatchObject({ state: 'completed', responseStatus: 201 });
  });

  it('five identical requests at once without latency still send exactly once', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => send('Stampede', 'key-4')));
    for (const answer of answers) expect([201, 409]).toContain(answer.status);
    expect(answers.filter((r) => r.status === 201).map((r) => r.body.id).filter((id, i, all) => all.indexOf(id) === i)).toHaveLength(1);
    expect(inbox('idem-rcpt@contoso.test', 'Stampede')).toHaveLength(1);
  });

  it('a refused request frees its key; keys are per caller; after 24 h the key is new again', async () => {
    const refused = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId, subject: 'x' }, headers: { 'idempotency-key': 'key-5' } });
    expect(refused.status).toBe(400);
    expect((await send('Corrected', 'key-5')).status).toBe(201);

    const apiKey = (await ctx.app.api('POST', '/api/api-keys', { token: ctx.owner.token, json: { name: 'sender', scopes: ['send'] } })).body.key;
    expect((await send('Corrected', 'key-5', undefined, apiKey)).status).toBe(201);
    expect(inbox('idem-rcpt@contoso.test', 'Corrected')).toHaveLength(2);

    await ctx.app.database.db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'key-5'`);
    expect((await send('Corrected', 'key-5')).headers.get('idempotent-replayed')).toBeNull();
    expect(inbox('idem-rcpt@contoso.test', 'Corrected')).toHaveLength(3);

    await ctx.app.database.db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'key-1'`);
    // key-1, and the API key's key-5 row expired above (the owner's key-5 was taken again since).
    expect(await ctx.app.services.idempotency.sweepExpired()).toBe(2);
    const left = await ctx.app.database.db.execute(sql`select count(*)::int as n from idempotency_keys where expires_at <= now()`);
    expect((left as unknown as { rows: { n: number }[] }).rows[0]!.n).toBe(0);
    expect(await send('Once only', 'key-1').then((r) => r.headers.get('idempotent-replayed'))).toBeNull();

    const bad = await send('Whatever', 'spaces are not allowed');
    expect([bad.status, bad.body.error.code]).toEqual([400, 'validation_failed']);
  });

  it('POST /api/campaigns and launch: the same key creates one draft and launches once, even at once', async () => {
    const contacts = await fixtures.audience(2);
    const body = { name: 'Idem', kind: 'transactional', mailboxId, subject: 'Idem campaign', text: 'Hi {{firstName}}', contactIds: contacts.map((c) => c.id) };
    const headers = { 'idempotency-key': 'campaign-1' };
    const [c1, c2] = await Promise.all([
      ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: body, headers }),
      ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: body, headers }),
    ]);
    // Creating a draft is quick: the second either meets the first in progress or gets its answer.
    const created = c1.status === 201 ? c1 : c2;
    for (const c of [c1, c2]) {
      if (c.status === 201) expect(c.body.id).toBe(created.body.id);
      else expect([c.status, c.body.error.code]).toEqual([409, 'idempotency_in_progress']);
    }
    expect((await ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: body, headers })).body.id).toBe(created.body.id);
    const all = await ctx.app.api('GET', '/api/campaigns', { token: ctx.owner.token });
    expect(all.body.campaigns.filter((c: { name: string }) => c.name === 'Idem')).toHaveLength(1);

    const launch = () => ctx.app.api('POST', `/api/campaigns/${created.body.id}/launch`, { token: ctx.owner.token, json: {}, headers: { 'idempotency-key': 'launch-1' } });
    const [l1, l2] = await Promise.all([launch(), launch()]);
    expect([l1.status, l2.status]).toContain(200);
    for (const l of [l1, l2]) if (l.status !== 200) expect(l.body.error.code).toBe('idempotency_in_progress');
    const replay = await launch();
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([200, 'true']);
    await fixtures.drain(created.body.id);
    for (const c of contacts) expect(fixtures.sentTo(SENDER, 'Idem campaign').get(c.email)).toBe(1);
  });
  it('a send whose outcome cannot be stored after Gmail took it: 202 pending, a retry with the key replays it and never sends again; recovery records it sent', async () => {
    const SEARCHABLE = 'idem-searchable@acme.test';
    const box = (await connectedMailbox(ctx.app, ctx.owner.token, SEARCHABLE, { sync: true })).id;
    const to = 'idem-late@contoso.test';
    ctx.app.sandbox.control.createMailbox({ email: to });
    const post = () => ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: box, to, subject: 'Stored late', text: 'hi' }, headers: { 'idempotency-key': 'key-late' } });
    const db = ctx.app.database.db;
    // A real failure of our own storage, right after Gmail accepted the mail: recording "sent" fails.
    await db.execute(sql`create function idem_test_refuse_sent() returns trigger language plpgsql as $$ begin raise exception 'storage unavailable'; end $$`);
    await db.execute(sql`create trigger idem_test_refuse_sent before update on messages for each row when (new.status = 'sent' and new.subject = 'Stored late') execute function idem_test_refuse_sent()`);
    let first: Awaited<ReturnType<typeof post>>;
    try {
      first = await post();
      expect([first.status, first.body.status]).toEqual([202, 'pending']);
      const again = await post();
      expect([again.status, again.body.id, again.headers.get('idempotent-replayed')]).toEqual([202, first.body.id, 'true']);
      expect(inbox(to, 'Stored late')).toHaveLength(1);
    } finally {
      await db.execute(sql`drop trigger idem_test_refuse_sent on messages`);
      await db.execute(sql`drop function idem_test_refuse_sent()`);
    }
    // Its lease ends; recovery finds it in the mailbox by its Message-ID.
    for (let pass = 0; pass < 3; pass++) {
      await db.execute(sql`update messages set lease_expires_at = now() - interval '1 second' where id = ${first.body.id} and status = 'sending'`);
      await ctx.app.services.messages.recoverExpired();
    }
    const shown = await ctx.app.api('GET', `/api/messages/${first.body.id}`, { token: ctx.owner.token });
    expect(shown.body.status).toBe('sent');
    expect(inbox(to, 'Stored late')).toHaveLength(1);
  });

  it('a request that died before claiming its send: 409 while its lease is live; once it is over, a retry takes the key over and the mail goes out once', async () => {
    const db = ctx.app.database.db;
    await leaveKey('key-gone', 'Gone before its claim', { lease: '1 minute' });
    const live = await send('Gone before its claim', 'key-gone');
    expect([live.status, live.body.error.code, live.body.error.details]).toEqual([409, 'idempotency_in_progress', undefined]);

    await db.execute(sql`update idempotency_keys set lease_expires_at = now() - interval '1 second' where key = 'key-gone'`);
    const sendsBefore = ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send;
    const taken = await send('Gone before its claim', 'key-gone');
    expect([taken.status, taken.body.status, taken.headers.get('idempotent-replayed')]).toEqual([201, 'sent', null]);
    const again = await send('Gone before its claim', 'key-gone');
    expect([again.status, again.body.id, again.headers.get('idempotent-replayed')]).toEqual([201, taken.body.id, 'true']);
    expect(inbox('idem-rcpt@contoso.test', 'Gone before its claim')).toHaveLength(1);
    expect(ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send - sendsBefore).toBe(1);
    const [row] = rowsOf<{ state: string; message_id: string; lease_expires_at: unknown }>(
      await db.execute(sql`select state, message_id, lease_expires_at from idempotency_keys where key = 'key-gone'`),
    );
    expect(row).toEqual({ state: 'completed', message_id: taken.body.id, lease_expires_at: null });
  });

  it('no takeover without proof that the request is gone and did nothing: a key without a lease, and the campaign routes, stay 409', async () => {
    // No lease: written before migration 0062, or its send's claim linked a message since deleted (the link ends the lease).
    await leaveKey('key-no-lease', 'No lease');
    const unleased = await send('No lease', 'key-no-lease');
    expect([unleased.status, unleased.body.error.code]).toEqual([409, 'idempotency_in_progress']);
    // A draft may have been created without its key knowing: a retry must not create a second one.
    const draft = { name: 'Crashed draft', kind: 'transactional', mailboxId, subject: 'Crashed', text: 'Hi', contactIds: [] };
    await leaveKey('campaign-gone', '', { route: 'POST /api/campaigns', path: '/api/campaigns', json: draft, lease: '-1 minute' });
    const retry = await ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: draft, headers: { 'idempotency-key': 'campaign-gone' } });
    expect([retry.status, retry.body.error.code]).toEqual([409, 'idempotency_in_progress']);
    expect(inbox('idem-rcpt@contoso.test', 'No lease')).toHaveLength(0);
    const all = await ctx.app.api('GET', '/api/campaigns', { token: ctx.owner.token });
    expect(all.body.campaigns.filter((c: { name: string }) => c.name === 'Crashed draft')).toHaveLength(0);
  });

  it('a request stalled before its claim past its lease: a retry takes the key over and sends; the stalled one then claims nothing (409); one mail', async () => {
    const db = ctx.app.database.db;
    // A mailbox not used yet whose access token is due: the request first waits for a refresh,
    // which the sandbox holds, before the pacer's turn and the claim.
    const box = (await connectedMailbox(ctx.app, ctx.owner.token, 'idem-stalled@acme.test')).id;
    await db.execute(sql`update mailboxes set access_token_expires_at = now() where id = ${box}::uuid`);
    if (!ctx.app.sandbox.control.getMailbox('idem-rcpt@contoso.test')) ctx.app.sandbox.control.createMailbox({ email: 'idem-rcpt@contoso.test' });
    const post = () => ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: box, to: 'idem-rcpt@contoso.test', subject: 'Stalled before its claim', text: 'hi' }, headers: { 'idempotency-key': 'key-stalled' } });
    ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 2_000, endpoint: 'token', mailbox: 'idem-stalled@acme.test', times: 1 });
    const sendsBefore = ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send;
    const stalled = post();
    const leased = sql`select 1 from idempotency_keys where key = 'key-stalled' and lease_expires_at > now()`;
    while (rowsOf(await db.execute(leased)).length === 0) await new Promise((r) => setTimeout(r, 5));
    const live = await post();
    expect([live.status, live.body.error?.code]).toEqual([409, 'idempotency_in_progress']);

    // Its renewals stop for longer than the lease (a stall, the database out of reach): the lease runs out.
    await db.execute(sql`update idempotency_keys set lease_expires_at = now() - interval '1 second' where key = 'key-stalled'`);
    const taken = await post();
    expect([taken.status, taken.headers.get('idempotent-replayed')]).toEqual([201, null]);
    const late = await stalled;
    expect([late.status, late.body.error?.code]).toEqual([409, 'idempotency_in_progress']);
    const replay = await post();
    expect([replay.status, replay.body.id, replay.headers.get('idempotent-replayed')]).toEqual([201, taken.body.id, 'true']);
    expect(inbox('idem-rcpt@contoso.test', 'Stalled before its claim')).toHaveLength(1);
    expect(ctx.app.sandbox.control.callCounts({ successfulOnly: true }).send - sendsBefore).toBe(1);
  });

  it('two retries finding the lease over: exactly one takes the key; the gone claim then locks, renews and finishes nothing', async () => {
    let clock = Date.now();
    const repo = createIdempotencyRepo(ctx.app.database.db);
    const service = createIdempotencyService({ repo, now: () => new Date((clock += 1000)), leaseMs: 60_000 });
    const scope = { workspaceId: ctx.owner.workspaceId, caller: `user:${ctx.owner.userId}`, route: 'POST /api/messages', key: 'key-takeover-race' };
    const resume = async () => undefined;
    const gone = await service.begin(scope, 'hash', resume);
    if (gone.kind !== 'first') throw new Error('expected the first claim');
    clock += 120_000;
    const retries = await Promise.allSettled([service.begin(scope, 'hash', resume), service.begin(scope, 'hash', resume)]);
    const taken = retries.flatMap((r) => (r.status === 'fulfilled' && r.value.kind === 'first' ? [r.value] : []));
    expect(taken).toHaveLength(1);
    expect(retries.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'idempotency_in_progress' } });

    const goneClaim = { scope, claimedAt: gone.claimedAt };
    expect(await repo.lockClaim(goneClaim)).toBe(false);
    expect(await repo.renewLease(goneClaim, new Date(clock + 60_000))).toBe(false);
    await service.finish(scope, gone.claimedAt, 422, null);
    expect(await repo.find(scope)).toMatchObject({ state: 'in_progress', createdAt: taken[0]!.claimedAt });
    expect(await repo.lockClaim({ scope, claimedAt: taken[0]!.claimedAt })).toBe(true);
    await service.finish(scope, taken[0]!.claimedAt, 201, { id: 'taken' });
    expect(await repo.find(scope)).toMatchObject({ state: 'completed', responseStatus: 201, leaseExpiresAt: null });
  });
});
