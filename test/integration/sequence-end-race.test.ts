import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { seededRandom, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox, recipientAnswers } from '../helpers/gmail.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { sequenceEndChecks } from '../helpers/sequence-end.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Every way a sequence ends, at once, on the server (PGlite runs one statement at a time:
 * nothing interleaves there). Each round launches two 2-step campaigns (marketing and
 * transactional, follow-ups due at once) to the same new people; a worker sends them in rounds of
 * four while, for each person, one of these lands at a seeded moment: a one-click opt-out, an
 * entry added through the API, a consent withdrawn through the API or by a CSV import, a hard or
 * a soft bounce notice (two soft ones reach BOUNCE_SOFT_LIMIT), a reply — the notices of a pass
 * delivered in a shuffled order, then synced — and, in some rounds, a cancel of one campaign and
 * a 429 from Gmail (requeue). Checked: no request answered 5xx; no send claimed after what stops
 * it committed (the stop's answer came back); no campaign completed while sends were queued or in
 * flight; every campaign completed or cancelled once nothing is left (none `sending`); the
 * counters equal a recount of the ledger; no deadlock the server detected. Lock order under test:
 * address locks, then ledger rows, then the campaign row. It found two stops ending a campaign's
 * last two sequences at once leaving it `sending` (sequence-end-last-two.test.ts).
 *
 * Steady by design: a fixed seed and round count, and the 429's pause ends by itself — Retry-After
 * 1 s is longer than the pacer's longest in-process wait here (maxDelayMs, the harness's pacer
 * option), so the send is requeued due in 1 s and the mailbox waits 1 s. Lifting the pause with
 * `pacer.forget` instead counted the daily budget again, which waited until the last grant was
 * budgetClaimGraceMs old (then 10 s in the test app too): the ~10 s stalls that kept an earlier
 * version out of CI.
 */
const SEED = 0x5e9e4d;
const ROUNDS = 24;
const PEOPLE = 4;
const ROUND_DEADLINE_MS = 20_000;

const ctx = useAppWithOwner({ env: { BOUNCE_SOFT_LIMIT: '2' }, pacer: { maxDelayMs: 250 } });
const { fx, query, copiesReceived, deadlocks } = sequenceEndChecks(ctx);
const SENDER = `sequence-end-race-${Date.now()}@acme.test`;
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
let mailbox: { id: string; email: string };

type Person = { id: string; email: string };
type Action = 'none' | 'oneClick' | 'apiEntry' | 'consentApi' | 'consentCsv' | 'hard' | 'soft' | 'reply';
const ACTIONS: Action[] = ['none', 'oneClick', 'apiEntry', 'consentApi', 'consentCsv', 'hard', 'soft', 'reply'];
/** Needs a message of the campaign in a mailbox first (a notice about it, an answer to it). */
const AFTER_MAIL: Action[] = ['hard', 'soft', 'reply'];

/** What a stop ends: these campaigns' sends to `email` (all steps, or the later ones), none claimed after `at`. */
interface Stop {
  what: string;
  email: string | null;
  campaignIds: string[];
  laterStepsOnly: boolean;
  at: number;
}

