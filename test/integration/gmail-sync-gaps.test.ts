import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { ALICE, BOB, useSyncApp } from '../helpers/gmail-sync.js';
import { WebClient } from '../helpers/web-client.js';

/*
 * Sync never loses mail silently: when Gmail no longer has the mailbox's history, the resync
 * reads everything since the last sync (not a first sync's newest 500), and what it cannot
 * read is said; a message the database refuses (a stranger's crafted header) is skipped and
 * counted, never a wall that every later sync stops at. One app, tests in order.
 */

const RESYNC_MAX = 520;
const ctx = useSyncApp({ env: { GMAIL_RESYNC_MAX_MESSAGES: String(RESYNC_MAX) } });
const { sync, query, syncedRows, mailboxView } = ctx;
const deliverFromBob = async (count: number, label: string) => {
  for (let i = 0; i < count; i += 1) await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: `${label} ${i}`, text: 'x' });
};

describe('a lost history id', () => {
  it('the resync reads every message since the last sync, more than a first sync reads', async () => {
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'full', resynced: false });
    const before = (await syncedRows(ctx.alice.id)).length;
    await deliverFromBob(510, 'while away');
    // Gmail forgets history older than now: the stored id gets a 404.
    ctx.app.sandbox.control.truncateHistory(ALICE);
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'full', resynced: true, kept: 510 });
    const rows = await syncedRows(ctx.alice.id);
    expect(rows.length).toBe(before + 510);
    expect(new Set(rows.map((r) => r.subject))).toContain('while away 0');
    const view = await mailboxView(ctx.alice.id);
    expect(view.sync.lastError).toBeNull();
    expect(view.sync.health.resyncGaps).toBe(0);
    expect(view.sync.lastGap).toBeNull();
  });

  it('more mail since the last sync than GMAIL_RESYNC_MAX_MESSAGES: the newest are read, and the gap is shown, not silent', async () => {
    const before = (await syncedRows(ctx.alice.id)).length;
    await deliverFromBob(30, 'older');
    await deliverFromBob(500, 'newer');
    ctx.app.sandbox.control.truncateHistory(ALICE);
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    // Newest first, RESYNC_MAX of them: the 500 newer and the 20 newest older ones.
    const subjects = (await syncedRows(ctx.alice.id)).map((r) => r.subject ?? '');
    expect(subjects.length).toBe(before + RESYNC_MAX);
    expect(subjects.filter((s) => s.startsWith('newer ')).length).toBe(500);
    expect(subjects.filter((s) => s.startsWith('older ')).length).toBe(20);
    expect(subjects).not.toContain('older 0');
    const view = await mailboxView(ctx.alice.id);
    expect(view.sync.lastError).toMatch(/^gap: more than 520 messages arrived since the last sync on \d{4}-\d{2}-\d{2}/);
    expect(view.sync.health.resyncGaps).toBe(1);
    expect(view.sync.lastGap).toEqual({ at: expect.any(String), since: expect.any(String), read: RESYNC_MAX });
    // From the last sync, a day earlier for clocks, to now.
    expect(Date.parse(view.sync.lastGap.since)).toBeLessThan(Date.parse(view.sync.lastGap.at) - 23 * 3600_000);
    expect(ctx.app.logs.join('')).toContain('more mail since the last sync than a resync reads');
  });

  it('the next sync clears the pass error, but the gap stays shown: that mail stays unread', async () => {
    const gap = (await mailboxView(ctx.alice.id)).sync.lastGap;
    await deliverFromBob(1, 'after the gap');
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', kept: 1 });
    const view = await mailboxView(ctx.alice.id);
    expect(view.sync.lastError).toBeNull();
    expect(view.sync.lastGap).toEqual(gap);
    const browser = new WebClient(ctx.app);
    await browser.get('/signin');
    expect((await browser.post('/signin', { email: ctx.owner.email, password: ctx.owner.password })).status).toBe(303);
    const page = await browser.get('/app/mailboxes');
    expect(page.text).toContain(`Not read: mail between ${gap.since.replace('T', ' ').slice(0, 16)} UTC`);
  });
});

