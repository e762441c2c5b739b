import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/**
 * The lease on a mailbox's sync, in its `mailbox_limits` row: one sync per mailbox across
 * every process. A request that finds the lease taken leaves a note instead, and the holder
 * syncs once more before it lets go, so a push that arrives mid-sync is never lost. A process
 * that dies keeps the lease only until it expires.
 */
/**
 * Thrown inside a pass whose lease another process now holds (it expired: renewals failed for
 * its whole length, the process stalled): the pass stops before reading or writing more, so two
 * processes never go on syncing one mailbox side by side (each message counted twice, two
 * checkpoints written over each other).
 */
export class SyncLeaseLost extends Error {
  constructor() {
    super('the mailbox sync lease was taken by another process');
    this.name = 'SyncLeaseLost';
  }
}

export interface SyncLeases {
  /** This process's name on the leases it holds (mailbox_limits.sync_owner). */
  readonly owner: string;
  /** True when this process now holds the mailbox's sync lease (or already did). */
  acquire(mailboxId: string): Promise<boolean>;
  /** Extends a lease this process holds; false if it was lost (expired and taken). */
  renew(mailboxId: string): Promise<boolean>;
  /** Another process holds the lease: ask it to sync again when it is done. */
  request(mailboxId: string): Promise<void>;
  /** Lets go; true when someone asked for a sync after this one started (sync again). */
  release(mailboxId: string): Promise<boolean>;
  /** Shutdown: lets go of every lease this process holds, so that another process need not wait for them to expire. */
  releaseAll(): Promise<void>;
}


export function createSyncLeases(db: Db, owner: string, leaseMs = 120_000): SyncLeases {
  return {
    owner,

    async acquire(mailboxId) {
      const rows = rowsOf(
        await db.execute(sql`
          insert into mailbox_limits (mailbox_id, quota_units, quota_at, send_tokens, send_at, sync_owner, sync_lease_until, sync_started_at)
          select id, 0, clock_timestamp(), 1, clock_timestamp(), ${owner}, clock_timestamp() + ${leaseMs} * interval '1 millisecond', clock_timestamp()
          from mailboxes where id = ${mailboxId}::uuid
          on conflict (mailbox_id) do update set
            sync_owner = excluded.sync_owner, sync_lease_until = excluded.sync_lease_until, sync_started_at = excluded.sync_started_at
          where mailbox_limits.sync_lease_until is null or mailbox_limits.sync_lease_until < clock_timestamp()
            or mailbox_limits.sync_owner = excluded.sync_owner
          returning mailbox_id`),
      );
      return rows.length > 0;
    },

    async renew(mailboxId) {
      const rows = rowsOf(
        await db.execute(sql`update mailbox_limits set sync_lease_until = clock_timestamp() + ${leaseMs} * interval '1 millisecond'
          where mailbox_id = ${mailboxId}::uuid and sync_owner = ${owner} returning mailbox_id`),
      );
      return rows.length > 0;
    },

    async request(mailboxId) {
      await db.execute(sql`update mailbox_limits set sync_requested_at = clock_timestamp() where mailbox_id = ${mailboxId}::uuid`);
    },

    async release(mailboxId) {
      const [row] = rowsOf<{ again: boolean }>(
        await db.execute(sql`update mailbox_limits set sync_owner = null, sync_lease_until = null
          where mailbox_id = ${mailboxId}::uuid and sync_owner = ${owner}
          returning coalesce(sync_requested_at > sync_started_at, false) as again`),
      );
      return row?.again === true;
    },

    async releaseAll() {
      await db.execute(sql`update mailbox_limits set sync_owner = null, sync_lease_until = null where sync_owner = ${owner}`);
    },
  };
}
