import { sql } from 'drizzle-orm';
import type { Db } from '../../src/db/connect.js';

/**
 * Every (campaign, state, skip reason) where the counters the ledger's triggers keep differ
 * from a recount of campaign_sends, across the whole database: [] when they agree.
 */
export async function sendCountMismatches(db: Db): Promise<{ campaign_id: string; status: string; skip_reason: string; counted: number | null; ledger: number | null }[]> {
  const result = (await db.execute(sql`
    select campaign_id, status, skip_reason, c.n::int as counted, l.n::int as ledger
    from (select campaign_id, status::text as status, skip_reason, sum(n) as n from campaign_send_counts group by 1, 2, 3 having sum(n) <> 0) c
    full join (select campaign_id, status::text as status, coalesce(skip_reason, '') as skip_reason, count(*) as n from campaign_sends group by 1, 2, 3) l
      using (campaign_id, status, skip_reason)
    where c.n is distinct from l.n`)) as unknown as { rows: { campaign_id: string; status: string; skip_reason: string; counted: number | null; ledger: number | null }[] };
  return result.rows;
}
