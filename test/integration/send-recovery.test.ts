import { randomUUID } from 'node:crypto';
import { eq, inArray, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { UNSEARCHABLE_RECHECK_MS } from '../../src/campaigns/send-recovery.js';
import { campaignSends, campaigns, messages, recipients } from '../../src/db/schema.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { sendCountMismatches } from '../helpers/send-counts.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Invariant 3 for sends whose worker died, whatever became of their campaign or mailbox:
 * every send in flight is resolved by a mailbox search, and sends that cannot be searched
 * now (their mailbox waits to be reconnected) never hold up the others'. Recovery reads
 * the oldest expired leases first, 100 a pass (send-ledger.repo.ts expiredLeases).
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
const setMailboxStatus = (id: string, status: 'active' | 'needs_reconnect') =>
  db().execute(sql`update mailboxes set status = ${status}, status_reason = ${status === 'active' ? null : 'invalid_grant'} where id = ${id}::uuid`);
/** Gmail calls made for a sandbox mailbox so far (searches and sends alike). */
const gmailCalls = (mailbox: string) => ctx.app.sandbox.control.calls({ mailbox }).length;

/** A launched campaign of one contact whose worker died right after Gmail accepted its message: `sending`, lease of 2 s. */
async function crashedAfterGmail(subject: string) {
  const [person] = await fx.audience(1, { prefix: 'rec' });
  const campaignId = await fx.launched(healthy.id, subject, [person!.id]);
  const crashing = separateWorker(ctx.app, {
    leaseMs: 2_000,
    concurrency: 1,
    afterGmailAccepted: () => {
      throw new Error('process died');
    },
  });
  await crashing.tick();
  expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['sending']);
  expect(fx.sentTo(HEALTHY, subject).get(person!.email)).toBe(1);
  return { campaignId, person: person! };
}

/** `n` sends of a campaign from the stuck mailbox, claimed by a worker that died long ago. */
async function seedStuckSends(n: number): Promise<string> {
  const workspaceId = ctx.owner.workspaceId;
  const [campaign] = await db()
    .insert(campaigns)
    .values({ workspaceId, name: 'Stuck', kind: 'marketing', mailboxId: stuck.id, subject: 'Stuck', html: '<p>x</p>', audience: { contactIds: [] }, status: 'paused', statusReason: 'mailbox_needs_reconnect' })
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
        leaseOwner: 'dead-worker',
        // Older than any other expired lease: the front of expiredLeases' order.
        leaseExpiresAt: minutesAgo(15 - i / 1000),
      })),
    );
  return campaign!.id;
}

async function stuckRows(campaignId: string) {
  return rowsOf<{ status: string; attempts: number; resolve_looks: number; lease_expires_at: string | Date }>(
    await db().execute(sql`select status, attempts, resolve_looks, lease_expires_at from campaign_sends where campaign_id = ${campaignId}::uuid`),
  ).map((r) => ({ ...r, attempts: Number(r.attempts), resolve_looks: Number(r.resolve_looks), lease_expires_at: new Date(r.lease_expires_at) }));
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

  it('1:1 sends: those of a mailbox waiting to be reconnected do not hold up a healthy mailbox’s', async () => {
    const workspaceId = ctx.owner.workspaceId;
    await setMailboxStatus(stuck.id, 'needs_reconnect');
    const oneToOne = (mailboxId: string, from: string, leaseExpiresAt: Date) => ({
      workspaceId,
      mailboxId,
      direction: 'outbound' as const,
      status: 'sending' as const,
      rfc822MessageId: `${randomUUID()}@acme.test`,
      subject: 'R3 one to one',
      fromAddress: from,
      toAddresses: ['someone@contoso.test'],
      leaseOwner: 'dead-worker',
      leaseExpiresAt,
    });
    const stuckIds = (
      await db()
        .insert(messages)
        .values(Array.from({ length: MANY }, (_, i) => oneToOne(stuck.id, STUCK, minutesAgo(15 - i / 1000))))
        .returning({ id: messages.id })
    ).map((r) => r.id);
    // The healthy one went out before its worker died: the sandbox has it.
    const [mine] = await db().insert(messages).values(oneToOne(healthy.id, HEALTHY, minutesAgo(1))).returning();
    ctx.app.sandbox.control.createMailbox({ email: 'someone@contoso.test' });
    await ctx.app.sandbox.control.sendAs(HEALTHY, { to: 'someone@contoso.test', subject: 'R3 one to one', text: 'hi', messageId: `<${mine!.rfc822MessageId}>` });
    const stuckCalls = gmailCalls(STUCK);

    const status = async () => (await db().select().from(messages).where(eq(messages.id, mine!.id)))[0]!.status;
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
