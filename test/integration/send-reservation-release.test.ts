import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import type { SendWorkerDeps } from '../../src/campaigns/send-worker.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A send the worker reserved (its row `queued`, the worker's lease_owner, 240 s) and that leaves
 * the worker without a claim gives its reservation back at once (SEND-LEDGER.md, "Reservation"
 * and "Shutdown"): refused before the gate, stopped at the gate, or still waiting in the pacer
 * when stop() comes. Until then such a row stayed reserved for the whole lease, so after a
 * deploy's SIGTERM no other worker could take it for four minutes. A send waiting in the pacer
 * also leaves it at once on stop(), taking no grant (quota, pace, daily budget): it used to wait
 * for its grant, spend it, and only then be refused at the gate, past the shutdown grace.
 *
 * Every mailbox is paced here at 20 sends a minute: of a round of three, the first send goes at
 * once and the others wait in the pacer 3 s and 6 s — the time the tests act in (the first send's
 * accepted answer says the others are waiting: the pace holds them at least 3 s after it).
 */
const ctx = useAppWithOwner({ pacer: { sendsPerMinute: 20 } });
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const LEASE_MS = 240_000;

beforeAll(async () => {
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

/** A campaign of `n` from a mailbox of its own (the pace and a 429's pause are a mailbox's). */
async function campaignOf(n: number, name: string) {
  const email = `${name}-${Date.now().toString(36)}@acme.test`;
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, email, { sync: false });
  const people = await fx.audience(n, { prefix: name });
  const campaignId = await fx.launched(mailbox.id, `Release ${name}`, people.map((p) => p.id));
  return { email, mailboxId: mailbox.id, campaignId };
}

const worker = (workerId: string, overrides: Partial<SendWorkerDeps> = {}) =>
  separateWorker(ctx.app, { workerId, leaseMs: LEASE_MS, concurrency: 3, batchSize: 3, ...overrides });

/** A worker whose first accepted send resolves `firstAccepted`: the round's other sends wait in the pacer then. */
function watchedWorker(workerId: string) {
  let accepted!: () => void;
  const firstAccepted = new Promise<void>((resolve) => (accepted = resolve));
  return { firstAccepted, w: worker(workerId, { afterGmailAccepted: () => accepted() }) };
}

async function leases(campaignId: string) {
  return rowsOf<{ id: string; status: string; lease_owner: string | null; lease_expires_at: unknown; attempts: number }>(
    await ctx.app.database.db.execute(sql`
      select id, status, lease_owner, lease_expires_at, attempts from campaign_sends where campaign_id = ${campaignId}::uuid order by email`),
  );
}

/** Rows another worker can reserve now: the given-back ones (a reservation still held is not among them). */
async function takenByAnother(campaignId: string) {
  const campaign = (await createCampaignsRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, campaignId))!;
  const t = new Date();
  return createSendLedgerRepo(ctx.app.database.db).reserveDue(campaign, 'another-worker', 10, t, new Date(t.getTime() + LEASE_MS));
}

const released = (r: { status: string; lease_owner: string | null; lease_expires_at: unknown }) =>
  r.status === 'queued' && r.lease_owner === null && r.lease_expires_at === null;

it('a send refused before the gate (its mailbox\'s grant revoked) gives its reservation back', { timeout: 30_000 }, async () => {
  const { email, campaignId } = await campaignOf(2, 'dead-token');
  ctx.app.sandbox.control.revokeAccess(email);
  ctx.app.sandbox.control.expireAccessTokens(email);
  expect(await worker('dead-token-worker').tick()).toBe(0);
  expect(await fx.campaignStatus(campaignId)).toBe('paused');
  const rows = await leases(campaignId);
  // The first send, claimed, meets the expired access token (401) and then the dead grant: requeued
  // (auth_revoked). The second, behind it in the pacer, fails to refresh the token before its
  // gate: never claimed. Neither is left held.
  expect(rows.map((r) => r.attempts).sort()).toEqual([0, 1]);
  expect(rows.every(released), JSON.stringify(rows)).toBe(true);
});

it('a send refused before the gate (the mailbox paused by a 429 for longer than the worker waits) gives its reservation back', { timeout: 30_000 }, async () => {
  const { email, campaignId } = await campaignOf(2, 'long-pause');
  // The first send's 429 pauses the mailbox 60 s, longer than the pacer waits in-process (5 s
  // here): it is requeued for then. The second, waiting for the pace, is refused by the pause.
  ctx.app.sandbox.control.injectFault({ kind: 'rateLimit', endpoint: 'send', mailbox: email, retryAfterSeconds: 60, times: 1 });
  expect(await worker('long-pause-worker', { concurrency: 2, batchSize: 2 }).tick()).toBe(0);
  const rows = await leases(campaignId);
  expect(rows.map((r) => r.attempts).sort()).toEqual([0, 1]);
  // Both queued, neither held: the requeued one (claimed, then refused by Gmail) and the one never claimed.
  expect(rows.every(released), JSON.stringify(rows)).toBe(true);
  expect(ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: email })).toHaveLength(1);
});

