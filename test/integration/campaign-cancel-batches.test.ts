import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthContext } from '../../src/auth/auth.service.js';
import { createCampaignsRepo, type CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createCampaignsService } from '../../src/campaigns/campaigns.service.js';
import { createCancelledSends } from '../../src/campaigns/cancelled-sends.js';
import { createCancelledSendsRepo, type CancelledSendsRepo } from '../../src/campaigns/cancelled-sends.repo.js';
import { recountSendsFromLedger } from '../../src/campaigns/send-counts.repo.js';
import { createSendLedgerRepo, type SendCandidate } from '../../src/campaigns/send-ledger.repo.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { startJobs } from '../../src/jobs.js';
import { createLogger } from '../../src/logger.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { explainBuilt } from '../helpers/explain.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * Issue #14: a cancel moves the campaign's state in its transaction and skips the queued sends
 * after it in short batches (cancelled-sends.ts) — the first before it answers, the rest, and a
 * cancel cut short, by the worker's sweep. Meanwhile the gate claims nothing of the campaign.
 * Batches of 50 here (2,000 in the app), over PGlite or the server (TEST_DATABASE_URL).
 */

const DAY = 86_400_000;
const BATCH = 50;
const start = Date.now();
let clock = start;
let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let auth: AuthContext;
let mailbox: { id: string; email: string };
const db = () => app.database.db;
const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
  owner = await signUp(app);
  auth = { userId: owner.userId, workspaceId: owner.workspaceId, role: 'owner' };
  mailbox = await connectedMailbox(app, owner.token, `cancel-sender-${Date.now()}@acme.test`, { sync: true });
  await app.api('PATCH', '/api/workspace', { token: owner.token, json: { postalAddress: '1 Main St' } });
});
afterAll(async () => {
  await app?.close();
});

/** The app's campaigns service with batches of 50 and this inline budget; `batches` records each batch's count. */
function serviceWithSmallBatches(inlineMs: number) {
  const repo = createCancelledSendsRepo(db());
  const batches: number[] = [];
  const counted: CancelledSendsRepo = { ...repo, skipBatch: async (id, limit) => { const n = await repo.skipBatch(id, limit); batches.push(n); return n; } };
  const service = createCampaignsService({
    repo: createCampaignsRepo(db()),
    contacts: app.services.contacts,
    mailboxRepo: createMailboxesRepo(db()),
    mailboxes: app.services.mailboxes,
    pacer: app.services.pacer,
    cancelledSends: createCancelledSends({ repo: counted, logger: createLogger('silent'), batchRows: BATCH, inlineMs }),
    publicBaseUrl: app.config.publicBaseUrl,
    logger: createLogger('silent'),
    purgeAfterDays: app.config.privacy.purgeAfterDays,
    now: () => new Date(clock),
  });
  return { service, batches };
}