describe('a message the database cannot store', () => {
  it("a stranger's crafted headers (a NUL in the subject, an over-long Message-ID) are stored cleaned, and the mail after them is read", async () => {
    const longId = `${'x'.repeat(3000)}@evil.test`;
    const c = ctx.app.sandbox.control;
    // =?UTF-8?B?aGkAdGhlcmU=?= decodes to "hi\0there".
    await c.deliverInbound(ALICE, { raw: `From: stranger@evil.test\r\nTo: ${ALICE}\r\nCc: ${BOB}\r\nSubject: =?UTF-8?B?aGkAdGhlcmU=?=\r\nMessage-ID: <nul@evil.test>\r\n\r\nx\r\n` });
    await c.deliverInbound(ALICE, { raw: `From: stranger@evil.test\r\nTo: ${ALICE}\r\nCc: ${BOB}\r\nSubject: long id\r\nMessage-ID: <${longId}>\r\n\r\nx\r\n` });
    await c.deliverInbound(ALICE, { from: BOB, subject: 'after the crafted ones', text: 'x' });
    const historyId = async () => (await query<{ history_id: string }>(sql`select history_id from mailboxes where id = ${ctx.alice.id}::uuid`))[0]!.history_id;
    const before = await historyId();
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', kept: 3 });
    const rows = await query<{ subject: string; rfc822_message_id: string | null }>(
      sql`select subject, rfc822_message_id from messages where mailbox_id = ${ctx.alice.id}::uuid and subject in ('hithere', 'long id', 'after the crafted ones') order by subject`,
    );
    expect(rows).toEqual([
      { subject: 'after the crafted ones', rfc822_message_id: expect.any(String) },
      { subject: 'hithere', rfc822_message_id: 'nul@evil.test' },
      { subject: 'long id', rfc822_message_id: null },
    ]);
    expect(BigInt(await historyId())).toBeGreaterThan(BigInt(before));
  });

  it('a message the database still refuses is skipped and counted (unstorable): the history id moves on and the mail after it is read', async () => {
    const db = ctx.app.database.db;
    // The database refusing one message's text, as it would text no cleaning foresaw (22P05: a
    // character it cannot hold); any other data error is a bug of ours and fails the pass (below).
    await db.execute(sql`create function refuse_poison_pill() returns trigger language plpgsql as $$
      begin
        if new.subject = 'poison pill' then raise exception 'refused' using errcode = '22P05'; end if;
        if new.subject = 'our bug' then raise exception 'refused' using errcode = '22P02'; end if;
        return new;
      end $$`);
    await db.execute(sql`create trigger refuse_poison_pill before insert on messages for each row execute function refuse_poison_pill()`);
    try {
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'poison pill', text: 'x' });
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'after the pill', text: 'x' });
      const skippedBefore = (await mailboxView(ctx.alice.id)).sync.health.skipped.unstorable;
      expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', examined: 2, kept: 1 });
      const subjects = (await syncedRows(ctx.alice.id)).map((r) => r.subject);
      expect(subjects).toContain('after the pill');
      expect(subjects).not.toContain('poison pill');
      const view = await mailboxView(ctx.alice.id);
      expect(view.sync.health.skipped.unstorable).toBe(skippedBefore + 1);
      expect(view.sync.lastError).toBeNull();
      // The next sync does not stop at it again.
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'later still', text: 'x' });
      expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental', examined: 1, kept: 1 });
      const logs = ctx.app.logs.join('');
      expect(logs).toContain('counted as unstorable');
      expect(logs).not.toContain('poison pill');

      // A data error that is not about the text (an invalid uuid: our bug) is never skipped: the pass fails, the history id stays.
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'our bug', text: 'x' });
      expect(await sync(ctx.alice.id)).toMatchObject({ status: 'failed', kind: 'internal' });
      expect((await mailboxView(ctx.alice.id)).sync.health.skipped.unstorable).toBe(skippedBefore + 1);
      await db.execute(sql`drop trigger refuse_poison_pill on messages`);
      expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', kept: 1 });
      expect((await syncedRows(ctx.alice.id)).map((r) => r.subject)).toContain('our bug');
    } finally {
      await db.execute(sql`drop trigger if exists refuse_poison_pill on messages`);
      await db.execute(sql`drop function refuse_poison_pill()`);
    }
  });
});
