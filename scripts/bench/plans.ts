/**
 * Query plans at 100k (issue #14): every statement on a path whose work grows with the
 * audience or the event count that no other benchmark or test EXPLAINs, run through the app's
 * own repos over seeded data (`plans-data.ts`), recorded, and replayed as EXPLAIN (ANALYZE,
 * BUFFERS) in a transaction that is rolled back (`plans-harness.ts`). Read the buffers and the
 * tables' sequential reads, not the times.
 *
 *   npm run bench -- plans
 *   BENCH_TARGETS=server BENCH_PLAN_ROWS=100000 BENCH_PLAN_CASES=purge npm run bench -- plans
 *
 * BENCH_PLAN_ROWS (100,000): contacts of the large workspace, and of each other growing kind;
 * BENCH_PLAN_SMALL (300): contacts of the closed workspace whose purge is measured;
 * BENCH_PLAN_CASES: only cases whose name contains one of these (comma-separated);
 * BENCH_PLAN_VERBOSE=1: every statement's text.
 * Covered elsewhere, not here: preflight, launch (preflight.ts, launch.ts), the send claim
 * (claim-steps.ts, send-claim-plan.test.ts), campaign stats (stats.ts), tracking writes and the
 * rollup pass (ingest.ts), the raw-facts sweep's read (scale-counters-partitions.test.ts).
 */
import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { createCampaignsRepo, type CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createCancelledSends, SKIP_BATCH_ROWS } from '../../src/campaigns/cancelled-sends.js';
import { createCancelledSendsRepo } from '../../src/campaigns/cancelled-sends.repo.js';
import { createFollowUpRules } from '../../src/campaigns/follow-ups.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { createContactsRepo } from '../../src/contacts/contacts.repo.js';
import type { Db } from '../../src/db/connect.js';
import { createSyncRepo } from '../../src/gmail/sync.repo.js';
import { createLogger } from '../../src/logger.js';
import { createAuditRetention } from '../../src/privacy/audit-retention.js';
import { createComplianceRepo } from '../../src/privacy/compliance.repo.js';
import { createSelfExportRepo } from '../../src/privacy/export.repo.js';
import { deletionRequested, purgeDate } from '../../src/privacy/deletion.js';
import { createPurgeRepo } from '../../src/privacy/purge.repo.js';
import { createRetentionRepo } from '../../src/privacy/retention.repo.js';
import { createSubjectDataRepo } from '../../src/privacy/subject-data.repo.js';
import { createSuppressionListRepo } from '../../src/suppression/suppression.repo.js';
import { createResultsRepo } from '../../src/tracking/results.repo.js';
import { truncateRawTrackingFacts } from '../../src/tracking/retention.js';
import { createWebhooksRepo } from '../../src/webhooks/webhooks.repo.js';
import { fmt, machineLine, rowsOf, targets } from './audience-data.js';
import { serverDatabase } from './common.js';
import { explainAll, pglitePlanDatabase, runCommitted, serverPlanDatabase, type PlanDatabase } from './plans-harness.js';
import { seedPlanData, type PlanData } from './plans-data.js';

