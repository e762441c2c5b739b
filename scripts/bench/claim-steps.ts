/**
 * The send claim of a later step at scale: one marketing campaign over 100,000 contacts (98,000
 * valid addresses) with 2 and then 3 steps, the earlier steps `sent` (with their `messages`
 * rows), some of them answered or bounced (`mail_events`), 150,000 suppressions in the same
 * workspace; then the claim statement of one round (four sends of the last step) is EXPLAINed
 * (ANALYZE, BUFFERS) in a transaction that is rolled back, and so is `deferFollowUps` (an
 * automatic reply to a first-step message). Prints the plan lines of the re-checks' lookups and
 * the buffer totals: read the buffers, not the times. Then the sent record of four sends of the
 * last step that queues a next step (send-ledger-outcomes.repo.ts `markSentMany`, as a server runs it:
 * the recipients' address locks — holdOrderLock — then the record with the next step's hold read),
 * both statements EXPLAINed (ANALYZE, BUFFERS) as custom plans, rolled back.
 *
 *   npm run bench -- claim-steps
 *   BENCH_TARGETS=pglite BENCH_CLAIM_RECIPIENTS=100000 BENCH_CLAIM_PLANS=1 npm run bench -- claim-steps   (whole plans)
 *
 * PGlite runs the claim as a generic plan (plan-hints.ts): there it is EXPLAINed as one
 * (PREPARE, plan_cache_mode force_generic_plan, EXPLAIN EXECUTE), and also as EXPLAIN
 * (GENERIC_PLAN). The server plans it for its values each time (the `pg` driver's unnamed
 * statements), so there it is EXPLAINed as a custom plan.
 */
import { randomUUID } from 'node:crypto';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createFollowUpRules } from '../../src/campaigns/follow-ups.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import type { Db } from '../../src/db/connect.js';
import { pgArray } from '../../src/db/pg-array.js';
import { analyze, fmt, machineLine, openBenchDatabase, rowsOf, seedContacts, seedSuppressions, seedWorkspace, targets, type TargetName } from './audience-data.js';

const RECIPIENTS = Number(process.env.BENCH_CLAIM_RECIPIENTS ?? 100_000);
const SUPPRESSIONS = Number(process.env.BENCH_CLAIM_SUPPRESSIONS ?? 150_000);
const WHOLE_PLANS = process.env.BENCH_CLAIM_PLANS === '1';

/** The earlier steps of the campaign, sent: a `messages` row per send, every 20th replied to, every 30th bounced. */
async function sendStep(db: Db, workspaceId: string, campaignId: string, step: number) {
  await db.execute(sql`
    insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, status, sent_at, attempts)
    select r.workspace_id, ${campaignId}::uuid, ${step}, c.id, r.id, r.email, gen_random_uuid()::text || '@acme.test', 'sent', now(), 1
    from recipients r join contacts c on c.workspace_id = r.workspace_id and lower(c.email) = lower(r.email)
    where r.workspace_id = ${workspaceId}::uuid`);
  await db.execute(sql`
    insert into messages (workspace_id, direction, status, rfc822_message_id, subject, from_address, to_addresses)
    select s.workspace_id, 'outbound', 'sent', s.rfc822_message_id, 'Hi', 'sender@acme.test', array[s.email]
    from campaign_sends s where s.campaign_id = ${campaignId}::uuid and s.step = ${step}`);
  await db.execute(sql`
    update campaign_sends s set message_id = m.id from messages m
    where s.campaign_id = ${campaignId}::uuid and s.step = ${step} and m.workspace_id = s.workspace_id and m.rfc822_message_id = s.rfc822_message_id`);
  await db.execute(sql`
    insert into mail_events (workspace_id, message_id, type, source_gmail_message_id, recipient, detail)
    select s.workspace_id, s.message_id, t.type::mail_event_type, 'src-' || s.id, s.email, '{}'::jsonb
    from (select s.*, row_number() over (order by s.email) n from campaign_sends s where s.campaign_id = ${campaignId}::uuid and s.step = ${step}) s
    join (values (20, 'reply'), (30, 'bounce')) t(every, type) on s.n % t.every = 0`);
}