it('sends stopped at the gate (the campaign paused while they waited in the pacer) give their reservations back', { timeout: 30_000 }, async () => {
  const { campaignId } = await campaignOf(3, 'halted');
  const { firstAccepted, w } = watchedWorker('halted-worker');
  const ticking = w.tick();
  await firstAccepted;
  const paused = await ctx.app.api('POST', `/api/campaigns/${campaignId}/pause`, { token: ctx.owner.token, json: {} });
  expect(paused.status, paused.text).toBe(200);
  expect(await ticking).toBe(1);
  const rows = await leases(campaignId);
  expect(rows.filter((r) => r.status === 'sent')).toHaveLength(1);
  const unsent = rows.filter((r) => r.status !== 'sent');
  expect(unsent).toHaveLength(2);
  expect(unsent.every(released), JSON.stringify(rows)).toBe(true);
  expect(unsent.every((r) => r.attempts === 0)).toBe(true);
});

/** What the mailbox's grants have taken: its quota and pace (mailbox_limits) and its daily budget (the address's and the workspace's). */
async function limitsOf(mailboxId: string) {
  const [row] = rowsOf<Record<string, unknown>>(
    await ctx.app.database.db.execute(sql`
      select l.quota_units, l.quota_at, l.send_tokens, l.send_at, a.budget_used as account_used, w.budget_used as workspace_used
      from mailboxes m join mailbox_limits l on l.mailbox_id = m.id
      join mailbox_budget_accounts a on a.address = lower(m.email)
      join mailbox_budget_workspaces w on w.address = lower(m.email) and w.workspace_id = m.workspace_id
      where m.id = ${mailboxId}::uuid`),
  );
  return row;
}

it('stop() takes the sends waiting in the pacer out of it at once: the pass ends, they take no grant, their reservations go back', { timeout: 30_000 }, async () => {
  const { email, mailboxId, campaignId } = await campaignOf(3, 'stop-in-pacer');
  const { firstAccepted, w } = watchedWorker('stop-in-pacer-worker');
  let passEnded = false;
  const ticking = w.tick().finally(() => (passEnded = true));
  await firstAccepted;
  const waiting = (await leases(campaignId)).filter((r) => r.status === 'queued');
  expect(waiting).toHaveLength(2);
  expect(waiting.every((r) => r.lease_owner === 'stop-in-pacer-worker')).toBe(true);
  // The first send's grant is taken; the other two wait for the pace (3 s and 6 s after it), taking nothing.
  const atStop = await limitsOf(mailboxId);
  expect(atStop).toMatchObject({ account_used: 1, workspace_used: 1 });

  // A deploy's shutdown grace longer than the pace's next grant: stop() returns once the pass has
  // ended, and it ends at once (the waiting sends leave the pacer), not after the pacer's waits.
  const stoppedAt = Date.now();
  await w.stop(5_000);
  // Not 1 s: this file runs beside another on 2 cores, where stop()'s own statements (its release)
  // can take that long. A stop that waited in the pacer would end at the last send's turn, 6 s after
  // the first's grant, some 5 s from here: 2.5 s still tells the two apart.
  expect(Date.now() - stoppedAt).toBeLessThan(2_500);
  expect(passEnded).toBe(true);
  expect(await ticking).toBe(1);
  expect(await limitsOf(mailboxId)).toEqual(atStop);
  const rows = await leases(campaignId);
  expect(rows.filter((r) => r.status === 'sent')).toHaveLength(1);
  expect(rows.filter((r) => r.status !== 'sent').every((r) => released(r) && r.attempts === 0), JSON.stringify(rows)).toBe(true);

  // Nothing of the stopped worker is left in the pacer to take a grant later: a send asking after
  // the stop (a retry's, holding its budget unit already) is served next, at the pace's next slot,
  // and the budget is still the first send's alone.
  const later = await ctx.app.services.pacer.run(mailboxId, 100, () => limitsOf(mailboxId), { send: true, alreadyCounted: () => true });
  expect(later).toMatchObject({ account_used: 1, workspace_used: 1 });
  expect(ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: email })).toHaveLength(1);
  // Another worker takes them at once, not after the stopped worker's lease.
  expect((await takenByAnother(campaignId)).map((c) => c.id).sort()).toEqual(waiting.map((r) => r.id).sort());
});

it('a shutdown gives back more reservations than a statement has parameters (one per sending mailbox\'s batch)', { timeout: 60_000 }, async () => {
  const { campaignId } = await campaignOf(2, 'many-mailboxes');
  const campaign = (await createCampaignsRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, campaignId))!;
  const ledger = createSendLedgerRepo(ctx.app.database.db);
  const t = new Date();
  const held = await ledger.reserveDue(campaign, 'many-worker', 2, t, new Date(t.getTime() + LEASE_MS));
  expect(held).toHaveLength(2);
  // What stop() hands over when some 1,400 mailboxes each have a batch of 50 reserved: 70,000
  // ids, past the protocol's 65,535 parameters. The others' rows are elsewhere; ids suffice.
  const others = Array.from({ length: 70_000 - held.length }, (_, i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`);
  await ledger.releaseReservations('many-worker', [...others, ...held.map((c) => c.id)]);
  const rows = await leases(campaignId);
  expect(rows.every(released), JSON.stringify(rows)).toBe(true);
});
