import { randomUUID } from 'node:crypto';
import { eq, inArray, sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAILBOX_UNSEARCHABLE } from '../../src/campaigns/parked-sends.js';
import { recoveryOwnerOf, UNSEARCHABLE_RECHECK_MS } from '../../src/campaigns/send-recovery.js';
import { campaignSends, campaigns, messages, recipients } from '../../src/db/schema.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createLogger } from '../../src/logger.js';
import { createMessagesRepo } from '../../src/messages/messages.repo.js';
import { createMessagesService } from '../../src/messages/messages.service.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { campaignFixtures, crashingWorker, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Invariant 3 for sends whose worker died, whatever became of their campaign or mailbox:
 * every send in flight is resolved by a mailbox search, and sends that cannot be searched
 * now (their mailbox waits to be reconnected) never hold up the others'. Recovery reads
 * the oldest expired leases first, 100 a pass (send-ledger-recovery.repo.ts expiredLeases).
 */
const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const STUCK = 'recovery-stuck@acme.test';
const HEALTHY = 'recovery-healthy@acme.test';
/** More than one pass of expiredLeases reads. */
const MANY = 110;
let stuck: { id: string };
let healthy: { id: string };

beforeAll(async () => {
  stuck = await connectedMailbox(ctx.app, ctx.owner.token, STUCK, { sync: true });
  healthy = await connectedMailbox(ctx.app, ctx.owner.token, HEALTHY, { sync: true });
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

const db = () => ctx.app.database.db;
const minutesAgo = (n: number) => new Date(Date.now() - n * 60_000);
const soon = () => new Date(Date.now() + 4 * 60_000);
const setMailboxStatus = (id: string, status: 'active' | 'needs_reconnect') =>
  db().execute(sql`update mailboxes set status = ${status}, status_reason = ${status === 'active' ? null : 'invalid_grant'} where id = ${id}::uuid`);
/** Gmail calls made for a sandbox mailbox so far (searches and sends alike). */
const gmailCalls = (mailbox: string) => ctx.app.sandbox.control.calls({ mailbox }).length;

/** A launched campaign of one contact whose worker died right after Gmail accepted its message: `sending`, lease of 2 s. */
const crashedAfterGmail = (subject: string, sender: { id: string; email: string } = { id: healthy.id, email: HEALTHY }) => fx.crashedAfterGmail(sender, subject, { prefix: 'rec' });

/** `n` sends of a campaign from the stuck mailbox, claimed by a worker that died long ago. */
async function seedStuckSends(n: number): Promise<string> {
  // Older than any other expired lease: the front of expiredLeases' order.
  return seedSends(stuck.id, n, 'dead-worker', (i) => minutesAgo(15 - i / 1000));
}

/** `n` sends of a campaign from this mailbox, claimed 20 minutes ago by `owner`, with these leases. */
async function seedSends(mailboxId: string, n: number, owner: string, leaseExpiresAt: (i: number) => Date): Promise<string> {
  const workspaceId = ctx.owner.workspaceId;
  const [campaign] = await db()
    .insert(campaigns)
    .values({ workspaceId, name: 'Stuck', kind: 'marketing', mailboxId, subject: 'Stuck', html: '<p>x</p>', audience: { contactIds: [] }, status: 'paused', statusReason: 'mailbox_needs_reconnect' })
    .returning({ id: campaigns.id });
  const emails = Array.from({ length: n }, () => `stuck-${randomUUID()}@contoso.test`);
  const people = await db().insert(recipients).values(emails.map((email) => ({ workspaceId, email }))).returning({ id: recipients.id, email: recipients.email });
  await db()
    .insert(campaignSends)
    .values(
      people.map((p, i) => ({
        workspaceId,
        campaignId: campaign!.id,
        step: 0,
        recipientId: p.id,
        email: p.email,
        status: 'sending' as const,
        rfc822MessageId: `${randomUUID()}@acme.test`,
        attempts: 1,
        claimedAt: minutesAgo(20),
        leaseOwner: owner,
        leaseExpiresAt: leaseExpiresAt(i),
      })),
    );
  return campaign!.id;
}

async function stuckRows(campaignId: string) {
  return rowsOf<{ status: string; attempts: number; resolve_looks: number; lease_owner: string | null; error_code: string | null; lease_expires_at: string | Date }>(
    await db().execute(sql`select status, attempts, resolve_looks, lease_owner, error_code, lease_expires_at from campaign_sends where campaign_id = ${campaignId}::uuid`),
  ).map((r) => ({ ...r, attempts: Number(r.attempts), resolve_looks: Number(r.resolve_looks), lease_expires_at: new Date(r.lease_expires_at) }));
}

/** A 1:1 send from this mailbox to someone@contoso.test, `sending` under `owner`'s lease. */
const oneToOne = (mailboxId: string, from: string, leaseExpiresAt: Date, subject = 'R3 one to one', owner = 'dead-worker') => ({
  workspaceId: ctx.owner.workspaceId,
  mailboxId,
  direction: 'outbound' as const,
  status: 'sending' as const,
  rfc822MessageId: `${randomUUID()}@acme.test`,
  subject,
  fromAddress: from,
  toAddresses: ['someone@contoso.test'],
  leaseOwner: owner,
  leaseExpiresAt,
});
const messageRow = async (id: string) => (await db().select().from(messages).where(eq(messages.id, id)))[0]!;

/** A 1:1 send whose worker died after Gmail accepted it (the sandbox has it): `sending`, its lease expired a minute ago. */
async function deliveredOneToOne(mailboxId: string, from: string, subject: string) {
  const [row] = await db().insert(messages).values(oneToOne(mailboxId, from, minutesAgo(1), subject)).returning();
  ctx.app.sandbox.control.createMailbox({ email: 'someone@contoso.test' });
  await ctx.app.sandbox.control.sendAs(from, { to: 'someone@contoso.test', subject, text: 'hi', messageId: `<${row!.rfc822MessageId}>` });
  return row!;
}

/** Mailboxes as a recovery sees them that read them just before a reconnect committed: needs_reconnect. */
function staleMailboxes() {
  const mailboxRepo = createMailboxesRepo(db());
  return {
    ...mailboxRepo,
    findByIdUnscoped: async (id: string) => {
      const row = await mailboxRepo.findByIdUnscoped(id);
      return row && { ...row, status: 'needs_reconnect' as const };
    },
  };
}

describe('recovery of expired sends', { timeout: 90_000 }, () => {
  it('sends of a mailbox waiting to be reconnected keep their state but not their place: a healthy mailbox’s crashed send is resolved behind them', async () => {
    const stuckCampaign = await seedStuckSends(MANY);
    await setMailboxStatus(stuck.id, 'needs_reconnect');
    const { campaignId, person } = await crashedAfterGmail('R1 behind the stuck');
    const stuckCalls = gmailCalls(STUCK);

    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer' });
    // Past the crashed send's 2 s lease; the stuck ones expired 15 minutes ago.
    const asOf = () => new Date(Date.now() + 3_000);
    let passes = 0;
    while ((await fx.ledger(campaignId))[0]!.status === 'sending' && passes < 3) {
      await rescuer.recoverStuck(asOf());
      passes += 1;
    }
    // 100 stuck sends a pass: the second pass reaches it.
    expect(passes).toBe(2);
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    expect(fx.sentTo(HEALTHY, 'R1 behind the stuck').get(person.email)).toBe(1);

    // The stuck ones: still `sending`, never sent again nor searched (no Gmail call for that
    // mailbox), no look counted; their next look is minutes away.
    const rows = await stuckRows(stuckCampaign);
    expect(rows).toHaveLength(MANY);
    expect(rows.every((r) => r.status === 'sending' && r.attempts === 1 && r.resolve_looks === 0)).toBe(true);
    expect(rows.every((r) => r.lease_expires_at.getTime() > Date.now() + UNSEARCHABLE_RECHECK_MS / 2)).toBe(true);
    expect(gmailCalls(STUCK)).toBe(stuckCalls);

    // Reconnected: at their next look they are searched (not there: a first look counted).
    await setMailboxStatus(stuck.id, 'active');
    await rescuer.recoverStuck(new Date(Date.now() + UNSEARCHABLE_RECHECK_MS + 60_000));
    const later = await stuckRows(stuckCampaign);
    expect(later.filter((r) => r.resolve_looks === 1)).toHaveLength(100);
    expect(later.every((r) => r.status === 'sending')).toBe(true);
    expect(ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: STUCK })).toHaveLength(0);
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('a send in flight when its campaign was deleted is resolved by the mailbox search', async () => {
    const { campaignId, person } = await crashedAfterGmail('R2 deleted meanwhile');
    expect((await ctx.app.api('DELETE', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).status).toBe(204);

    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-2' });
    expect(await rescuer.recoverStuck(new Date(Date.now() + 3_000))).toBe(1);
    const [row] = await fx.ledger(campaignId);
    expect(row).toMatchObject({ status: 'sent', attempts: 1 });
    expect(row!.gmail_message_id).toBeTruthy();
    expect(fx.sentTo(HEALTHY, 'R2 deleted meanwhile').get(person.email)).toBe(1);
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('a send resolved by recovery keeps the subject it went out with, not its template', async () => {
    const [person] = await fx.audience(1, { prefix: 'recsub' });
    const campaignId = await fx.launched(healthy.id, 'R9 for {{firstName | "you"}}', [person!.id]);
    await crashingWorker(ctx.app, 2_000).tick();
    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-9' });
    expect(await rescuer.recoverStuck(new Date(Date.now() + 3_000))).toBe(1);
    const sentSubjects = ctx.app.sandbox.control.listMessages(HEALTHY, { labelId: 'SENT' }).filter((m) => m.to.includes(person!.email)).map((m) => m.subject);
    const stored = rowsOf<{ subject: string }>(
      await db().execute(sql`select m.subject from campaign_sends s join messages m on m.id = s.message_id where s.campaign_id = ${campaignId}::uuid`),
    );
    expect(sentSubjects).toHaveLength(1);
    expect(sentSubjects[0]).not.toContain('{{');
    expect(stored.map((r) => r.subject)).toEqual(sentSubjects);
  });

  it('1:1 sends: those of a mailbox waiting to be reconnected do not hold up a healthy mailbox’s', async () => {
    await setMailboxStatus(stuck.id, 'needs_reconnect');
    const stuckIds = (
      await db()
        .insert(messages)
        .values(Array.from({ length: MANY }, (_, i) => oneToOne(stuck.id, STUCK, minutesAgo(15 - i / 1000))))
        .returning({ id: messages.id })
    ).map((r) => r.id);
    // The healthy one went out before its worker died: the sandbox has it.
    const mine = await deliveredOneToOne(healthy.id, HEALTHY, 'R3 one to one');
    const stuckCalls = gmailCalls(STUCK);

    const status = async () => (await messageRow(mine.id)).status;
    let passes = 0;
    while ((await status()) === 'sending' && passes < 3) {
      await ctx.app.services.messages.recoverExpired();
      passes += 1;
    }
    expect(passes).toBe(2);
    expect(await status()).toBe('sent');
    const rows = await db().select().from(messages).where(inArray(messages.id, stuckIds));
    expect(rows.every((r) => r.status === 'sending' && r.resolveLooks === 0 && r.leaseExpiresAt!.getTime() > Date.now() + UNSEARCHABLE_RECHECK_MS / 2)).toBe(true);
    expect(gmailCalls(STUCK)).toBe(stuckCalls);
  });
});

/*
 * A send parked because its mailbox could not be searched is due the moment the mailbox is
 * reconnected (campaigns/parked-sends.ts): not up to UNSEARCHABLE_RECHECK_MS later. Only
 * parked ones: a send a live worker holds keeps its lease, or recovery could search too early,
 * not find it, and queue it again.
 */
describe('a reconnect makes the parked sends due', { timeout: 90_000 }, () => {
  it('campaign sends: one recovery pass after the reconnect finds the parked send; a live claim on that mailbox keeps its lease', async () => {
    const PARKED = 'recovery-parked@acme.test';
    const parked = await connectedMailbox(ctx.app, ctx.owner.token, PARKED, { sync: true });
    const subject = 'R4 parked until the reconnect';
    const { campaignId, person } = await crashedAfterGmail(subject, { id: parked.id, email: PARKED });
    // Another send of that mailbox, claimed a moment ago by a worker sending it now.
    const liveCampaign = await seedSends(parked.id, 1, 'live-worker', soon);
    const live = await stuckRows(liveCampaign);
    await setMailboxStatus(parked.id, 'needs_reconnect');
    const calls = gmailCalls(PARKED);

    const rescuer = separateWorker(ctx.app, { workerId: 'rescuer-4' });
    await rescuer.recoverStuck(new Date(Date.now() + 3_000));
    const [held] = await stuckRows(campaignId);
    expect(held).toMatchObject({ status: 'sending', attempts: 1, resolve_looks: 0, error_code: MAILBOX_UNSEARCHABLE, lease_owner: recoveryOwnerOf('rescuer-4') });
    expect(held!.lease_expires_at.getTime()).toBeGreaterThan(Date.now() + UNSEARCHABLE_RECHECK_MS / 2);
    expect(gmailCalls(PARKED)).toBe(calls);
    // The campaign's progress shows it in flight, nothing failed.
    const progress = await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token });
    expect(progress.status).toBe(200);
    expect(JSON.stringify(progress.body)).not.toContain(MAILBOX_UNSEARCHABLE);

    // Reconnected through the OAuth callback, as the person does: the parked send is due now.
    const before = Date.now();
    expect(await connectedMailbox(ctx.app, ctx.owner.token, PARKED, { sync: true })).toMatchObject({ id: parked.id, status: 'active' });
    const [due] = await stuckRows(campaignId);
    expect(due!.lease_expires_at.getTime()).toBeGreaterThanOrEqual(before);
    expect(due!.lease_expires_at.getTime()).toBeLessThanOrEqual(Date.now());
    expect(await stuckRows(liveCampaign)).toEqual(live);

    // One pass now, not minutes later: found in the mailbox → sent, and never sent twice.
    await rescuer.recoverStuck();
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1, error_code: null });
    expect(fx.sentTo(PARKED, subject).get(person.email)).toBe(1);
    expect(ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: PARKED })).toHaveLength(1);
    expect(await stuckRows(liveCampaign)).toEqual(live);
    expect(await sendCountMismatches(db())).toEqual([]);
  });

  it('a send is not parked when its mailbox was reconnected after recovery read it', async () => {
    const RACED = 'recovery-raced@acme.test';
    const raced = await connectedMailbox(ctx.app, ctx.owner.token, RACED, { sync: true });
    const { campaignId, person } = await crashedAfterGmail('R5 reconnected meanwhile', { id: raced.id, email: RACED });
    // A recovery that read the mailbox just before its reconnect committed: it still sees needs_reconnect.
    const late = separateWorker(ctx.app, { workerId: 'rescuer-5', mailboxRepo: staleMailboxes() });
    const asOf = new Date(Date.now() + 3_000);
    await late.recoverStuck(asOf);
    // Not taken: still expired, unmarked, left to the next pass — not parked for minutes.
    const [row] = await stuckRows(campaignId);
    expect(row).toMatchObject({ status: 'sending', error_code: null });
    expect(row!.lease_expires_at.getTime()).toBeLessThan(asOf.getTime());

    await separateWorker(ctx.app, { workerId: 'rescuer-6' }).recoverStuck(asOf);
    expect((await fx.ledger(campaignId))[0]).toMatchObject({ status: 'sent', attempts: 1 });
    expect(fx.sentTo(RACED, 'R5 reconnected meanwhile').get(person.email)).toBe(1);
  });

  it('1:1 sends: the parked one is found at the first pass after the reconnect; a live one keeps its lease', async () => {
    const SENDER = 'recovery-parked-1to1@acme.test';
    const box = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
    const subject = 'R6 one to one parked';
    // Its worker died after Gmail accepted it: the sandbox has it.
    const gone = await deliveredOneToOne(box.id, SENDER, subject);
    const [live] = await db().insert(messages).values(oneToOne(box.id, SENDER, soon(), subject, 'live-worker')).returning();
    await setMailboxStatus(box.id, 'needs_reconnect');
    const calls = gmailCalls(SENDER);

    await ctx.app.services.messages.recoverExpired();
    const held = await messageRow(gone.id);
    expect(held).toMatchObject({ status: 'sending', resolveLooks: 0, errorCode: MAILBOX_UNSEARCHABLE });
    expect(held.leaseExpiresAt!.getTime()).toBeGreaterThan(Date.now() + UNSEARCHABLE_RECHECK_MS / 2);
    expect(gmailCalls(SENDER)).toBe(calls);
    // The API shows it pending, as any send whose outcome is not known yet.
    const shown = await ctx.app.api('GET', `/api/messages/${gone.id}`, { token: ctx.owner.token });
    expect(shown.body.status).toBe('pending');

    const before = Date.now();
    expect(await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true })).toMatchObject({ id: box.id, status: 'active' });
    const due = await messageRow(gone.id);
    expect(due.leaseExpiresAt!.getTime()).toBeGreaterThanOrEqual(before);
    expect(due.leaseExpiresAt!.getTime()).toBeLessThanOrEqual(Date.now());
    expect(await messageRow(live!.id)).toEqual(live);

    await ctx.app.services.messages.recoverExpired();
    expect(await messageRow(gone.id)).toMatchObject({ status: 'sent', errorCode: null });
    expect((await ctx.app.api('GET', `/api/messages/${gone.id}`, { token: ctx.owner.token })).body.status).toBe('sent');
    expect(await messageRow(live!.id)).toEqual(live);
  });

  it('1:1 sends: not parked when the mailbox was reconnected after recovery read it', async () => {
    const SENDER = 'recovery-raced-1to1@acme.test';
    const box = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
    const subject = 'R8 one to one reconnected meanwhile';
    const gone = await deliveredOneToOne(box.id, SENDER, subject);
    // A recovery that read the mailbox just before its reconnect committed: it still sees needs_reconnect.
    const late = createMessagesService({
      repo: createMessagesRepo(db(), createAddressHasher(ctx.app.config.privacy.suppressionHashKey)),
      mailboxes: ctx.app.services.mailboxes,
      mailboxRepo: staleMailboxes(),
      sentCopies: ctx.app.services.sentCopies,
      logger: createLogger('silent'),
      workerId: 'rescuer-8',
    });
    await late.recoverExpired();
    // Not taken: still expired, unmarked, left to the next pass — not parked for minutes.
    const row = await messageRow(gone.id);
    expect(row).toMatchObject({ status: 'sending', errorCode: null, leaseOwner: 'dead-worker' });
    expect(row.leaseExpiresAt!.getTime()).toBeLessThan(Date.now());

    await ctx.app.services.messages.recoverExpired();
    expect(await messageRow(gone.id)).toMatchObject({ status: 'sent', errorCode: null });
  });

  // Server only: on PGlite every statement runs alone, so the two cannot interleave.
  it.runIf(process.env.TEST_DATABASE_URL)('the reconnect does not deadlock with a purge holding a parked send', async () => {
    const PURGING = 'recovery-purging@acme.test';
    const box = await connectedMailbox(ctx.app, ctx.owner.token, PURGING, { sync: true });
    const { campaignId } = await crashedAfterGmail('R7 a purge beside the reconnect', { id: box.id, email: PURGING });
    await setMailboxStatus(box.id, 'needs_reconnect');
    await separateWorker(ctx.app, { workerId: 'rescuer-7' }).recoverStuck(new Date(Date.now() + 3_000));
    const [parked] = rowsOf<{ id: string; error_code: string }>(await db().execute(sql`select id, error_code from campaign_sends where campaign_id = ${campaignId}::uuid`));
    expect(parked!.error_code).toBe(MAILBOX_UNSEARCHABLE);

    // A purge's transaction as purge.repo.ts runs it: the sends it deletes locked first, then the
    // mailbox's purged-send count, whose foreign key takes a key-share lock on the mailbox's row.
    const purge = new pg.Client({ connectionString: (ctx.app.database as unknown as { url: string }).url });
    await purge.connect();
    try {
      await purge.query('begin');
      await purge.query('select 1 from campaign_sends where id = $1 for update', [parked!.id]);
      const reconnect = connectedMailbox(ctx.app, ctx.owner.token, PURGING, { sync: true });
      // The reconnect's transaction has committed; its release waits for the parked send's row.
      // (Before: the release ran inside that transaction, which held the mailbox's row — and the
      // purge's next statement and the reconnect waited for each other: "deadlock detected".)
      await new Promise((resolve) => setTimeout(resolve, 500));
      await purge.query(
        `insert into mailbox_purged_sends (workspace_id, mailbox_id, minute, sends) values ($1, $2, date_trunc('minute', now()), 1)
         on conflict (mailbox_id, minute, workspace_id) do update set sends = mailbox_purged_sends.sends + 1`,
        [ctx.owner.workspaceId, box.id],
      );
      await purge.query('rollback');
      expect(await reconnect).toMatchObject({ id: box.id, status: 'active' });
    } finally {
      await purge.end();
    }
    const [due] = await stuckRows(campaignId);
    expect(due!.lease_expires_at.getTime()).toBeLessThanOrEqual(Date.now());
  });
});
