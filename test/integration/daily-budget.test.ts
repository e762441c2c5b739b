import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { messages } from '../../src/db/schema.js';
import { createSqlLimitStore } from '../../src/gmail/limit-store.js';
import { MailboxPacer } from '../../src/gmail/pacer.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A mailbox's daily budget is a promise to its owner (set below Gmail's limit): within 24 h it
 * sends at most that many messages, however the sends reach the pacer — a campaign worked by
 * several processes at once, or 1:1 mail sent in parallel. Both claim a send (its `sending`
 * row) only after the pacer granted it, so the budget cannot rely on the row being counted
 * (migration 0023). Counted where it matters: in the Gmail sandbox.
 */

// A recount waits this long for granted sends to be claimed (10 s in service; 1 s here: a claim slower than that on a loaded machine would fail the test loudly, never pass it wrongly).
const CLAIM_GRACE_MS = 1_000;
const ctx = useAppWithOwner({ pacer: { budgetClaimGraceMs: CLAIM_GRACE_MS } });
const db = () => ctx.app.database.db;
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));

beforeAll(async () => {
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

async function mailboxWithBudget(email: string, dailyBudget: number) {
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, email);
  const patched = await ctx.app.api('PATCH', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token, json: { dailyBudget } });
  expect(patched.body.dailyBudget).toBe(dailyBudget);
  return mailbox;
}

const sentToday = async (mailboxId: string) =>
  (await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token })).body.mailboxes.find((m: { id: string }) => m.id === mailboxId).sentToday;

