import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { GmailError } from '../../src/gmail/gmail-errors.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { NEEDS_RECONNECT } from '../../src/gmail/pacer.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Sends waiting in the pacer when their mailbox is disconnected leave it at once, taking nothing
 * (gmail/LIMITS-AND-SENDING.md): the store refuses a send of a mailbox marked deleted (migration
 * 0064), and the disconnect's `forget` wakes this process's waiting sends to ask. Before, the
 * disconnect's reset of the daily headroom made them wait for its recount until the last grant
 * was budgetClaimGraceMs old (10 s, the service's default, set here), then took quota, a pace slot
 * and a unit of the address's budget each, and only the send gate refused them (`halted`). Their
 * ledger rows end as at the gate: queued, the reservation given back, the campaign paused
 * `mailbox_disconnected` by the next tick.
 *
 * The same when Google refuses the mailbox's grant at another call (a sync, another process's
 * send; here a profile read): the mark needs_reconnect resets the headroom and wakes them the
 * same way, and the store refuses their new sends (migration 0065, "A refused grant" there). The
 * campaign is paused `mailbox_needs_reconnect` by the same pass.
 *
 * Paced at 20 sends a minute: of a round of three, the first goes at once and the others wait in
 * the pacer 3 s and 6 s.
 */
const ctx = useAppWithOwner({ pacer: { sendsPerMinute: 20, budgetClaimGraceMs: 10_000 } });
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));

beforeAll(async () => {
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

async function ledgerOf(campaignId: string) {
  return rowsOf<{ status: string; lease_owner: string | null; lease_expires_at: unknown; attempts: number }>(
    await ctx.app.database.db.execute(sql`
      select status::text as status, lease_owner, lease_expires_at, attempts from campaign_sends where campaign_id = ${campaignId}::uuid order by email`),
  );
}

/** What the mailbox's grants have taken: its quota and pace (mailbox_limits) and the address's daily budget. */
async function limitsOf(mailboxId: string) {
  const [row] = rowsOf<Record<string, unknown>>(
    await ctx.app.database.db.execute(sql`
      select l.quota_units, l.quota_at, l.send_tokens, l.send_at, a.budget_used as account_used
      from mailboxes m join mailbox_limits l on l.mailbox_id = m.id join mailbox_budget_accounts a on a.address = lower(m.email)
      where m.id = ${mailboxId}::uuid`),
  );
  return row;
}

/**
 * A campaign of three on a new mailbox, sent by a worker in one round: the first send goes, the
 * others wait in the pacer. Once Gmail has accepted the first, `change` happens to the mailbox.
 * What the limits were then, how long the pass took after the change, and the ledger's rows.
 */
async function waitingSendsMeet(name: string, change: (mailbox: { id: string }, email: string) => Promise<unknown>) {
  const email = `${name}-${Date.now().toString(36)}@acme.test`;
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, email, { sync: false });
  const people = await fx.audience(3, { prefix: name });
  const campaignId = await fx.launched(mailbox.id, `${name} while waiting`, people.map((p) => p.id));
  let accepted!: () => void;
  const firstAccepted = new Promise<void>((resolve) => (accepted = resolve));
  const worker = separateWorker(ctx.app, { workerId: `${name}-worker`, concurrency: 3, batchSize: 3, afterGmailAccepted: () => accepted() });
  const ticking = worker.tick();
  await firstAccepted;
  const before = await limitsOf(mailbox.id);
  expect(before).toMatchObject({ account_used: 1 });
  await change(mailbox, email);
  const changedAt = Date.now();
  expect(await ticking).toBe(1);
  return { email, mailbox, campaignId, worker, before, tookMs: Date.now() - changedAt, rows: await ledgerOf(campaignId) };
}

/** One sent, the other two as the gate leaves a send it stopped: queued, no lease, no attempt; one Gmail send. */
function expectOneSentTwoQueued(rows: Awaited<ReturnType<typeof ledgerOf>>, email: string) {
  expect(rows.filter((r) => r.status === 'sent')).toHaveLength(1);
  const unsent = rows.filter((r) => r.status !== 'sent');
  expect(unsent, JSON.stringify(rows)).toEqual(Array.from({ length: 2 }, () => ({ status: 'queued', lease_owner: null, lease_expires_at: null, attempts: 0 })));
  expect(ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: email })).toHaveLength(1);
}

