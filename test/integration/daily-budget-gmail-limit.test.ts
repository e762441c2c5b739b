import { sql } from 'drizzle-orm';
import { expect, it } from 'vitest';
import { GMAIL_DAILY_SEND_LIMITS } from '../../src/config/schema.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * No daily budget above Gmail's own sending limit (2,000 a day for Google Workspace, 500 for
 * consumer Gmail). The account's budget is the highest set on any of its live records, in any
 * workspace (migration 0055), and PATCH /api/mailboxes/:id took up to 10,000: an admin of any
 * workspace could raise the account's ceiling past what Gmail allows. Now the API refuses it, and a
 * budget stored before is counted at the limit (migration 0059).
 */
const ctx = useAppWithOwner({ pacer: { budgetClaimGraceMs: 0 } });
const db = () => ctx.app.database.db;

const patch = (id: string, dailyBudget: unknown) => ctx.app.api('PATCH', `/api/mailboxes/${id}`, { token: ctx.owner.token, json: { dailyBudget } });
const listed = async (id: string) => (await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token })).body.mailboxes.find((m: { id: string }) => m.id === id);
const storedBudget = async (id: string) => rowsOf<{ daily_budget: number }>(await db().execute(sql`select daily_budget from mailboxes where id = ${id}::uuid`))[0]!.daily_budget;

function expectRefused(res: { status: number; body: any }) {
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe('validation_failed');
  expect(res.body.error.details).toEqual([
    { field: 'dailyBudget', message: "must be at most Gmail's daily sending limit: 2000 for a Google Workspace account, 500 for consumer Gmail" },
  ]);
}

it('refuses a budget above the Gmail limit of the mailbox’s kind with 400 validation_failed naming dailyBudget, and changes nothing', async () => {
  const workspace = await connectedMailbox(ctx.app, ctx.owner.token, `limit-${Date.now()}@acme.test`);
  const consumer = await connectedMailbox(ctx.app, ctx.owner.token, `limit-${Date.now()}@gmail.com`);
  expect((await patch(workspace.id, 1_500)).status).toBe(200);
  expect((await patch(consumer.id, 300)).status).toBe(200);

  for (const over of [2_001, 10_000]) expectRefused(await patch(workspace.id, over));
  for (const over of [501, 2_000, 10_000]) expectRefused(await patch(consumer.id, over));
  expect(await storedBudget(workspace.id)).toBe(1_500);
  expect(await storedBudget(consumer.id)).toBe(300);

  // The limits themselves are allowed.
  expect((await patch(workspace.id, 2_000)).body.dailyBudget).toBe(2_000);
  expect((await patch(consumer.id, 500)).body.dailyBudget).toBe(500);
});

it('counts the budget at the limits the API refuses above', async () => {
  const [limits] = rowsOf<{ workspace: number; consumer: number }>(
    await db().execute(sql`select mailbox_gmail_daily_limit('workspace') as workspace, mailbox_gmail_daily_limit('consumer') as consumer`),
  );
  expect(limits).toEqual(GMAIL_DAILY_SEND_LIMITS);
});

it('an old budget stored above the limit is counted at the limit: a consumer account that sent 500 today sends no more', async () => {
  const address = `old-oversized-${Date.now()}@gmail.com`;
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, address);
  // As a PATCH of 10,000 stored it before the refusal (0055 reads the highest of the account's records).
  await db().execute(sql`update mailboxes set daily_budget = 10000 where id = ${mailbox.id}::uuid`);
  // 500 sends in the last hours, as Gmail counts them (outbound rows of the address).
  await db().execute(sql`
    insert into messages (workspace_id, mailbox_id, direction, status, from_address, to_addresses, at)
    select workspace_id, id, 'outbound', 'sent', email, array['someone@contoso.test'], now() - interval '2 hours'
    from mailboxes, generate_series(1, 500) where id = ${mailbox.id}::uuid`);
  ctx.app.sandbox.control.createMailbox({ email: 'someone@contoso.test' });

  const refused = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: 'someone@contoso.test', subject: 'the 501st', text: 'x' } });
  expect(refused.status, refused.text).toBe(429);
  expect(ctx.app.sandbox.control.listMessages(address, { labelId: 'SENT' })).toHaveLength(0);
  expect(await listed(mailbox.id)).toMatchObject({ dailyBudget: 500, sentToday: 500 });
  const [left] = rowsOf<{ n: number }>(await db().execute(sql`select mailbox_budget_left(${mailbox.id}::uuid, now() - interval '24 hours') as n`));
  expect(Number(left!.n)).toBe(0);
});