const ROWS = Number(process.env.BENCH_PLAN_ROWS ?? 100_000);
const SMALL = Number(process.env.BENCH_PLAN_SMALL ?? 300);
const ONLY = (process.env.BENCH_PLAN_CASES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const VERBOSE = process.env.BENCH_PLAN_VERBOSE === '1';
const SERVER_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const hash = (email: string) => createHash('sha256').update(email).digest('hex');
const DAY = 86_400_000;
const drain = async (rows: AsyncIterable<unknown>) => {
  for await (const _ of rows) void _;
};

/**
 * Work committed before a case (so that its rows predate the case's transaction, as they would
 * in the app: a foreign key is checked again when a row the same transaction wrote is updated),
 * returning what undoes it after the case.
 */
type Setup = (db: Db, d: PlanData) => Promise<() => Promise<unknown>>;
type Case = [name: string, run: (db: Db, d: PlanData) => Promise<unknown>, setup?: Setup];

/**
 * A sequential scan that may stop early (an EXISTS) starts where the last scan of the table
 * stopped when the table is larger than a quarter of shared_buffers (synchronize_seqscans): the
 * cases measuring one read as a scan from the table's start would.
 */
const fromTheStart = (db: Db) => db.execute(sql`set local synchronize_seqscans = off`);
/** A cancel's committed part (campaigns.service.ts `cancel`). */
const cancelled = (db: Db, campaignId: string) =>
  createCampaignsRepo(db).transition(campaignId, ['draft', 'scheduled', 'sending', 'paused'], { status: 'cancelled', statusReason: 'cancelled_by_user', skippingQueuedSince: new Date() });
const silent = createLogger('silent');
/** The batch the worker reserved (committed, by the setup) and hands back in the case. */
let handedBack: string[] = [];

const cases: Case[] = [
  ['results: sent per hour', (db, d) => createResultsRepo(db).sentPerHour(d.big.workspaceId, d.campaignId)],
  ['results: first page of recipients (500)', (db, d) => createResultsRepo(db).recipientSendsPage(d.big.workspaceId, d.campaignId, null, 500)],
  ['results: a middle page of recipients (500)', (db, d) => createResultsRepo(db).recipientSendsPage(d.big.workspaceId, d.campaignId, d.middleSendId, 500)],
  ['contacts: first page (50)', (db, d) => createContactsRepo(db, hash).list(d.big.workspaceId, { limit: 50 })],
  ['contacts: a later page (50)', async (db, d) => {
    const repo = createContactsRepo(db, hash);
    const first = await repo.list(d.big.workspaceId, { limit: 50_000 });
    const last = first[first.length - 1]!;
    await repo.list(d.big.workspaceId, { limit: 50, before: { createdAt: last.cursorAt, id: last.id } });
  }],
  ['contacts: search (50)', (db, d) => createContactsRepo(db, hash).list(d.big.workspaceId, { limit: 50, search: 'c4242' })],
  // Every contact's address has it: the newest first page matches at once.
  ['contacts: search, a pattern all contacts match (50)', (db, d) => createContactsRepo(db, hash).list(d.big.workspaceId, { limit: 50, search: 'bench' })],
  // Two characters give no trigram, and no contact has them: the worst case of a short search.
  ['contacts: search, two characters none has (50)', (db, d) => createContactsRepo(db, hash).list(d.big.workspaceId, { limit: 50, search: 'zq' })],
  ['contacts: timeline of one contact', (db, d) => createContactsRepo(db, hash).listMessagesOfContact(d.big.workspaceId, d.contactId)],
  ['contacts: consents of one contact', (db, d) => createContactsRepo(db, hash).listConsents(d.big.workspaceId, d.contactId, { limit: 200 })],
  // A long history (one record per import that changed it, per preference-center visit): its
  // first page and a page from its middle, 200 each, along consents_latest_idx.
  ['contacts: consents of a contact with 3,000 records, first and a middle page (200)', async (db, d) => {
    const repo = createContactsRepo(db, hash);
    const first = await repo.listConsents(d.big.workspaceId, d.contactId, { limit: 1_500 });
    const middle = first[first.length - 1]!;
    await repo.listConsents(d.big.workspaceId, d.contactId, { limit: 200 });
    await repo.listConsents(d.big.workspaceId, d.contactId, { limit: 200, before: { createdAt: middle.cursorAt, id: middle.id } });
  }, async (db, d) => {
    await db.execute(sql`
      insert into consents (workspace_id, contact_id, status, source, policy_version, actor, at)
      select ${d.big.workspaceId}::uuid, ${d.contactId}::uuid, case when g % 2 = 0 then 'opted_in' else 'opted_out' end::consent_status,
             'bench', '2026-11-01', 'recipient', now() - g * interval '1 hour'
      from generate_series(1, 3000) g`);
    return () => db.execute(sql`delete from consents where contact_id = ${d.contactId}::uuid and source = 'bench'`);
  }],
  ['suppressions: first page (50)', (db, d) => createSuppressionListRepo(db, hash).listEntries(d.big.workspaceId, { limit: 50 })],
  ['suppressions: first page, reason unsubscribe (50)', (db, d) => createSuppressionListRepo(db, hash).listEntries(d.big.workspaceId, { limit: 50, reason: 'unsubscribe' })],
  // A filter no entry matches: without an index led by it, the page walks the whole list looking for 50.
  ['suppressions: first page, a reason none has (50)', (db, d) => createSuppressionListRepo(db, hash).listEntries(d.big.workspaceId, { limit: 50, reason: 'complaint' })],
  ['suppressions: first page, a topic none has (50)', (db, d) => createSuppressionListRepo(db, hash).listEntries(d.big.workspaceId, { limit: 50, scope: 'topic:none' })],
  ['suppressions: entries of one address', (db, d) => createSuppressionListRepo(db, hash).listEntriesOfAddress(d.big.workspaceId, d.contactEmail)],
  ['webhooks: delivery log first page (50)', (db, d) => createWebhooksRepo(db).listDeliveries(d.big.workspaceId, d.endpointId, { limit: 50 })],
  ['webhooks: outbox claim (50)', (db) => createWebhooksRepo(db).claimDue('plans', new Date(), new Date(Date.now() + 60_000), 50)],
  ['webhooks: retention, one batch of events past 30 days (1,000)', (db) => createWebhooksRepo(db).purgeEventsBefore(new Date(Date.now() - 30 * DAY), 1_000)],
  ['webhooks: retention with nothing due', (db) => createWebhooksRepo(db).purgeEventsBefore(new Date(Date.now() - 365 * DAY), 1_000)],
  ['retention: superseded consents', (db) => createRetentionRepo(db).deleteSupersededConsents(new Date(Date.now() - 30 * DAY))],
  ['retention: audit rows past 365 days', (db) => createAuditRetention({ db, retentionDays: 365 }).purgeExpired()],
  ['retention: raw tracking facts past 30 days (batches of 5,000)', (db) => truncateRawTrackingFacts(db, { retentionDays: 30 })],
  ['compliance: first audit page (100)', (db, d) => createComplianceRepo(db).auditPage(d.big.workspaceId, new Date(Date.now() - 700 * DAY), new Date(), undefined, 100)],
  ['privacy export of a contact (subject data)', async (db, d) => {
    const repo = createSubjectDataRepo(db);
    const { scope } = await repo.resolve({ workspaceId: d.big.workspaceId, addresses: [], contactIds: [d.contactId], mailboxIds: [d.big.mailboxId] });
    for (const rows of [repo.consents(scope), repo.messages(scope), repo.mailEvents(scope), repo.campaignSends(scope), repo.trackingEvents(scope), repo.suppressions(scope)]) await drain(rows);
  }],
  ['privacy export of a user (self export, first page each)', async (db, d) => {
    const repo = createSelfExportRepo(db);
    for (const rows of [repo.messagesSent(d.big.userId), repo.suppressionsRecorded(d.big.userId), repo.consentsRecorded(d.big.userId), repo.auditRows(d.big.userId)]) {
      for await (const _ of rows) break;
    }
  }],
  // A second member of the large workspace who did almost nothing: each part of their export
  // should read their rows, not every row of the table in id order.
  ['privacy export of a user (self export, every page), a member who recorded little', async (db, d) => {
    const repo = createSelfExportRepo(db);
    for (const rows of [repo.messagesSent(d.small.userId), repo.campaignsCreated(d.small.userId), repo.suppressionsRecorded(d.small.userId), repo.consentsRecorded(d.small.userId), repo.auditRows(d.small.userId)]) await drain(rows);
  }, async (db, d) => {
    await db.execute(sql`insert into memberships (workspace_id, user_id, role) values (${d.big.workspaceId}::uuid, ${d.small.userId}::uuid, 'member')`);
    return () => db.execute(sql`delete from memberships where workspace_id = ${d.big.workspaceId}::uuid and user_id = ${d.small.userId}::uuid`);
  }],
  ['mailbox sync: reply/bounce lookups', async (db, d) => {
    const repo = createSyncRepo(db, hash);
    await repo.contactsAmong(d.big.workspaceId, [d.contactEmail, 'nobody@else.test']);
    await repo.latestSendTo(d.big.workspaceId, d.big.mailboxId, d.contactEmail, { from: new Date(Date.now() - 60 * DAY), to: new Date() });
    await repo.countSoftBounces(d.big.workspaceId, d.contactEmail, new Date(Date.now() - 60 * DAY), 'src-none');
  }],
  ['follow-ups: defer after an automatic reply', async (db, d) => {
    const [row] = rowsOf<{ message_id: string }>(await db.execute(sql`select message_id from campaign_sends where campaign_id = ${d.campaignId}::uuid and step = 0 limit 1`));
    await createFollowUpRules(db).deferFollowUps(d.big.workspaceId, row!.message_id, new Date(Date.now() + DAY));
  }],
  // The follow-up step's rows: one per recipient, every one due at the same instant (as a launch writes them).
  ['send ledger: a batch reservation (500) of the campaign\'s queued rows, all due at one instant', (db, d) =>
    createSendLedgerRepo(db).reserveDue({ id: d.campaignId } as CampaignRow, 'plans', 500, new Date(Date.now() + 2 * DAY), new Date(Date.now() + 3 * DAY))],
  // The campaign's lifecycle (campaigns.service.ts and the worker's tick) where it reads or writes the ledger.
  ['campaign: progress and skip reasons (the campaign page), second step queued', async (db, d) => {
    const repo = createCampaignsRepo(db);
    await repo.progress(d.campaignId);
    await repo.skipReasons(d.campaignId);
  }],
  ['campaign: complete if done, second step queued (each worker tick)', async (db, d) => {
    await fromTheStart(db);
    await createCampaignsRepo(db).completeIfDone(d.campaignId, new Date());
  }],
  ['campaign: complete if done, every send finished', async (db, d) => {
    await fromTheStart(db);
    await db.execute(sql`update campaign_sends set status = 'sent', sent_at = now() where campaign_id = ${d.campaignId}::uuid and status = 'queued'`);
    await createCampaignsRepo(db).completeIfDone(d.campaignId, new Date());
  }],
  ['campaign: pause and resume', async (db, d) => {
    const repo = createCampaignsRepo(db);
    await repo.transition(d.campaignId, ['scheduled', 'sending'], { status: 'paused', statusReason: 'paused_by_user' });
    await repo.transition(d.campaignId, ['paused'], { status: 'sending', statusReason: null });
  }],
  // Cancel (issue #14, tenth pass): the state alone in the request's transaction, then the queued sends in batches (cancelled-sends.ts).
  ['campaign: cancel (its state; the queued sends follow in batches)', (db, d) =>
    createCampaignsRepo(db).transition(d.campaignId, ['draft', 'scheduled', 'sending', 'paused'], { status: 'cancelled', statusReason: 'cancelled_by_user', skippingQueuedSince: new Date() })],
  [`campaign: cancel, one batch (${fmt(SKIP_BATCH_ROWS)}) of its queued sends skipped`, async (db, d) => {
    await cancelled(db, d.campaignId);
    await createCancelledSendsRepo(db).skipBatch(d.campaignId, SKIP_BATCH_ROWS);
  }],
  // The planner's other shape: a campaign small beside the ledger, to the end (its one short batch, then the done check).
  ['campaign: cancel a campaign of 300 contacts beside the large one, to the end', async (db, d) => {
    await cancelled(db, d.small.campaignId);
    await createCancelledSends({ repo: createCancelledSendsRepo(db), logger: silent }).skipQueued(d.small.campaignId, Infinity);
  }],
  // The sweep, every second in each worker: which campaigns are being skipped, and (for one with sends still queued) whether it is done.
  ['campaign: the sweep\'s questions, one cancelled campaign with sends queued', async (db, d) => {
    await cancelled(db, d.campaignId);
    const repo = createCancelledSendsRepo(db);
    await repo.pending(1_000);
    await repo.finishDone(d.campaignId);
  }],
  ['campaign: the sweep\'s question with nothing to skip', (db) => createCancelledSendsRepo(db).pending(1_000)],
  ['campaign: delete while sending (cancel, mark deleted, audit)', (db, d) =>
    createCampaignsRepo(db).transaction(async (tx) => {
      const at = new Date();
      const purgeAfter = purgeDate(at, 30);
      await tx.transition(d.campaignId, ['scheduled', 'sending', 'paused'], { status: 'cancelled', statusReason: 'deleted', skippingQueuedSince: at });
      await tx.markDeleted(d.big.workspaceId, d.campaignId, at, purgeAfter);
      await tx.audit(deletionRequested({ workspaceId: d.big.workspaceId, actor: `user:${d.big.userId}` }, 'campaign', d.campaignId, purgeAfter));
    })],
  ['send ledger: a worker hands back a batch\'s reservations (500)', (db) => createSendLedgerRepo(db).releaseReservations('stopping', handedBack), async (db, d) => {
    const ledger = createSendLedgerRepo(db);
    handedBack = (await ledger.reserveDue({ id: d.campaignId } as CampaignRow, 'stopping', 500, new Date(Date.now() + 2 * DAY), new Date(Date.now() + 3 * DAY))).map((r) => r.id);
    return () => ledger.releaseReservations('stopping', handedBack);
  }],
  // 500 sends in flight whose worker died (lease expired), among the campaign's 98,000 queued and 98,000 sent.
  ['send ledger: expired leases (recovery pass, 100 of 500)', async (db, d) => {
    await db.execute(sql`
      update campaign_sends set status = 'sending', lease_owner = 'gone', lease_expires_at = now() - interval '1 minute', claimed_at = now() - interval '5 minutes', attempts = 1
      where id = any(array(select id from campaign_sends where campaign_id = ${d.campaignId}::uuid and status = 'queued' order by id limit 500))`);
    await createSendLedgerRepo(db).expiredLeases(new Date(), 100);
  }],
  ['purge: one contact', (db, d) => createPurgeRepo(db).purgeContact(d.deletedContactId, hash)],
  ['purge: the campaign (rolled back)', async (db, d) => {
    // As its deletion leaves it: cancelled as well (a deleted campaign never sends: migration 0063).
    await db.execute(sql`update campaigns set deleted_at = now(), status = 'cancelled', status_reason = 'deleted' where id = ${d.campaignId}::uuid`);
    await createPurgeRepo(db).purgeCampaign(d.campaignId);
  }],
  // A closed account: its row's delete sets null every column naming it (messages they sent,
  // campaigns and entries they made) and cascades to its memberships and sessions.
  ['purge: one closed account (rolled back)', async (db, d) => {
    await db.execute(sql`update users set deleted_at = now() where id = ${d.small.userId}::uuid`);
    await createPurgeRepo(db).purgeUser(d.small.userId);
  }],
  ['purge: a closed workspace of 300 contacts beside the large one', (db, d) => createPurgeRepo(db).purgeWorkspace(d.small.workspaceId)],
];

/**
 * The retention loops once more, as they run: each batch committed. They change the data, so
 * they come after every other case.
 */
const committed: Case[] = [
  ['committed: audit rows past 365 days', (db) => createAuditRetention({ db, retentionDays: 365 }).purgeExpired()],
  ['committed: webhook events past 30 days (batches of 1,000)', async (db) => {
    const repo = createWebhooksRepo(db);
    while ((await repo.purgeEventsBefore(new Date(Date.now() - 30 * DAY), 1_000)) === 1_000);
  }],
  ['committed: raw tracking facts past 30 days (batches of 5,000)', (db) => truncateRawTrackingFacts(db, { retentionDays: 30 })],
  // Last: it cancels the large campaign. Every batch committed, as the cancel and the sweep run them.
  [`committed: cancel of the large campaign, every queued send skipped in batches of ${fmt(SKIP_BATCH_ROWS)}`, async (db, d) => {
    await cancelled(db, d.campaignId);
    await createCancelledSends({ repo: createCancelledSendsRepo(db), logger: silent }).skipQueued(d.campaignId, Infinity);
  }],
];

function print(name: string, result: Awaited<ReturnType<typeof explainAll>>) {
  const total = result.statements.reduce((sum, s) => sum + s.buffers, 0);
  console.log(`\n## ${name}: ${result.statements.length} statements, ${fmt(total)} buffers (plan nodes), ${result.ms.toFixed(0)} ms`);
  for (const s of result.statements) {
    const notes = [...s.seqScans.map((x) => `SEQ ${x}`), ...s.wideIndexScans.map((x) => `range ${x}`), ...s.triggers.map((x) => `trigger ${x}`)];
    console.log(`  ${fmt(s.buffers).padStart(9)} buf ${fmt(s.rows).padStart(7)} rows ${s.ms.toFixed(1).padStart(8)} ms  ${s.top}${notes.length ? `  [${notes.join('; ')}]` : ''}`);
    console.log(`      ${VERBOSE ? s.text : s.text.slice(0, 160)}`);
  }
  if (result.tables.length) console.log(`  tables read (incl. triggers): ${result.tables.map((t) => `${t.table} seq ${t.seqScans}×/${fmt(t.seqRead)} tuples, idx ${fmt(t.idxFetched)}`).join('; ')}`);
}

console.log(`plans: ${fmt(ROWS)} rows per growing kind; ${machineLine()}`);
for (const target of targets) {
  let database: PlanDatabase;
  let drop = async () => undefined as void;
  if (target === 'pglite') database = await pglitePlanDatabase();
  else {
    const scratch = await serverDatabase(SERVER_URL, 'inboxtrail_plans');
    database = await serverPlanDatabase(scratch.url);
    drop = scratch.drop;
  }
  try {
    const started = performance.now();
    const data = await seedPlanData(database.db, ROWS, SMALL);
    console.log(`\n# ${database.label}: seeded in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    for (const [name, run, setup] of cases) {
      if (ONLY.length && !ONLY.some((o) => name.includes(o))) continue;
      const undo = setup ? await setup(database.db, data) : undefined;
      try {
        const statements = await database.record((db) => run(db, data));
        print(name, await explainAll(database, statements));
      } finally {
        await undo?.();
      }
    }
    for (const [name, run] of committed) {
      if (ONLY.length && !ONLY.some((o) => name.includes(o))) continue;
      const r = await runCommitted(database, (db) => run(db, data));
      console.log(`\n## ${name}: ${fmt(r.pages)} pages (heap + index, all tables), ${fmt(r.seqRead)} tuples read by scans, ${fmt(r.idxFetched)} fetched by index, ${r.ms.toFixed(0)} ms`);
    }
  } finally {
    await database.close();
    await drop();
  }
}