const campaignOf = async (campaignId: string) => (await ctx.app.api('GET', `/api/campaigns/${campaignId}`, { token: ctx.owner.token })).body;

it('sends waiting in the pacer leave it at once when their mailbox is disconnected, take nothing, and their rows end as at the gate', { timeout: 30_000 }, async () => {
  const disconnect = async (mailbox: { id: string }) =>
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token })).status).toBe(204);
  const { email, mailbox, campaignId, worker, before, tookMs, rows } = await waitingSendsMeet('dw', disconnect);
  // Before: about 10 s (the recount's grace from the first send's grant), then a grant each.
  expect(tookMs).toBeLessThan(2_000);
  // No quota, pace or budget taken for them: the headroom stays as the disconnect reset it.
  expect(await limitsOf(mailbox.id)).toEqual({ ...before, account_used: null });
  expectOneSentTwoQueued(rows, email);
  await worker.tick();
  expect(await campaignOf(campaignId)).toMatchObject({ status: 'paused', statusReason: 'mailbox_disconnected' });
});

it('sends waiting in the pacer leave it at once when Google refuses their mailbox\'s grant elsewhere, take no pace or budget, and the campaign pauses', { timeout: 30_000 }, async () => {
  // Google stops accepting the grant; another call of the mailbox (its own client: no cached access token) learns it.
  const refuseGrant = async (mailbox: { id: string }, email: string) => {
    ctx.app.sandbox.control.revokeAccess(email);
    const current = { ...(await createMailboxesRepo(ctx.app.database.db).findByIdUnscoped(mailbox.id))!, accessTokenEnc: null, accessTokenExpiresAt: null };
    const refused = await ctx.app.services.mailboxes.withGmail(current, (api) => api.getProfile()).catch((error: unknown) => error);
    expect(refused).toMatchObject({ name: 'GmailError', kind: 'auth_revoked' });
  };
  const { email, mailbox, campaignId, before, tookMs, rows } = await waitingSendsMeet('gr', refuseGrant);
  // Before: about 10 s (the recount's grace from the first send's grant), then a grant each.
  expect(tookMs).toBeLessThan(2_000);
  // No pace slot or budget taken for them: the send bucket as the first send left it, the headroom
  // as the mark reset it. (Not the quota: the profile read took its own units.)
  const paceAndBudget = ({ send_tokens, send_at, account_used }: Record<string, unknown> = {}) => ({ send_tokens, send_at, account_used });
  expect(paceAndBudget(await limitsOf(mailbox.id))).toEqual({ ...paceAndBudget(before), account_used: null });
  expectOneSentTwoQueued(rows, email);
  expect(await campaignOf(campaignId)).toMatchObject({ status: 'paused', statusReason: 'mailbox_needs_reconnect' });
});

it('the pacer\'s refusal of a mailbox marked needs_reconnect marks nothing again: the caller\'s row may predate a reconnect that kept its grant', async () => {
  const email = `refusal-marks-nothing-${Date.now().toString(36)}@acme.test`;
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, email, { sync: false });
  // The pacer refused a send (it read the mailbox marked), and a reconnect that kept its grant
  // (Google sent no new refresh token) committed before withGmail saw the refusal: the mailbox is
  // active again, with the grant the caller's copy holds. Marking now would flip it back.
  const row = (await createMailboxesRepo(ctx.app.database.db).findByIdUnscoped(mailbox.id))!;
  const refusal = new GmailError('auth_revoked', 'The mailbox needs reconnecting', { reason: NEEDS_RECONNECT });
  const outcome = await ctx.app.services.mailboxes.withGmail(row, async () => Promise.reject(refusal)).catch((error: unknown) => error);
  expect(outcome).toBe(refusal);
  const [now] = rowsOf<{ status: string; events: number }>(
    await ctx.app.database.db.execute(sql`
      select status::text as status, (select count(*)::int from webhook_events where type = 'mailbox.needs_reconnect' and data->>'mailboxId' = ${mailbox.id}) as events
      from mailboxes where id = ${mailbox.id}::uuid`),
  );
  expect(now).toEqual({ status: 'active', events: 0 });
});
