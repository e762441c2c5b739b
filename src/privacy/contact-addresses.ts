import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { pgArray, rowsOf } from '../db/pg-array.js';

/*
 * Every address some contacts were known by, for what is theirs (P-12, P-13, P-16): a contact's
 * address changes (PATCH), and what is keyed by an address — the recipient row, campaign mail
 * naming it, its suppression entry, webhook events, replies and bounces — stays under the old
 * one. The campaign ledger keeps the address each send went to (`campaign_sends.email`, and its
 * recipient row), so a contact's sends say which addresses were its. 1:1 and synced mail is
 * linked to the contact by id (`message_contacts`) and names other people as well, so it adds
 * no address here.
 *
 * An address a live contact outside these holds now is that contact's, not theirs: the purge
 * keeps it and an export leaves it out (`heldByAnother`). The purge and the data-subject
 * export both ask here, so what a purge removes as a person's is what their export shows.
 */

export interface KnownAddress {
  /** Lowercased. */
  address: string;
  /** A live contact of the workspace other than these holds it now. */
  heldByAnother: boolean;
}

/** Index probes only: the contacts by key, their sends by `campaign_sends_contact_idx`, addresses by the live-contact unique index. */
export async function addressesKnownBy(db: Db, workspaceId: string, contactIds: readonly string[]): Promise<KnownAddress[]> {
  if (contactIds.length === 0) return [];
  const ws = sql`${workspaceId}::uuid`;
  const ids = sql`${pgArray(contactIds)}::uuid[]`;
  const rows = rowsOf<{ address: string; held_by_another: boolean }>(
    await db.execute(sql`
      with theirs as (
        select s.email, s.recipient_id from campaign_sends s where s.workspace_id = ${ws} and s.contact_id = any(${ids})),
      known(address) as (
        select lower(c.email) from contacts c where c.workspace_id = ${ws} and c.id = any(${ids})
        union select lower(t.email) from theirs t
        union select lower(r.email) from recipients r where r.workspace_id = ${ws} and r.id in (select t.recipient_id from theirs t))
      select k.address, exists (
        select 1 from contacts o
        where o.workspace_id = ${ws} and lower(o.email) = k.address and o.deleted_at is null and o.id <> all(${ids})) as held_by_another
      from known k
      order by k.address`),
  );
  return rows.map((r) => ({ address: String(r.address), heldByAnother: Boolean(r.held_by_another) }));
}
