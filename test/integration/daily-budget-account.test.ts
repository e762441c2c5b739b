import { sql } from 'drizzle-orm';
import { expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * Gmail's daily limit is the Google account's, so the daily budget is the address's, not the
 * mailbox record's (an attacker's finding: it counted messages.mailbox_id and kept its headroom
 * per record). A disconnect and a connect of the same address make a new record, and one address
 * can be connected in several workspaces: each record sent a full budget. Counted where it
 * matters, in the Gmail sandbox's Sent. Migration 0054.
 */

// A recount waits this long for granted sends to be claimed (10 s in service).
const ctx = useAppWithOwner({ env: { GMAIL_DAILY_BUDGET_WORKSPACE: '3', GMAIL_DAILY_BUDGET_CONSUMER: '3' }, pacer: { budgetClaimGraceMs: 1_000 } });
const db = () => ctx.app.database.db;

const sentFrom = (address: string) => ctx.app.sandbox.control.listMessages(address, { labelId: 'SENT' }).length;
const send = (token: string, mailboxId: string, subject: string) =>
  ctx.app.api('POST', '/api/messages', { token, json: { mailboxId, to: 'bob-account@contoso.test', subject, text: 'x' } });
const listed = async (token: string, mailboxId: string) =>
  (await ctx.app.api('GET', '/api/mailboxes', { token })).body.mailboxes.find((m: { id: string }) => m.id === mailboxId);

it('a disconnect and a connect of the same address start no new budget: the new record counts what the old one sent', async () => {
  ctx.app.sandbox.control.createMailbox({ email: 'bob-account@contoso.test' });
  const address = 'reconnect-budget@acme.test';
  const first = await connectedMailbox(ctx.app, ctx.owner.token, address);
  for (let i = 0; i < 3; i += 1) expect((await send(ctx.owner.token, first.id, `r${i}`)).status).toBe(201);
  expect((await send(ctx.owner.token, first.id, 'r-over')).status).toBe(429);
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${first.id}`, { token: ctx.owner.token })).status).toBe(204);

  // Connected again in any case (the address in another case too: Gmail's account is the same).
  const again = await connectedMailbox(ctx.app, ctx.owner.token, 'Reconnect-Budget@acme.test');
  expect(again.id).not.toBe(first.id);
  expect((await listed(ctx.owner.token, again.id)).sentToday).toBe(3);
  const refused = await send(ctx.owner.token, again.id, 'r-after');
  expect(refused.status).toBe(429);
  expect(sentFrom(address)).toBe(3);
}, 60_000);

it('one address connected in two workspaces sends its budget once, in parallel too; each workspace sees only its own sends', async () => {
  const address = 'two-workspaces@acme.test';
  const a = await connectedMailbox(ctx.app, ctx.owner.token, address);
  const other = await signUp(ctx.app);
  const b = await connectedMailbox(ctx.app, other.token, address);
  // Two from B first, then both at once: the grants of both records are taken one at a time.
  for (let i = 0; i < 2; i += 1) expect((await send(other.token, b.id, `b${i}`)).status).toBe(201);
  const statuses = await Promise.all([
    ...Array.from({ length: 3 }, (_, i) => send(ctx.owner.token, a.id, `a${i}`)),
    ...Array.from({ length: 3 }, (_, i) => send(other.token, b.id, `b-parallel${i}`)),
  ]);
  expect(sentFrom(address)).toBe(3);
  expect(statuses.filter((r) => r.status === 201)).toHaveLength(1);
  // What workspace A learns: the account's budget is used up. Not how much B sent, nor any number.
  for (const refused of statuses.filter((r) => r.status === 429)) {
    expect(refused.body.error.code).toBe('too_many_requests');
    expect(refused.body.error.message).not.toMatch(/\d/);
  }
  const sentByA = statuses.slice(0, 3).filter((r) => r.status === 201).length;
  expect((await listed(ctx.owner.token, a.id)).sentToday).toBe(sentByA);
  expect((await listed(other.token, b.id)).sentToday).toBe(3 - sentByA);
}, 60_000);

it("a workspace's budget limits its own sends, never another workspace's; the account sends at most the highest; the rows go with their records", async () => {
  const address = 'own-budget@acme.test';
  const a = await connectedMailbox(ctx.app, ctx.owner.token, address);
  const other = await signUp(ctx.app);
  const b = await connectedMailbox(ctx.app, other.token, address);
  // An admin of B (who need not own the Gmail account) sets 1: B sends one, A is not throttled
  // (0054 applied the lowest budget of any workspace to all: A's second send was refused).
  expect((await ctx.app.api('PATCH', `/api/mailboxes/${b.id}`, { token: other.token, json: { dailyBudget: 1 } })).status).toBe(200);
  expect((await send(ctx.owner.token, a.id, 'own0')).status).toBe(201);
  expect((await send(other.token, b.id, 'own1')).status).toBe(201);
  expect((await send(other.token, b.id, 'own2')).status).toBe(429);
  expect((await send(ctx.owner.token, a.id, 'own3')).status).toBe(201);
  // The account's budget (the highest set on a live record: 3) counts both workspaces' sends.
  expect((await send(ctx.owner.token, a.id, 'own4')).status).toBe(429);
  expect(sentFrom(address)).toBe(3);
  expect((await listed(ctx.owner.token, a.id)).sentToday).toBe(2);
  expect((await listed(other.token, b.id)).sentToday).toBe(1);

  // Purged, both records: nothing is kept about the address, in the account's row or a workspace's.
  const rows = async () =>
    rowsOf<{ accounts: number; workspaces: number }>(
      await db().execute(sql`select (select count(*)::int from mailbox_budget_accounts where address = ${address}) as accounts,
        (select count(*)::int from mailbox_budget_workspaces where address = ${address}) as workspaces`),
    )[0]!;
  expect(await rows()).toEqual({ accounts: 1, workspaces: 2 });
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${b.id}`, { token: other.token })).status).toBe(204);
  expect((await ctx.app.api('DELETE', `/api/mailboxes/${a.id}`, { token: ctx.owner.token })).status).toBe(204);
  await db().execute(sql`update mailboxes set purge_after = now() - interval '1 minute' where id = ${b.id}`);
  expect((await ctx.app.services.purge.runOnce()).mailbox).toBe(1);
  expect(await rows()).toEqual({ accounts: 1, workspaces: 1 });
  await db().execute(sql`update mailboxes set purge_after = now() - interval '1 minute' where lower(email) = ${address}`);
  expect((await ctx.app.services.purge.runOnce()).mailbox).toBe(1);
  expect(await rows()).toEqual({ accounts: 0, workspaces: 0 });
}, 60_000);