beforeAll(async () => {
  if (!process.env.TEST_DATABASE_URL) return;
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  expect((await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } })).status).toBe(200);
  await sync();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sync until a pass completes (a 429's pause fails the passes meanwhile). syncMailbox never rejects. */
async function sync() {
  for (let i = 0; i < 100; i += 1) {
    if ((await ctx.app.services.sync.syncMailbox(mailbox.id)).status === 'synced') return;
    await sleep(50);
  }
  throw new Error('sync never completed');
}

const failures: string[] = [];
/** Every answer of the app: a 5xx (or an unexpected status) is a failure of the round. */
async function call(round: number, what: string, expected: number[], method: string, path: string, options: Parameters<typeof ctx.app.api>[2] = {}) {
  const res = await ctx.app.api(method, path, { token: ctx.owner.token, ...options });
  if (!expected.includes(res.status)) failures.push(`round ${round}: ${what} answered ${res.status}: ${res.text.slice(0, 300)}`);
  return res;
}

async function launch(round: number, subject: string, people: Person[], kind: 'marketing' | 'transactional') {
  const created = await call(round, 'create', [201], 'POST', '/api/campaigns', {
    json: { name: subject, kind, mailboxId: mailbox.id, subject, text: 'Hello', contactIds: people.map((p) => p.id), steps: [{ afterDays: 0, text: 'Just following up' }] },
  });
  await call(round, 'launch', [200], 'POST', `/api/campaigns/${created.body.id}/launch`, { json: {} });
  return created.body.id as string;
}

async function unsubscribePath(campaignId: string, email: string) {
  const [send] = await query<{ recipient_id: string }>(sql`select recipient_id from campaign_sends where campaign_id = ${campaignId}::uuid and email = ${email} limit 1`);
  return createTrackingUrls(createTokenCodec(ctx.app.config.trackingSecrets), '').unsubscribe(send!.recipient_id, campaignId);
}

/** The campaigns' sends that are queued or in flight. */
const open = async (ids: string[]) =>
  (await query<{ n: number }>(sql`select count(*)::int as n from campaign_sends where campaign_id in (${sql.join(ids.map((id) => sql`${id}::uuid`), sql`, `)}) and status in ('queued', 'sending')`))[0]!.n;

/** Campaigns `completed` with a send queued or in flight, read in one snapshot. */
const completedTooSoon = (ids: string[]) =>
  query<{ id: string }>(sql`select c.id from campaigns c where c.id in (${sql.join(ids.map((id) => sql`${id}::uuid`), sql`, `)}) and c.status = 'completed'
    and exists (select 1 from campaign_sends s where s.campaign_id = c.id and s.status in ('queued', 'sending'))`);

async function playRound(round: number, random: () => number) {
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
  const stamp = `[r${round}-${Date.now().toString(36)}]`;
  const people = await fx.audience(PEOPLE, { prefix: `race${round}-` });
  const marketing = await launch(round, `Race news ${stamp}`, people, 'marketing');
  const transactional = await launch(round, `Race receipt ${stamp}`, people, 'transactional');
  const campaigns = [marketing, transactional];
  const subjectOf = new Map([[marketing, `Race news ${stamp}`], [transactional, `Race receipt ${stamp}`]]);
  // Drawn up front, so that a seed names the same plan however the round's timing falls.
  const plan = new Map(people.map((p) => [p.email, { person: p, action: pick(ACTIONS), afterMail: random() < 0.6, campaignId: pick(campaigns), order: random() }]));
  const cancel = random() < 0.2 ? { campaignId: pick(campaigns), afterCopies: Math.floor(random() * PEOPLE * 2) } : null;
  const rateLimitAfter = random() < 0.35 ? Math.floor(random() * PEOPLE * 3) : null;
  const jitter = seededRandom(SEED + round);
  let rateLimited = false;
  const stops: Stop[] = [];
  const mailed = (p: Person, campaignId: string) => copiesReceived(p, subjectOf.get(campaignId)!) > 0;
  const copies = () => people.reduce((n, p) => n + campaigns.reduce((m, c) => m + copiesReceived(p, subjectOf.get(c)!), 0), 0);

  let sending = true;
  const worker = separateWorker(ctx.app, { concurrency: 4 });
  const sends = (async () => {
    try {
      const until = Date.now() + ROUND_DEADLINE_MS;
      for (;;) {
        const ticked = await worker.tick();
        // As jobs.ts does every second: a cancel skips what is queued when it commits; a follow-up a
        // sent record writes after that (its step 0 in flight during the cancel) is the sweep's.
        await ctx.app.services.cancelledSends.sweep();
        for (const row of await completedTooSoon(campaigns)) failures.push(`round ${round}: campaign ${row.id} completed with sends queued or in flight`);
        if ((await open(campaigns)) === 0) return;
        if (Date.now() > until) {
          const left = await query(sql`select campaign_id, email, step, status::text, skip_reason, error_code, due_at, claimed_at, attempts, lease_expires_at from campaign_sends where campaign_id in (${marketing}::uuid, ${transactional}::uuid) and status in ('queued', 'sending')`);
          const cs = await query(sql`select id, kind::text, status::text from campaigns where id in (${marketing}::uuid, ${transactional}::uuid)`);
          throw new Error(`round ${round}: sends still open after ${ROUND_DEADLINE_MS} ms: ${JSON.stringify({ left, cs, marketing, plan: [...plan.values()].map((p) => p.action), cancel, rateLimitAfter, stops })}`);
        }
        if (ticked === 0) await sleep(20);
      }
    } finally {
      sending = false;
    }
  })();

  const beside = async () => {
    for (;;) {
      if (rateLimitAfter !== null && !rateLimited && copies() >= rateLimitAfter) {
        rateLimited = true;
        ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', retryAfterSeconds: 1, endpoint: 'send', mailbox: SENDER, times: 1 });
      }
      const due = [...plan.values()].filter(({ person, action, afterMail }) => action !== 'none' && (AFTER_MAIL.includes(action) || afterMail ? campaigns.some((c) => mailed(person, c)) : true));
      for (const { person } of due) plan.delete(person.email);
      const work: Promise<unknown>[] = [];
      const csv: Person[] = [];
      const notices: { person: Person; campaignId: string; kind: 'hard' | 'soft' | 'reply'; order: number }[] = [];
      for (const { person, action, campaignId, order } of due) {
        const stop = (campaignIds: string[], laterStepsOnly = false) => () => stops.push({ what: action, email: person.email, campaignIds, laterStepsOnly, at: Date.now() });
        if (action === 'oneClick') {
          work.push(unsubscribePath(campaignId, person.email).then((path) =>
            call(round, 'one-click opt-out', [200], 'POST', path, { token: undefined, body: 'List-Unsubscribe=One-Click', headers: FORM }).then(stop(campaigns))));
        } else if (action === 'apiEntry') {
          work.push(call(round, 'API entry', [201], 'POST', '/api/suppressions', { json: { email: person.email, reason: 'manual' } }).then(stop(campaigns)));
        } else if (action === 'consentApi') {
          work.push(call(round, 'consent withdrawal', [201], 'POST', `/api/contacts/${person.id}/consents`, { json: { status: 'opted_out', source: 'phone call' } }).then(stop([marketing])));
        } else if (action === 'consentCsv') {
          csv.push(person);
        } else {
          // Soft: a notice about each message of theirs there is, two reach the limit (suppressed).
          const mailedIn = campaigns.filter((c) => mailed(person, c));
          const one = mailedIn.includes(campaignId) ? campaignId : mailedIn[0]!;
          for (const c of action === 'soft' ? mailedIn : [one]) notices.push({ person, campaignId: c, kind: action as 'hard' | 'soft' | 'reply', order });
        }
      }
      if (csv.length > 0) {
        const file = ['email,consent,consent_source', ...csv.map((p) => `${p.email},opted_out,crm sync`)].join('\n');
        work.push(call(round, 'CSV import', [200], 'POST', '/api/contacts/import', { body: file, headers: { 'content-type': 'text/csv' } }).then(() => {
          for (const p of csv) stops.push({ what: 'consentCsv', email: p.email, campaignIds: [marketing], laterStepsOnly: false, at: Date.now() });
        }));
      }
      if (notices.length > 0) {
        work.push((async () => {
          for (const n of notices.sort((a, b) => a.order - b.order)) {
            const subject = subjectOf.get(n.campaignId)!;
            if (n.kind === 'reply') await recipientAnswers(ctx.app, SENDER, n.person.email, subject);
            else {
              const original = ctx.app.sandbox.control.listMessages(SENDER, { labelId: 'SENT' }).find((m) => m.subject.includes(subject) && m.to.includes(n.person.email))!;
              await ctx.app.sandbox.control.deliverBounce(SENDER, { originalId: original.id, kind: n.kind, form: 'report' });
            }
          }
          await sync();
          const at = Date.now();
          for (const n of notices) {
            const hard = n.kind === 'hard' || (n.kind === 'soft' && notices.filter((m) => m.person === n.person).length >= 2);
            stops.push({ what: n.kind, email: n.person.email, campaignIds: hard ? campaigns : [n.campaignId], laterStepsOnly: !hard, at });
          }
        })());
      }
      if (cancel && copies() >= cancel.afterCopies && !stops.some((s) => s.what === 'cancel')) {
        stops.push({ what: 'cancel', email: null, campaignIds: [cancel.campaignId], laterStepsOnly: false, at: Number.POSITIVE_INFINITY });
        work.push(call(round, 'cancel', [200, 409], 'POST', `/api/campaigns/${cancel.campaignId}/cancel`).then(() => {
          stops.find((s) => s.what === 'cancel')!.at = Date.now();
        }));
      }
      await Promise.all(work);
      if (plan.size === 0 && (!cancel || stops.some((s) => s.what === 'cancel'))) return;
      if (!sending) return;
      await sleep(Math.floor(jitter() * 15));
    }
  };

  await Promise.all([sends, beside()]);
  // What the last pass recorded after the worker stopped: one more sync, then whatever is left.
  await sync();
  const settle = separateWorker(ctx.app, { concurrency: 4 });
  for (let i = 0; i < 100 && (await open(campaigns)) > 0; i += 1) {
    await ctx.app.services.cancelledSends.sweep();
    if ((await settle.tick()) === 0) await sleep(50);
  }
  ctx.app.sandbox.control.clearFaults();

  const rows = await query<{ campaign_id: string; email: string; step: number; status: string; skip_reason: string | null; claimed_at: string | Date | null }>(
    sql`select campaign_id, email, step, status::text as status, skip_reason, claimed_at from campaign_sends
      where campaign_id in (${marketing}::uuid, ${transactional}::uuid)`,
  );
  for (const stop of stops) {
    for (const row of rows) {
      if (!stop.campaignIds.includes(row.campaign_id) || (stop.email !== null && row.email !== stop.email) || (stop.laterStepsOnly && row.step === 0)) continue;
      if (row.claimed_at && new Date(row.claimed_at).getTime() > stop.at) {
        failures.push(`round ${round}: ${row.email} step ${row.step} claimed at ${new Date(row.claimed_at).toISOString()}, after the ${stop.what} committed (${new Date(stop.at).toISOString()})`);
      }
    }
  }
  for (const row of rows) if (row.status === 'queued' || row.status === 'sending') failures.push(`round ${round}: ${row.email} step ${row.step} still ${row.status}`);
  for (const id of campaigns) {
    const [c] = await query<{ status: string }>(sql`select status::text as status from campaigns where id = ${id}::uuid`);
    if (c!.status !== 'completed' && c!.status !== 'cancelled') {
      const ledger = rows.filter((r) => r.campaign_id === id).map((r) => `${r.email.slice(0, 12)} ${r.step} ${r.status} ${r.skip_reason ?? ''} ${r.claimed_at ? new Date(r.claimed_at).toISOString() : ''}`);
      failures.push(`round ${round}: campaign ${id === marketing ? 'marketing' : 'transactional'} is ${c!.status} with nothing left to send; ${JSON.stringify({ ledger, stops: stops.map((s) => ({ ...s, at: new Date(s.at).toISOString(), campaignIds: s.campaignIds.map((x) => (x === marketing ? 'm' : 't')) })) })}`);
    }
  }
  for (const m of await sendCountMismatches(ctx.app.database.db)) failures.push(`round ${round}: counters off ${JSON.stringify(m)}`);
}

it.runIf(process.env.TEST_DATABASE_URL)(`every way a sequence ends, racing a worker, Gmail 429s and each other: ${ROUNDS} seeded rounds (server)`, async () => {
  const random = seededRandom(SEED);
  const before = await deadlocks();
  for (let round = 0; round < ROUNDS; round += 1) {
    await playRound(round, random);
    expect(failures, `seed ${SEED}`).toEqual([]);
  }
  await sleep(1_500); // backends flush their statistics at most once a second
  expect(await deadlocks(), 'deadlocks the server detected').toBe(before);
}, 120_000);
