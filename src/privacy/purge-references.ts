import { sql, type SQL } from 'drizzle-orm';
import { segmentWithoutAddress, type Segment } from '../campaigns/segment.js';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';
import type { CampaignAudience } from '../db/schema.js';

/*
 * Where a purged contact's address is written as a value in another record, not as a row of
 * its own (P-13): a campaign's segment, and a legal request's scope. Run by `purgeContact`
 * inside its transaction, only when no live contact of the workspace has the address again
 * (then the address is that contact's, and what names it stays).
 */

/** `with h as (<delete or update … returning 1>) select count(*)` → how many rows it changed. */
export async function countAffected(db: Db, statement: SQL): Promise<number> {
  const [row] = rowsOf<{ n: number }>(await db.execute(sql`with h as (${statement} returning 1) select count(*)::int as n from h`));
  return Number(row?.n ?? 0);
}

export async function eraseAddressReferences(db: Db, workspaceId: string, address: string, addressHash: string): Promise<Record<string, number>> {
  // Every campaign of the workspace, whatever its state (a draft, a sent campaign's record of
  // whom it was for, one deleted and not yet purged). The text search only narrows the rows
  // read (a stored address holds no character JSON would escape: contacts/email-address.ts);
  // `segmentWithoutAddress` decides, and never widens the audience (segment.ts).
  const named = rowsOf<{ id: string; audience: CampaignAudience }>(
    await db.execute(sql`
      select id, audience from campaigns
      where workspace_id = ${workspaceId}::uuid and jsonb_typeof(audience -> 'segment') = 'object'
        and position(${address} in lower(audience::text)) > 0
      order by id
      for no key update`),
  );
  let campaignSegmentsScrubbed = 0;
  for (const campaign of named) {
    const segment = segmentWithoutAddress((campaign.audience as { segment: Segment }).segment, address);
    if (!segment) continue;
    await db.execute(sql`update campaigns set audience = ${JSON.stringify({ segment })}::jsonb where id = ${campaign.id}::uuid`);
    campaignSegmentsScrubbed += 1;
  }

  // A legal request stays the evidence of the scope it asked for (P-16): the address leaves
  // it, its keyed hash (the one the suppression keeps) takes its place.
  const legalRequestAddressesHashed = await countAffected(
    db,
    sql`update legal_requests
        set addresses = array(select a from unnest(addresses) with ordinality u(a, n) where lower(a) <> ${address} order by n),
            erased_address_hashes = array_append(erased_address_hashes, ${addressHash}::text)
        where workspace_id = ${workspaceId}::uuid and exists (select 1 from unnest(addresses) a where lower(a) = ${address})`,
  );
  return { campaignSegmentsScrubbed, legalRequestAddressesHashed };
}
