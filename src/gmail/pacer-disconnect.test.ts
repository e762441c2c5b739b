import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { VirtualClock, usePacerStores } from '../../test/helpers/pacer-harness.js';
import { rowsOf } from '../db/pg-array.js';
import { GmailError } from './gmail-errors.js';

/*
 * A mailbox disconnected while its sends wait in the pacer (on the SQL store: a disconnect marks
 * the row deleted, and the memory store knows no rows). The disconnect resets the address's daily
 * headroom (`forget`), whose recount waits until the last grant is budgetClaimGraceMs old: before,
 * a waiting send sat out that grace, was granted — quota, a pace slot and a unit of the address's
 * budget — and only the send gate refused it. Sends paced at 60 a minute: one a second.
 */

const harness = usePacerStores();
const sqlStore = harness.stores.find((store) => store.name === 'SQL store')!;
const SEND = { send: true } as const;

/** What a disconnect does to the row (mailbox-revocation.ts): marked deleted, kept until the purge. The pacer is told after (`forget`). */
const disconnect = (mailboxId: string) =>
  harness.db().db.execute(sql`update mailboxes set deleted_at = now(), purge_after = now() + interval '30 days' where id = ${mailboxId}::uuid`);

async function limitsOf(mailboxId: string) {
  const [row] = rowsOf<{ used: number | null; granted_at: string | null; send_tokens: number; quota_units: number }>(
    await harness.db().db.execute(sql`
      select a.budget_used as used, a.budget_granted_at::text as granted_at, l.send_tokens, l.quota_units
      from mailboxes m join mailbox_budget_accounts a on a.address = lower(m.email) join mailbox_limits l on l.mailbox_id = m.id
      where m.id = ${mailboxId}::uuid`),
  );
  return row;
}

/**
 * A mailbox's first send goes at once; two more wait for the pace (until 1 s, then 2 s); at 0.5 s
 * `change` happens to the mailbox and the pacer is told (`forget`). Each send's outcome (`sent`, or
 * the refusal's kind:reason@time), the times the granted work ran, and the limits before and after.
 */
async function waitingSendsMeet(change: (mailboxId: string) => Promise<unknown>) {
  const clock = new VirtualClock(sqlStore.make);
  const pacer = clock.pacer({ sendsPerMinute: 60, budgetClaimGraceMs: 10_000 });
  const [a] = await sqlStore.mailboxes(1);
  const ran: number[] = [];
  const send = () =>
    pacer.run(a!, 100, async () => void ran.push(clock.time), SEND).then(
      () => 'sent',
      (error: unknown) => (error instanceof GmailError ? `${error.kind}:${error.reason}@${clock.time}` : error),
    );
  expect(await clock.drive(send())).toBe('sent');
  const before = await limitsOf(a!);
  const told = () => clock.work(async () => void (await change(a!), await pacer.forget(a!)));
  const outcomes = await clock.drive(Promise.all([send(), send(), clock.at(500, told)]));
  return { clock, pacer, mailboxId: a!, outcomes: outcomes.slice(0, 2), ran, before, after: await limitsOf(a!) };
}

describe('MailboxPacer: a mailbox disconnected, or its grant refused, while its sends wait (SQL store)', () => {
  it('tells its waiting sends at once that the mailbox is gone, taking no quota, pace or budget', async () => {
    const { outcomes, ran, before, after } = await waitingSendsMeet(disconnect);
    expect(outcomes).toEqual(['permanent:mailbox_gone@500', 'permanent:mailbox_gone@500']);
    expect(ran).toEqual([0]);
    // Nothing taken for them: the pace slot and quota as the first send left them, and no unit of
    // the budget (forget reset it to be counted again; no grant since).
    expect(after).toEqual({ ...before, used: null });
  });

  it('tells its waiting sends at once that the mailbox needs reconnecting when Google refused its grant (marked needs_reconnect), taking nothing', async () => {
    // What withGmail does when Google refuses the grant (mailbox-access.ts): the row marked, then forget.
    const markNeedsReconnect = (mailboxId: string) => harness.db().db.execute(sql`update mailboxes set status = 'needs_reconnect' where id = ${mailboxId}::uuid`);
    const { clock, pacer, mailboxId, outcomes, ran, before, after } = await waitingSendsMeet(markNeedsReconnect);
    expect(outcomes).toEqual(['auth_revoked:needs_reconnect@500', 'auth_revoked:needs_reconnect@500']);
    expect(ran).toEqual([0]);
    expect(after).toEqual({ ...before, used: null });
    // A claimed send's retry is still granted (its gate's re-check hands its row back).
    expect(await clock.drive(pacer.run(mailboxId, 100, async () => 'retried', { ...SEND, alreadyCounted: () => true }))).toBe('retried');
  });

  it('still grants a claimed send\'s retry (it holds its unit of the budget): its gate\'s re-check hands its claimed row back', async () => {
    const clock = new VirtualClock(sqlStore.make);
    const pacer = clock.pacer({ sendsPerMinute: 60, budgetClaimGraceMs: 10_000 });
    const [a] = await sqlStore.mailboxes(1);
    await clock.work(() => disconnect(a!));
    // A retry never waits for the recount's grace; refused here, its `sending` row would be recorded a failure.
    expect(await clock.drive(pacer.run(a!, 100, async () => clock.time, { ...SEND, alreadyCounted: () => true }))).toBe(0);
    // A new send of it is refused, taking nothing.
    const refused = await clock.drive(pacer.run(a!, 100, async () => clock.time, SEND).catch((error: GmailError) => error.reason));
    expect(refused).toBe('mailbox_gone');
  });
});
