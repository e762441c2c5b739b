import { sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, recipientAnswers } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A reply that sync commits while a step's sent record is being written (markSentMany: the
 * record and the next step's row in one statement). The statement reads the out-of-office hold
 * from its snapshot (auto-reply-hold-sql.ts); an out-of-office committed after that snapshot and
 * before the new row committed was seen by neither side — deferFollowUps could not see the row,
 * the record had not seen the reply — and the follow-up was queued `afterDays` after the send,
 * not 3 days after the out-of-office. Now both take the recipient's address lock first
 * (holdOrderLock): the later one sees the earlier. A person's reply takes it too: its sync skips
 * the recipient's queued follow-ups at once, so it must see the one the record queues (the second
 * case; the gate would still skip it at its claim, but days later, the campaign `sending` till then).
 *
 * Made deterministic with a second session: it holds the send's ledger row, so the record's
 * statement, its snapshot taken, waits inside it; sync records the reply meanwhile; then the row
 * is let go. Server only: PGlite runs every statement and every transaction alone on its one
 * connection, so a record cannot interleave with sync's transaction there — the race does not
 * exist on it (and markSentMany takes no lock there).
 */
const ctx = useAppWithOwner({ env: { AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: '3' } });
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = `record-race-${Date.now()}@acme.test`;
const DAY = 86_400_000;
let mailbox: { id: string; email: string };

/** The test's own database on the server (cloned for this file). */
const databaseUrl = () => (ctx.app.database as unknown as { url: string }).url;
const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(s)) as unknown as { rows: T[] }).rows;

beforeAll(async () => {
  if (!process.env.TEST_DATABASE_URL) return;
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.services.sync.syncMailbox(mailbox.id);
});

/** A launched transactional campaign to one new contact: step 0, then one follow-up a day later. */
async function launchOneFollowUp(subject: string) {
  const [person] = await fx.audience(1, { prefix: 'rr' });
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id], { kind: 'transactional', steps: [{ afterDays: 1, text: 'Just following up' }] });
  return { campaignId, person: person! };
}

/** The recipient answers step 0 (a person, or an out-of-office) in the sender's mailbox. */
const answerArrives = (person: { email: string }, subject: string, automatic: boolean) => recipientAnswers(ctx.app, SENDER, person.email, subject, automatic);

/** Polls a question of the server (another session's view) until it says yes. */
async function until(client: pg.Client, question: string, params: unknown[], what: string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if ((await client.query(question, params)).rows[0]?.yes === true) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Step 0 goes out; between Gmail's accept and its sent record another session takes the send's
 * ledger row, so the record's statement starts and waits in it. Then sync records the recipient's
 * answer, and once it has committed (or waits for the record: the fix) the row is let go.
 */
async function answerDuringSentRecord(subject: string, automatic: boolean) {
  const { campaignId, person } = await launchOneFollowUp(subject);
  const other = new pg.Client({ connectionString: databaseUrl() });
  await other.connect();
  let race: Promise<void> | undefined;
  try {
    const worker = separateWorker(ctx.app, {
      concurrency: 1,
      afterGmailAccepted: async (sendId) => {
        await other.query('begin');
        await other.query('select 1 from campaign_sends where id = $1 for update', [sendId]);
        race = (async () => {
          const waiting = `select exists (select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and wait_event = $1) as yes`;
          const observer = new pg.Client({ connectionString: databaseUrl() });
          await observer.connect();
          let synced: Promise<unknown> = Promise.resolve();
          try {
            // The record's statement has its snapshot and waits for the row.
            await until(observer, waiting, ['transactionid'], 'the sent record waits for the send’s row');
            await answerArrives(person, subject, automatic);
            synced = ctx.app.services.sync.syncMailbox(mailbox.id);
            // Committed — or, under the fix, waiting for the record's address lock.
            await until(
              observer,
              `select exists (select 1 from mail_events where recipient = $1 and type = $2) or exists (select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory') as yes`,
              [person.email, automatic ? 'auto_reply' : 'reply'],
              'sync recorded the answer',
            );
          } finally {
            // The row is let go whatever happened, so the record (and the tick) can end.
            await other.query('commit');
            await observer.end();
          }
          await synced;
        })();
      },
    });
    await worker.tick();
    await race;
  } finally {
    await other.end();
  }
  const [event] = await query<{ at: Date }>(sql`select at from mail_events where recipient = ${person.email} and type = ${automatic ? 'auto_reply' : 'reply'}`);
  expect(event, 'sync recorded the answer').toBeDefined();
  const [followUp] = await query<{ status: string; due_at: Date; skip_reason: string | null }>(
    sql`select status::text as status, due_at, skip_reason from campaign_sends where campaign_id = ${campaignId}::uuid and step = 1`,
  );
  expect(followUp, 'step 0 recorded sent and its follow-up queued').toBeDefined();
  return { campaignId, person, answeredAt: new Date(event!.at), followUp: followUp! };
}

const copiesReceived = (person: { email: string }, subject: string) => ctx.app.sandbox.control.listMessages(person.email).filter((m) => m.subject.includes(subject)).length;

it.runIf(process.env.TEST_DATABASE_URL)('an out-of-office committed while its step’s sent record is written holds the follow-up until 3 days after it', async () => {
  const subject = `OOO record race ${Date.now()}`;
  const { person, answeredAt, followUp } = await answerDuringSentRecord(subject, true);
  expect(followUp.status).toBe('queued');
  // Before: due a day after the send (the record saw no out-of-office, the deferral no row).
  expect(new Date(followUp.due_at).getTime(), 'due no earlier than the out-of-office + 3 days').toBeGreaterThanOrEqual(answeredAt.getTime() + 3 * DAY);
  expect(copiesReceived(person, subject)).toBe(1);
}, 60_000);

it.runIf(process.env.TEST_DATABASE_URL)('a person’s reply committed while its step’s sent record is written: the follow-up queued beside it is skipped at once, and never goes out', async () => {
  const subject = `Reply record race ${Date.now()}`;
  const { campaignId, person, followUp } = await answerDuringSentRecord(subject, false);
  // Sync waited for the record's address lock, then found the follow-up it queued and skipped it
  // (follow-ups.repo.ts skipFollowUps), completing the campaign in its transaction —
  // before, it stayed queued a day and the campaign `sending` until the gate skipped it.
  expect(followUp).toMatchObject({ status: 'skipped', skip_reason: 'replied' });
  expect((await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).body.status).toBe('completed');
  // The follow-up's day comes: nothing goes out.
  const later = new Date(Date.now() + DAY + 60_000);
  await separateWorker(ctx.app, { concurrency: 1, now: () => later }).tick();
  expect(copiesReceived(person, subject), 'the recipient holds step 0 only').toBe(1);
}, 60_000);