async function seed(db: Db, steps: number) {
  const ws = await seedWorkspace(db, `Claim ${steps}`);
  await seedContacts(db, ws.workspaceId, RECIPIENTS);
  await seedSuppressions(db, ws.workspaceId, RECIPIENTS, SUPPRESSIONS);
  await db.execute(sql`update suppressions set address_hash = md5(coalesce(lower(email), id::text)) where workspace_id = ${ws.workspaceId}::uuid`);
  await db.execute(sql`
    insert into recipients (workspace_id, email, address_hash)
    select workspace_id, email, md5(lower(email)) from contacts
    where workspace_id = ${ws.workspaceId}::uuid and attributes ->> 'list' = 'a' and (attributes ->> 'n')::int % 50 <> 0`);
  const [campaign] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, topic, status, audience, steps, mailbox_id, created_by, launched_at)
      values (${ws.workspaceId}::uuid, 'steps', 'marketing', 'Hi', 'Hello', 'news', 'sending', '{"segment":{}}',
              ${JSON.stringify(Array.from({ length: steps - 1 }, () => ({ afterDays: 2, text: 'Again' })))}::jsonb, ${ws.mailboxId}::uuid, ${ws.userId}::uuid, now())
      returning id`),
  );
  for (let step = 0; step < steps - 1; step += 1) await sendStep(db, ws.workspaceId, campaign!.id, step);
  // The last step queued for everyone (as markSentMany writes it).
  await db.execute(sql`
    insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id)
    select workspace_id, campaign_id, step + 1, contact_id, recipient_id, email, gen_random_uuid()::text || '@acme.test'
    from campaign_sends where campaign_id = ${campaign!.id}::uuid and step = ${steps - 2}`);
  await analyze(db);
  const [row] = rowsOf<CampaignRow & Record<string, unknown>>(await db.execute(sql`select * from campaigns where id = ${campaign!.id}::uuid`));
  return { ws, campaign: { id: row!.id, workspaceId: ws.workspaceId, createdBy: ws.userId, kind: 'marketing', topic: 'news', steps: [] } as unknown as CampaignRow };
}

/** The claim statement of one round, as the repo builds it (captured, not run). */
async function claimStatement(db: Db, campaign: CampaignRow, mailboxId: string, step: number): Promise<{ sql: string; params: unknown[] }> {
  // Four queued sends of the last step, all of them past the suppression, deletion and consent
  // checks (seedContacts/seedSuppressions: every 9th, 11th, 10th, 13th and 17th is stopped
  // there), so that each reaches the reply and bounce checks: one answered earlier, one bounced,
  // two neither.
  const pick = (which: SQL, limit: number) => sql`(
    select s.id, s.contact_id, s.recipient_id, s.email, s.rfc822_message_id from campaign_sends s join contacts c on c.id = s.contact_id
    where s.campaign_id = ${campaign.id}::uuid and s.step = ${step}
      and (select bool_and((c.attributes ->> 'n')::int % k <> 0) from unnest(array[9, 10, 11, 13, 17]) k) and ${which}
    order by s.email desc limit ${limit})`;
  const answered = (type: string) => sql`exists (select 1 from mail_events e where e.recipient_id = s.recipient_id and e.type = ${type}::mail_event_type)`;
  const sends = rowsOf<{ id: string; contact_id: string; recipient_id: string; email: string; rfc822_message_id: string }>(
    await db.execute(sql`${pick(answered('reply'), 1)} union all ${pick(answered('bounce'), 1)}
      union all ${pick(sql`not exists (select 1 from mail_events e where e.recipient_id = s.recipient_id)`, 2)}`),
  );
  let captured: SQL | undefined;
  const capture = { execute: async (query: SQL) => ((captured = query), { rows: [] }) } as unknown as Db;
  await createSendLedgerRepo(capture, { serializedEngine: true }).claimMany(
    sends.map((s) => ({
      campaign,
      mailbox: { id: mailboxId, email: 'sender@acme.test' },
      candidate: { id: s.id, campaignId: campaign.id, step, contactId: s.contact_id, recipientId: s.recipient_id, email: s.email, rfc822MessageId: s.rfc822_message_id, attempts: 0 },
      owner: 'bench',
      messageRowId: randomUUID(),
      subject: 'Hi',
      now: new Date(),
      leaseUntil: new Date(Date.now() + 60_000),
    })),
  );
  return new PgDialect().sqlToQuery(captured!);
}

const literal = (value: unknown) => (value === null || value === undefined ? 'null' : `'${String(value).replace(/'/g, "''")}'`);

class Rollback extends Error {}

