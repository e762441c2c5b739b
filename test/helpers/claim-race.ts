import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { createCampaignsRepo, type CampaignRow } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo, type ClaimInput, type GateResult } from '../../src/campaigns/send-ledger.repo.js';
import { rowsOf } from '../../src/db/pg-array.js';
import type { TestApp } from './test-app.js';

/** The claim of a campaign's first send (by id), as the worker would ask it, for `contactId`. */
export async function firstSendClaim(app: TestApp, workspaceId: string, campaignId: string, mailbox: { id: string; email: string }, contactId: string): Promise<ClaimInput> {
  const db = app.database.db;
  const [x] = rowsOf<{ id: string; recipient_id: string; email: string; rfc822_message_id: string }>(
    await db.execute(sql`select id, recipient_id, email, rfc822_message_id from campaign_sends where campaign_id = ${campaignId}::uuid order by id limit 1`),
  );
  const campaign = (await createCampaignsRepo(db).findById(workspaceId, campaignId)) as CampaignRow;
  const now = new Date();
  return {
    campaign,
    mailbox,
    candidate: { id: x!.id, campaignId, step: 0, contactId, recipientId: x!.recipient_id, email: x!.email, rfc822MessageId: x!.rfc822_message_id, attempts: 0 },
    owner: 'w1',
    messageRowId: randomUUID(),
    subject: 'Race',
    now,
    leaseUntil: new Date(now.getTime() + 60_000),
  };
}

/**
 * A send's claim whose gate statement waits for the send's row — another session holds it, as
 * another worker's reservation would — while `meanwhile` runs (a cancel, a contact's deletion);
 * then the row is let go. Says whether the claim was decided before `meanwhile` answered: a `go`
 * decided after it is the race these tests exist for. Server only (PGlite runs one statement at a time).
 */
export async function claimWhileRowHeld<T>(app: TestApp, input: ClaimInput, meanwhile: () => Promise<T>): Promise<{ verdict: GateResult; decidedFirst: boolean; answer: T }> {
  const other = new pg.Client({ connectionString: (app.database as unknown as { url: string }).url });
  await other.connect();
  try {
    await other.query('begin');
    await other.query('select 1 from campaign_sends where id = $1 for update', [input.candidate.id]);
    let claimSettledAt = Infinity;
    const claimed = createSendLedgerRepo(app.database.db, { autoReplyDelayDays: app.config.signals.autoReplyFollowUpDelayDays }).claim(input).finally(() => (claimSettledAt = performance.now()));
    await new Promise((resolve) => setTimeout(resolve, 300)); // the gate statement now waits for the row
    let answeredAt = Infinity;
    const answered = meanwhile().finally(() => (answeredAt = performance.now()));
    await new Promise((resolve) => setTimeout(resolve, 300)); // it has answered, or waits for the claim
    await other.query('commit');
    const verdict = await claimed;
    const answer = await answered;
    return { verdict, decidedFirst: claimSettledAt < answeredAt, answer };
  } finally {
    await other.end();
  }
}
