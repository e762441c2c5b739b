import { and, eq, isNull, sql, type SQL } from 'drizzle-orm';
import { inUuidList } from '../db/sql-lists.js';
import { contacts, type CampaignAudience, type campaigns } from '../db/schema.js';
import { invalidAddressSql, optedInSql } from './eligibility-sql.js';
import { suppressedSql } from '../suppression/suppressed-sql.js';
import { segmentWhere, type Segment } from './segment.js';

/** What these statements read of a campaign. */
type CampaignRowShape = Pick<typeof campaigns.$inferSelect, 'workspaceId' | 'kind' | 'topic' | 'audience'>;

/*
 * The statements whose cost grows with a campaign's audience — preflight's counts and the
 * launch's ledger write — built here so that the benchmarks (scripts/bench/preflight.ts,
 * launch.ts) EXPLAIN exactly what the service runs. Each reads the audience once, in the
 * database; none brings it into the process.
 */

/** The contacts a campaign's audience names, as a WHERE clause over `contacts`; a deleted contact is never in it (P-13). */
export function audienceWhere(workspaceId: string, audience: CampaignAudience): SQL {
  const inWorkspace = and(eq(contacts.workspaceId, workspaceId), isNull(contacts.deletedAt))!;
  if ('contactIds' in audience) {
    return audience.contactIds.length === 0 ? sql`false` : and(inWorkspace, inUuidList(contacts.id, audience.contactIds))!;
  }
  return and(inWorkspace, segmentWhere(audience.segment as Segment))!;
}

/**
 * Preflight's counts in one pass over the audience. The `offset 0` keeps the inner select
 * from being flattened into the outer one: flattened, each lookup would be evaluated once for
 * every count that mentions it (the suppression lookup twice per contact). Kept, each is one
 * index probe per contact — cost grows with the audience, never with the suppression list.
 */
export function preflightCountsSql(campaign: CampaignRowShape): SQL {
  const needsConsent = campaign.kind === 'marketing';
  return sql`
    select count(*)::int as total,
      count(*) filter (where a.invalid)::int as invalid,
      count(*) filter (where not a.invalid and a.suppressed)::int as suppressed,
      count(*) filter (where not a.invalid and not a.suppressed and not a.opted_in)::int as missing_consent
    from (
      select ${invalidAddressSql(sql`contacts.email`)} as invalid,
             ${suppressedSql(campaign.workspaceId, sql`contacts.email`, sql`contacts.address_hash`, campaign.topic)} as suppressed,
             ${needsConsent ? optedInSql(sql`contacts.id`, sql`contacts.workspace_id`) : sql`true`} as opted_in
      from contacts where ${audienceWhere(campaign.workspaceId, campaign.audience)}
      offset 0
    ) a`;
}

/**
 * Launch's two statements: every audience address gets its `recipients` row (kept across
 * campaigns: unsubscribe tokens name it), then one ledger row per contact, each with its own
 * Message-ID fixed now. The second counts its rows in the database instead of returning them.
 */
export function firstStepSql(campaign: CampaignRowShape & { id: string }, senderDomain: string, dueAt: Date) {
  const where = audienceWhere(campaign.workspaceId, campaign.audience);
  return {
    recipients: sql`
      insert into recipients (workspace_id, email, address_hash)
      select contacts.workspace_id, contacts.email, contacts.address_hash from contacts where ${where}
      on conflict (workspace_id, lower(email)) do update set address_hash = excluded.address_hash
      where recipients.address_hash is distinct from excluded.address_hash`,
    sends: sql`
      with written as (
        insert into campaign_sends (workspace_id, campaign_id, step, contact_id, recipient_id, email, rfc822_message_id, due_at)
        select contacts.workspace_id, ${campaign.id}::uuid, 0, contacts.id, r.id, contacts.email,
               gen_random_uuid()::text || '@' || ${senderDomain}, ${dueAt.toISOString()}::timestamptz
        from contacts
        join recipients r on r.workspace_id = contacts.workspace_id and lower(r.email) = lower(contacts.email)
        where ${where}
        on conflict do nothing
        returning 1)
      select count(*)::int as n from written`,
  };
}