describe('the daily budget', () => {
  it('a campaign larger than the budget, worked by two processes at once: exactly the budget goes out, the rest waits queued', async () => {
    const sender = 'budget-campaign@acme.test';
    const mailbox = await mailboxWithBudget(sender, 3);
    const contacts = await fixtures.audience(8, { prefix: 'budget' });
    const campaignId = await fixtures.launched(mailbox.id, 'Budget news', contacts.map((c) => c.id));
    // Two processes: each its own pacer (no pace: a round asks as one group), sharing the limits row.
    const processPacer = () =>
      new MailboxPacer({ store: createSqlLimitStore(ctx.app.database.db), baseDelayMs: 5, maxDelayMs: 5_000, unitsPerMinute: 1e9, budgetClaimGraceMs: CLAIM_GRACE_MS });
    const workers = [separateWorker(ctx.app, { pacer: processPacer() }), separateWorker(ctx.app, { pacer: processPacer() })];

    await Promise.all(workers.map((w) => w.tick()));
    await Promise.all(workers.map((w) => w.runUntilIdle()));

    const sent = fixtures.sentTo(sender, 'Budget news');
    expect([...sent.values()].reduce((a, b) => a + b, 0)).toBe(3);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    const ledger = await fixtures.ledger(campaignId);
    expect(ledger.filter((r) => r.status === 'sent')).toHaveLength(3);
    // Not failed, not skipped: they go out when the 24 h window makes room.
    expect(ledger.filter((r) => r.status === 'queued')).toHaveLength(5);
    expect(await fixtures.campaignStatus(campaignId)).toBe('sending');
    expect(await sentToday(mailbox.id)).toBe(3);
  });

  it('1:1 mail sent in parallel: exactly the budget goes out, the others get 429', async () => {
    const sender = 'budget-one@acme.test';
    const mailbox = await mailboxWithBudget(sender, 2);
    ctx.app.sandbox.control.createMailbox({ email: 'bob-budget@contoso.test' });
    const statuses = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const res = await ctx.app.api('POST', '/api/messages', {
          token: ctx.owner.token,
          json: { mailboxId: mailbox.id, to: 'bob-budget@contoso.test', subject: `Parallel ${i}`, text: 'x' },
        });
        return res.status;
      }),
    );
    expect(statuses.filter((s) => s === 201)).toHaveLength(2);
    expect(statuses.filter((s) => s === 429)).toHaveLength(2);
    expect(ctx.app.sandbox.control.listMessages(sender, { labelId: 'SENT' }).filter((m) => m.subject.startsWith('Parallel'))).toHaveLength(2);
    expect(await sentToday(mailbox.id)).toBe(2);
  });

  it('a budget change is one transaction: when resetting the pacer headroom fails, the budget stays as it was', async () => {
    const sender = 'budget-atomic@acme.test';
    const mailbox = await mailboxWithBudget(sender, 5);
    ctx.app.sandbox.control.createMailbox({ email: 'dave-budget@contoso.test' });
    const send = (i: number) =>
      ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: 'dave-budget@contoso.test', subject: `Atomic ${i}`, text: 'x' } });
    expect((await send(1)).status).toBe(201);
    const state = async () =>
      rowsOf<{ daily_budget: number; budget_used: number | null }>(
        await db().execute(
          sql`select m.daily_budget, a.budget_used from mailboxes m join mailbox_budget_accounts a on a.address = lower(m.email) where m.id = ${mailbox.id}`,
        ),
      )[0];
    // The pacer's headroom (the address's, migration 0054): one used of the budget of 5.
    expect(await state()).toEqual({ daily_budget: 5, budget_used: 1 });
    // A real failure of the second write: a constraint (this address's headroom may not be reset) rejects it.
    await db().execute(sql.raw(`alter table mailbox_budget_accounts add constraint test_keep_headroom check (address <> '${sender}' or budget_used is not null) not valid`));
    try {
      const refused = await ctx.app.api('PATCH', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token, json: { dailyBudget: 1 } });
      expect(refused.status).toBe(500);
      // Not the new budget with the old headroom.
      expect(await state()).toEqual({ daily_budget: 5, budget_used: 1 });
    } finally {
      await db().execute(sql`alter table mailbox_budget_accounts drop constraint test_keep_headroom`);
    }
    const patched = await ctx.app.api('PATCH', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token, json: { dailyBudget: 1 } });
    expect(patched.body.dailyBudget).toBe(1);
    expect(await state()).toEqual({ daily_budget: 1, budget_used: null });
    expect((await send(2)).status).toBe(429);
  });

  it('a privacy purge of mail sent today (PURGE_AFTER_DAYS=0) gives no budget back: the sends stay counted, by minute, with nothing personal', async () => {
    const sender = 'budget-purge@acme.test';
    const mailbox = await mailboxWithBudget(sender, 2);
    const to = 'erin-budget@contoso.test';
    ctx.app.sandbox.control.createMailbox({ email: to });
    const api = (method: string, path: string, json?: unknown) => ctx.app.api(method, path, { token: ctx.owner.token, json });
    const contact = await api('POST', '/api/contacts', { email: to });
    const send = (i: number) => api('POST', '/api/messages', { mailboxId: mailbox.id, to, subject: `Purged ${i}`, text: 'x' });
    expect((await send(1)).status).toBe(201);
    expect((await send(2)).status).toBe(201);
    expect(await sentToday(mailbox.id)).toBe(2);

    // Deleted and purged at once: the two messages go with the contact.
    expect((await api('DELETE', `/api/contacts/${contact.body.id}`)).status).toBe(204);
    await db().execute(sql`update contacts set purge_after = now() - interval '1 minute' where id = ${contact.body.id}`);
    expect((await ctx.app.services.purge.runOnce()).contact).toBe(1);
    const left = async (query: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await db().execute(query))[0]!.n);
    expect(await left(sql`select count(*)::int as n from messages where mailbox_id = ${mailbox.id}`)).toBe(0);

    // Still two sent today, and counted again from scratch (a budget change resets the headroom) none is left.
    expect(await sentToday(mailbox.id)).toBe(2);
    expect((await api('PATCH', `/api/mailboxes/${mailbox.id}`, { dailyBudget: 2 })).status).toBe(200);
    expect((await send(3)).status).toBe(429);
    expect(ctx.app.sandbox.control.listMessages(sender, { labelId: 'SENT' }).filter((m) => m.subject.startsWith('Purged'))).toHaveLength(2);
    // What keeps them counted: a number per mailbox and minute.
    const kept = rowsOf<Record<string, unknown>>(await db().execute(sql`select * from mailbox_purged_sends where mailbox_id = ${mailbox.id}`));
    expect(kept.map((r) => Object.keys(r).sort())).toEqual(kept.map(() => ['mailbox_id', 'minute', 'sends', 'workspace_id']));
    expect(kept.reduce((sum, r) => sum + Number(r.sends), 0)).toBe(2);
  });

  it('a send whose outcome is unknown (Gmail may have taken it) counts against the budget', async () => {
    const sender = 'budget-unknown@acme.test';
    const mailbox = await mailboxWithBudget(sender, 2);
    ctx.app.sandbox.control.createMailbox({ email: 'carol-budget@contoso.test' });
    await ctx.app.database.db.insert(messages).values({
      workspaceId: ctx.owner.workspaceId,
      mailboxId: mailbox.id,
      direction: 'outbound',
      status: 'failed',
      errorCode: 'outcome_unknown',
      fromAddress: sender,
      toAddresses: ['carol-budget@contoso.test'],
    });
    expect(await sentToday(mailbox.id)).toBe(1);
    const send = (i: number) =>
      ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: 'carol-budget@contoso.test', subject: `Unknown ${i}`, text: 'x' } });
    expect((await send(1)).status).toBe(201);
    expect((await send(2)).status).toBe(429);
    expect(ctx.app.sandbox.control.listMessages(sender, { labelId: 'SENT' }).filter((m) => m.subject.startsWith('Unknown'))).toHaveLength(1);
  });
});