/** A sending campaign with `n` queued sends, due now (written directly: what a launch writes). */
async function sendingCampaign(n: number, name: string): Promise<string> {
  const [row] = rowsOf<{ id: string }>(
    await db().execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience, mailbox_id, created_by, launched_at)
      values (${owner.workspaceId}::uuid, ${name}, 'transactional', ${name}, 'x', 'sending', '{"contactIds":[]}', ${mailbox.id}::uuid, ${owner.userId}::uuid, now())
      returning id`),
  );
  const tag = `${name.toLowerCase().replace(/\W+/g, '-')}-${Date.now()}`;
  await db().execute(sql`
    with r as (insert into recipients (workspace_id, email) select ${owner.workspaceId}::uuid, ${tag} || '-' || g || '@contoso.test' from generate_series(1, ${n}::int) g returning id, email)
    insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, due_at)
    select ${owner.workspaceId}::uuid, ${row!.id}::uuid, 0, r.id, r.email, gen_random_uuid()::text || '@acme.test', 'queued', now() - interval '1 minute' from r`);
  return row!.id;
}

async function ledgerOf(campaignId: string) {
  const { counts, skippedBecause } = await recountSendsFromLedger(db(), campaignId);
  const [c] = rowsOf<{ status: string; skipping: boolean }>(
    await db().execute(sql`select status::text, skipping_queued_since is not null as skipping from campaigns where id = ${campaignId}::uuid`),
  );
  return { status: c?.status, skipping: c?.skipping, counts, skippedBecause };
}

describe('cancel in batches', () => {
  it('skips more queued sends than one batch, batch by batch, before it answers; none is sent', async () => {
    const campaignId = await sendingCampaign(500, 'Cancel in batches');
    const { service, batches } = serviceWithSmallBatches(60_000);
    const answer = await service.cancel(auth, campaignId);
    expect(answer).toMatchObject({ status: 'cancelled', progress: { queued: 0, sending: 0, sent: 0, skipped: 500, skippedBecause: { cancelled: 500 } } });
    // Ten full batches, then one that found nothing left: no statement touched more than a batch.
    expect(batches).toEqual([...Array(10).fill(BATCH), 0]);
    expect(await ledgerOf(campaignId)).toMatchObject({ status: 'cancelled', skipping: false, counts: { queued: 0, sent: 0, skipped: 500 } });
    expect(await sendCountMismatches(db())).toEqual([]);
    expect(await app.services.sendWorker.runUntilIdle()).toBe(0);
    expect(fixtures.sentTo(mailbox.email, 'Cancel in batches').size).toBe(0);
  });

  it('a cancel cut short after its first batch is finished by the worker\'s sweep', async () => {
    const campaignId = await sendingCampaign(500, 'Cut short');
    // No time for more than the first batch: what a process killed after it leaves behind.
    const { service } = serviceWithSmallBatches(0);
    expect(await service.cancel(auth, campaignId)).toMatchObject({ status: 'cancelled', progress: { queued: 450, skipped: 50 } });
    expect(await ledgerOf(campaignId)).toMatchObject({ skipping: true, counts: { queued: 450, skipped: 50 } });
    expect(await app.services.sendWorker.runUntilIdle()).toBe(0);
    // A stopping process's sweep leaves it to the next one.
    expect(await app.services.cancelledSends.sweep({ stopping: () => true })).toBe(0);
    expect(await ledgerOf(campaignId)).toMatchObject({ skipping: true, counts: { queued: 450 } });

    // A worker process's jobs (jobs.ts): the sweep, every second, in the app's batches of 2,000.
    const jobs = startJobs({ services: app.services, config: app.config, logger: createLogger('silent') });
    try {
      for (let i = 0; i < 100 && (await ledgerOf(campaignId)).skipping; i += 1) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await jobs.stop();
    }
    expect(await ledgerOf(campaignId)).toMatchObject({ status: 'cancelled', skipping: false, counts: { queued: 0, sent: 0, skipped: 500 }, skippedBecause: { cancelled: 500 } });
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('P-13 a running campaign deleted: the sweep skips the rest; the purge removes it whatever state its sends are in', async () => {
    const swept = await sendingCampaign(200, 'Deleted, swept');
    const purged = await sendingCampaign(200, 'Deleted, purged before the sweep');
    const { service } = serviceWithSmallBatches(0);
    await service.remove(auth, swept);
    expect(await ledgerOf(swept)).toMatchObject({ status: 'cancelled', skipping: true, counts: { queued: 150, skipped: 50 } });
    expect(await app.services.cancelledSends.sweep()).toBe(1);
    expect(await ledgerOf(swept)).toMatchObject({ skipping: false, counts: { queued: 0, skipped: 200 } });

    // The other is purged with sends still queued (its sweep has not come yet).
    await service.remove(auth, purged);
    expect(await ledgerOf(purged)).toMatchObject({ status: 'cancelled', skipping: true, counts: { queued: 150, skipped: 50 } });
    clock = start + 31 * DAY;
    try {
      expect((await app.services.purge.runOnce()).campaign).toBe(2);
    } finally {
      clock = start;
    }
    for (const id of [purged, swept]) expect(await ledgerOf(id)).toMatchObject({ status: undefined, counts: { queued: 0, skipped: 0 } });
    // Nothing left for the sweep, and nothing it trips over.
    expect(await app.services.cancelledSends.sweep()).toBe(0);
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('while its sends are still queued, the gate claims none of a cancelled campaign\'s sends', async () => {
    const contacts = await fixtures.audience(4, { prefix: 'cancel-window' });
    const subject = `Cancel window ${Date.now()}`;
    const campaignId = await fixtures.launched(mailbox.id, subject, contacts.map((c) => c.id));
    // The cancel's committed part lands as the first message is accepted; its batches do not run.
    let cancelledAt: string | undefined;
    const worker = separateWorker(app, {
      concurrency: 1,
      batchSize: 10,
      afterGmailAccepted: async (sendId) => {
        if (cancelledAt) return;
        cancelledAt = sendId;
        await createCampaignsRepo(db()).transition(campaignId, ['sending'], { status: 'cancelled', statusReason: 'cancelled_by_user', skippingQueuedSince: new Date(clock) });
      },
    });
    expect(await worker.runUntilIdle()).toBe(1);
    expect(cancelledAt).toBeDefined();
    expect([...fixtures.sentTo(mailbox.email, subject).values()]).toEqual([1]);
    expect(await ledgerOf(campaignId)).toMatchObject({ status: 'cancelled', skipping: true, counts: { queued: 3, sending: 0, sent: 1 } });

    // A worker that reserved the rest before the cancel (reserving does not look at the campaign): the gate halts every one.
    // (After the first worker's reservation of the send it halted on has expired.)
    const ledger = createSendLedgerRepo(db(), { serializedEngine: app.database.kind === 'pglite' });
    const campaign = (await createCampaignsRepo(db()).findById(owner.workspaceId, campaignId)) as CampaignRow;
    const later = new Date(Date.now() + 600_000);
    const reserved = await ledger.reserveDue(campaign, 'late-worker', 10, later, new Date(later.getTime() + 60_000));
    expect(reserved).toHaveLength(3);
    const claim = (now: Date) =>
      ledger.claimMany(
        reserved.map((candidate) => ({
          campaign,
          mailbox,
          candidate,
          owner: 'late-worker',
          messageRowId: randomUUID(),
          subject,
          now,
          leaseUntil: new Date(now.getTime() + 60_000),
        })),
      );
    expect((await claim(later)).map((v) => v.kind)).toEqual(['halted', 'halted', 'halted']);
    const messages = rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from messages where subject = ${subject}`));
    expect(Number(messages[0]!.n)).toBe(1);
    expect(await ledgerOf(campaignId)).toMatchObject({ counts: { queued: 3, sending: 0, sent: 1 } });

    // The sweep skips them, reserved or not; a claim after that finds nothing to claim.
    await app.services.cancelledSends.sweep();
    expect(await ledgerOf(campaignId)).toMatchObject({ status: 'cancelled', skipping: false, counts: { queued: 0, sent: 1, skipped: 3 }, skippedBecause: { cancelled: 3 } });
    expect((await claim(later)).map((v) => v.kind)).toEqual(['lost', 'lost', 'lost']);
    expect([...fixtures.sentTo(mailbox.email, subject).values()]).toEqual([1]);
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('the sweep finds its campaigns by their mark, not by reading every campaign ever cancelled', async () => {
    await db().execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, status, audience)
      select ${owner.workspaceId}::uuid, 'old ' || g, 'marketing', 'x', 'cancelled', '{"contactIds":[]}' from generate_series(1, 3000) g`);
    await db().execute(sql`analyze campaigns`);
    const plan = await explainBuilt(db(), (capture) => createCancelledSendsRepo(capture).pending(1_000));
    expect(plan).not.toMatch(/Seq Scan on campaigns/);
    const pages = [...plan.split(/^Planning/m)[0]!.matchAll(/Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/g)].map(([, hit, read]) => Number(hit ?? 0) + Number(read ?? 0));
    expect(Math.max(0, ...pages), plan).toBeLessThanOrEqual(5);
  });
  it('campaigns waiting only for sends in flight do not hold back a newer cancel; their marks clear once those resolve', async () => {
    // 1,000 cancels whose last send is in flight under a dead worker's lease: a mailbox waiting to
    // be reconnected keeps such a send in flight for as long as it waits (send-recovery.ts).
    await db().execute(sql`
      with c as (
        insert into campaigns (workspace_id, name, kind, subject, text, status, audience, mailbox_id, created_by, launched_at, skipping_queued_since)
        select ${owner.workspaceId}::uuid, 'in flight ' || g, 'transactional', 's', 'x', 'cancelled', '{"contactIds":[]}', ${mailbox.id}::uuid, ${owner.userId}::uuid, now(), now() - interval '1 day'
        from generate_series(1, 1000) g returning id),
      r as (insert into recipients (workspace_id, email) select ${owner.workspaceId}::uuid, 'in-flight-' || c.id || '@contoso.test' from c returning id, email)
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, due_at, attempts, lease_owner, lease_expires_at)
      select ${owner.workspaceId}::uuid, c.id, 0, r.id, r.email, gen_random_uuid()::text || '@acme.test', 'sending', now(), 1, 'dead', now() - interval '1 hour'
      from r join c on r.email = 'in-flight-' || c.id || '@contoso.test'`);
    const campaignId = await sendingCampaign(200, 'Newer cancel');
    await serviceWithSmallBatches(0).service.cancel(auth, campaignId);
    expect((await ledgerOf(campaignId)).counts.queued).toBe(200 - BATCH);

    await app.services.cancelledSends.sweep();
    expect(await ledgerOf(campaignId)).toMatchObject({ skipping: false, counts: { queued: 0, skipped: 200 } });
    const marked = async () =>
      rowsOf<{ n: number }>(await db().execute(sql`select count(*)::int as n from campaigns where name like 'in flight %' and skipping_queued_since is not null`))[0]!.n;
    expect(await marked()).toBe(1000);

    // The sends in flight resolve (here: failed); the next sweep clears their campaigns' marks.
    await db().execute(sql`update campaign_sends set status = 'failed', lease_owner = null, lease_expires_at = null where lease_owner = 'dead'`);
    await app.services.cancelledSends.sweep();
    expect(await marked()).toBe(0);
    expect(await sendCountMismatches(db())).toEqual([]);
  }, 60_000);
});

describe('a send in flight when its campaign stopped', () => {
  /*
   * The record of a send Gmail accepted queues its sequence's next step only while the campaign
   * may still send it: after a cancel (or a deletion) the send is `sent` and nothing is queued
   * for the sweep to skip; a paused campaign resumes later, so its next step is queued.
   */
  it.each([
    { stop: 'cancel', status: 'cancelled', nextStep: [] },
    { stop: 'delete', status: 'cancelled', nextStep: [] },
    { stop: 'pause', status: 'paused', nextStep: ['queued'] },
  ])('$stop while the first step is in flight: the send is recorded sent; next step $nextStep', async ({ stop, status, nextStep }) => {
    const [person] = await fixtures.audience(1, { prefix: `in-flight-${stop}` });
    const subject = `In flight, ${stop} ${Date.now()}`;
    const campaignId = await fixtures.launched(mailbox.id, subject, [person!.id], { steps: [{ afterDays: 2, text: 'Following up' }] });
    const campaign = (await createCampaignsRepo(db()).findById(owner.workspaceId, campaignId)) as CampaignRow;
    const ledger = createSendLedgerRepo(db(), { serializedEngine: app.database.kind === 'pglite' });
    const t0 = new Date(Date.now() + 60_000);
    const [candidate] = await ledger.reserveDue(campaign, 'in-flight-worker', 10, t0, new Date(t0.getTime() + 60_000));
    const claimed = await ledger.claim({
      campaign,
      mailbox,
      candidate: candidate!,
      owner: 'in-flight-worker',
      messageRowId: randomUUID(),
      subject,
      now: t0,
      leaseUntil: new Date(t0.getTime() + 60_000),
    });
    expect(claimed.kind).toBe('go');
    const lease = (claimed as Extract<typeof claimed, { kind: 'go' }>).lease;

    // The campaign stops while Gmail has the message (through the API: the cancel's batches run).
    const res =
      stop === 'delete'
        ? await app.api('DELETE', `/api/campaigns/${campaignId}`, { token: owner.token })
        : await app.api('POST', `/api/campaigns/${campaignId}/${stop}`, { token: owner.token });
    expect(res.status, res.text).toBe(stop === 'delete' ? 204 : 200);

    const next = { campaign, send: candidate!, senderDomain: 'acme.test', dueAt: new Date(t0.getTime() + 2 * DAY) };
    expect(await ledger.markSent(lease, { id: `gm-${stop}`, threadId: `th-${stop}` }, t0, subject, next)).toBe(true);
    const rows = rowsOf<{ step: number; status: string }>(
      await db().execute(sql`select step, status::text from campaign_sends where campaign_id = ${campaignId}::uuid order by step`),
    );
    expect(rows.filter((r) => Number(r.step) === 0).map((r) => r.status)).toEqual(['sent']);
    expect(rows.filter((r) => Number(r.step) === 1).map((r) => r.status)).toEqual(nextStep);
    // Nothing is left for a cancel's sweep: its mark clears with the send's record.
    await app.services.cancelledSends.sweep();
    expect(await ledgerOf(campaignId)).toMatchObject({ status, skipping: false, counts: { sent: 1, skipped: 0, queued: nextStep.length } });
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('the record reads its campaign by key: neither every campaign nor every running one', async () => {
    // Thousands of campaigns by now (the tests above), a few of them still running.
    await db().execute(sql`analyze campaigns`);
    const next = { campaign: {} as CampaignRow, send: {} as SendCandidate, senderDomain: 'acme.test', dueAt: new Date() };
    const plan = await explainBuilt(db(), (capture) =>
      createSendLedgerRepo(capture).markSentMany(
        [0, 1, 2, 3].map(() => ({ lease: { id: randomUUID(), owner: 'plan', attempt: 1, messageRowId: randomUUID() }, gmail: { id: 'g', threadId: 't' }, at: new Date(), subject: 's', next })),
      ),
    );
    expect(plan).toMatch(/campaigns_pkey/);
    expect(plan).not.toMatch(/Seq Scan on campaigns|campaigns_running_idx/);
  });
});