/**
 * The sent record of four queued sends of `step` as the server's repo builds it (captured, not
 * run): the address-lock statement, then the record, which queues step + 1 for each (due now,
 * with its out-of-office hold read). `prepare` puts those sends in flight (claimed, with their
 * `messages` rows), in the transaction that explains the record.
 */
async function sentRecordStatements(db: Db, campaign: CampaignRow, mailboxId: string, step: number) {
  const sends = rowsOf<{ id: string; contact_id: string; recipient_id: string; email: string; rfc822_message_id: string }>(
    await db.execute(sql`
      select id, contact_id, recipient_id, email, rfc822_message_id from campaign_sends
      where campaign_id = ${campaign.id}::uuid and step = ${step} and status = 'queued' order by email desc limit 4`),
  );
  const inputs = sends.map((s, i) => {
    const send = { id: s.id, campaignId: campaign.id, step, contactId: s.contact_id, recipientId: s.recipient_id, email: s.email, rfc822MessageId: s.rfc822_message_id, attempts: 0 };
    return {
      lease: { id: s.id, owner: 'bench', attempt: 1, messageRowId: randomUUID() },
      gmail: { id: `g${i}`, threadId: `t${i}` },
      at: new Date(),
      subject: 'Hi',
      next: { campaign, send, senderDomain: 'acme.test', dueAt: new Date() },
    };
  });
  const captured: SQL[] = [];
  const capture = { execute: async (q: SQL) => (captured.push(q), { rows: [] }), transaction: async (run: (tx: Db) => Promise<unknown>) => run(capture) } as unknown as Db;
  await createSendLedgerRepo(capture, { serializedEngine: false }).markSentMany(inputs);
  if (captured.length !== 2) throw new Error(`expected the lock and the record, captured ${captured.length} statements`);
  const [lock, record] = captured.map((q) => new PgDialect().sqlToQuery(q));
  const prepare = async (tx: Db) => {
    await tx.execute(sql`
      update campaign_sends set status = 'sending', lease_owner = 'bench', attempts = 1, lease_expires_at = now() + interval '1 minute'
      where id = any(${pgArray(inputs.map((x) => x.lease.id))}::uuid[])`);
    await tx.execute(sql`
      insert into messages (id, workspace_id, mailbox_id, direction, status, rfc822_message_id, subject, from_address, to_addresses, sent_by)
      select m.id, ${campaign.workspaceId}::uuid, ${mailboxId}::uuid, 'outbound', 'sending', s.rfc822_message_id, 'Hi', 'sender@acme.test', array[s.email], ${campaign.createdBy}::uuid
      from unnest(${pgArray(inputs.map((x) => x.lease.messageRowId))}::uuid[], ${pgArray(inputs.map((x) => x.lease.id))}::uuid[]) as m(id, send_id)
      join campaign_sends s on s.id = m.send_id`);
  };
  return { lock: lock!, record: record!, prepare };
}

/** EXPLAIN lines of a statement, run and rolled back: as a generic plan (target pglite) or a custom one (server); after `before`, in the same transaction. */
async function explainClaim(db: Db, target: TargetName, query: { sql: string; params: unknown[] }, before?: (tx: Db) => Promise<void>): Promise<string[]> {
  let lines: string[] = [];
  await db
    .transaction(async (txRaw) => {
      const tx = txRaw as unknown as Db;
      await before?.(tx);
      const plan = async (statement: string) => rowsOf<Record<string, string>>(await tx.execute(sql.raw(statement))).map((r) => Object.values(r)[0]!);
      if (target === 'pglite') {
        await tx.execute(sql.raw(`prepare bench_claim as ${query.sql}`));
        await tx.execute(sql.raw(`set local plan_cache_mode = force_generic_plan`));
        lines = await plan(`explain (analyze, buffers) execute bench_claim(${query.params.map(literal).join(', ')})`);
        await tx.execute(sql.raw(`deallocate bench_claim`));
      } else {
        let n = 0;
        const text = query.sql.replace(/\$(\d+)/g, (_m, i: string) => (n++, literal(query.params[Number(i) - 1])));
        lines = await plan(`explain (analyze, buffers) ${text}`);
      }
      throw new Rollback();
    })
    .catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  return lines;
}

