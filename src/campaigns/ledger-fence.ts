import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/*
 * The fence every change of a `sending` ledger row passes (see SEND-LEDGER.md,
 * "Fencing"): (status, lease owner, attempt). A worker whose lease was taken over changes
 * nothing, so a late answer never overwrites a newer outcome.
 */

/** The fence of a claimed send: who holds it, for which attempt, and its messages row. */
export interface SendLease {
  id: string;
  owner: string;
  attempt: number;
  messageRowId: string;
}

export const ts = (at: Date) => sql`${at.toISOString()}::timestamptz`;

/** SQL: the ledger row this lease still holds. */
export const fence = (lease: SendLease) =>
  sql`id = ${lease.id}::uuid and status = 'sending' and lease_owner = ${lease.owner} and attempts = ${lease.attempt}`;

/**
 * One statement: the fenced change of the ledger row, then `alsoDo` (CTEs that act only
 * `where exists (select 1 from ledger)`). True when the lease still held.
 */
export async function changeLeasedSend(db: Db, lease: SendLease, set: SQL, alsoDo: SQL = sql``): Promise<boolean> {
  const [row] = rowsOf<{ n: number }>(
    await db.execute(sql`
      with ledger as (update campaign_sends set ${set} where ${fence(lease)} returning id, workspace_id, campaign_id, step, contact_id, email, message_id)${alsoDo}
      select count(*)::int as n from ledger`),
  );
  return Number(row?.n ?? 0) > 0;
}
