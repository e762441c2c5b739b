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

describe('MailboxPacer: a mailbox disconnected while its sends wait (SQL store)', () => {
  it('tells its waiting sends at once that the mailbox is gone, taking no quota, pace or budget', async () => {
    const clock = new VirtualClock(sqlStore.make);
    const pacer = clock.pacer({ sendsPerMinute: 60, budgetClaimGraceMs: 10_000 });
    const [a] = await sqlStore.mailboxes(1);
    const ran: number[] = [];
    const send = () =>
      pacer.run(a!, 100, async () => void ran.push(clock.time), SEND).then(
        () => 'sent',
        (error: unknown) => (error instanceof GmailError ? `${error.reason}@${clock.time}` : error),
      );
    const first = clock.drive(send());
    expect(await first).toBe('sent');
    const before = await limitsOf(a!);
    const outcomes = await clock.drive(
      Promise.all([
        // Waiting for the pace until 1 s, then the one behind it until 2 s.
        send(),
        send(),
        clock.at(500, () =>
          clock.work(async () => {
            await disconnect(a!);
            await pacer.forget(a!);
            return 'disconnected';
          }),
        ),
      ]),
    );
    expect(outcomes).toEqual(['mailbox_gone@500', 'mailbox_gone@500', 'disconnected']);
    expect(ran).toEqual([0]);
    // Nothing taken for them: the pace slot and quota as the first send left them, and no unit of
    // the budget (forget reset it to be counted again; no grant since).
    const after = await limitsOf(a!);
    expect(after).toEqual({ ...before, used: null });
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