/** The lines about the re-checks' lookups in the sends and suppressions, and the totals. */
function summary(lines: string[]): string[] {
  const lookup = /campaign_sends p(_\d+)?\b|on mail_events e(_\d+)?\b|suppressions s[hp]\b/;
  const keep = new RegExp(`${lookup.source}|Index Cond|Index Searches|Filter|Rows Removed|Buffers|Execution Time|Planning Time`);
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    if (!keep.test(line)) continue;
    // Conditions and buffers only under the lookups of interest (or the plan's totals).
    if (/^\s*(Index Cond|Index Searches|Filter|Rows Removed|Buffers)/.test(line)) {
      const owner = lines.slice(0, i).reverse().find((l) => /->/.test(l)) ?? '';
      if (!lookup.test(owner) && !/^\s{0,2}Buffers/.test(line)) continue;
    }
    out.push(line);
  }
  return out;
}

console.log(`claim-steps: ${fmt(RECIPIENTS)} contacts, ${fmt(SUPPRESSIONS)} suppressions in the workspace; ${machineLine()}`);
for (const target of targets) {
  for (const steps of [2, 3]) {
    // No statement timeout: seeding 100,000 contacts is one statement, past 10 s on a loaded host.
    const bench = await openBenchDatabase(target, { statementTimeoutMs: 3_600_000 });
    if (!bench) break;
    try {
      const { db } = bench.database;
      const { ws, campaign } = await seed(db, steps);
      const counts = rowsOf<{ sends: number; events: number }>(
        await db.execute(sql`select (select count(*)::int from campaign_sends where campaign_id = ${campaign.id}::uuid) sends, (select count(*)::int from mail_events) events`),
      )[0]!;
      const query = await claimStatement(db, campaign, ws.mailboxId, steps - 1);
      console.log(`\n[${target}] ${steps} steps: claim of 4 sends of step ${steps - 1}; ${fmt(counts.sends)} sends, ${fmt(counts.events)} mail events`);
      // Twice: the first run warms the cache (and on a server the plan's statistics are the same).
      await explainClaim(db, target, query);
      const lines = await explainClaim(db, target, query);
      console.log((WHOLE_PLANS ? lines : summary(lines)).join('\n'));
      // An automatic reply to a first-step message defers that recipient's later steps (follow-ups.repo.ts).
      const [answered] = rowsOf<{ workspace_id: string; message_id: string }>(
        await db.execute(sql`select workspace_id, message_id from campaign_sends where campaign_id = ${campaign.id}::uuid and step = 0 and message_id is not null limit 1`),
      );
      let deferral: SQL | undefined;
      const capture = { execute: async (q: SQL) => ((deferral = q), { rows: [] }) } as unknown as Db;
      await createFollowUpRules(capture).deferFollowUps(answered!.workspace_id, answered!.message_id, new Date(Date.now() + 86_400_000));
      const deferLines = await explainClaim(db, 'server', new PgDialect().sqlToQuery(deferral!));
      console.log(`  deferFollowUps (custom plan):\n${deferLines.filter((l) => /campaign_sends|Index Cond|Filter|Buffers|Execution Time/.test(l)).join('\n')}`);
      // The sent record of four sends of the last step, queuing a next one (twice each: the first warms the cache).
      const recordOf = await sentRecordStatements(db, campaign, ws.mailboxId, steps - 1);
      await explainClaim(db, 'server', recordOf.lock);
      const lockLines = await explainClaim(db, 'server', recordOf.lock);
      await explainClaim(db, 'server', recordOf.record, recordOf.prepare);
      const recordLines = await explainClaim(db, 'server', recordOf.record, recordOf.prepare);
      const recordSummary = (lines: string[]) => (WHOLE_PLANS ? lines : lines.filter((l, i) => i === 0 || /->|Index Cond|Filter|Buffers|Execution Time|Planning Time/.test(l)));
      console.log(`  sent record of 4 sends of step ${steps - 1}, queuing step ${steps} (custom plans): the address locks (holdOrderLock)\n${recordSummary(lockLines).join('\n')}`);
      console.log(`  the record:\n${recordSummary(recordLines).join('\n')}`);
      if (target === 'pglite') {
        const client = (bench.database.db as unknown as { $client: { exec(query: string): Promise<{ rows: { 'QUERY PLAN': string }[] }[]> } }).$client;
        const [generic] = await client.exec(`explain (generic_plan) ${query.sql}`);
        const text = generic!.rows.map((r) => r['QUERY PLAN']);
        console.log(`  EXPLAIN (GENERIC_PLAN):\n${(WHOLE_PLANS ? text : summary(text)).join('\n')}`);
      }
    } finally {
      await bench.close();
    }
  }
}
