import { sql } from 'drizzle-orm';
import type { Db } from '../db/connect.js';
import { rowsOf } from '../db/pg-array.js';

/*
 * The queries behind a campaign's results page and its per-recipient CSV: sends per hour,
 * and the ledger read in pages (keyset on the send id) so a download of a million rows
 * never holds more than one page in memory. Every query names the workspace (invariant 7).
 */

export interface RecipientSendRow {
  sendId: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  step: number;
  status: string;
  skipReason: string | null;
  sentAt: Date | null;
  replied: boolean;
  bounced: boolean;
  unsubscribed: boolean;
}

const dateOrNull = (value: unknown) => (value === null || value === undefined ? null : new Date(value as string | Date));

export function createResultsRepo(db: Db) {
  return {
    /** Messages sent, per hour (UTC) of their send time. */
    async sentPerHour(workspaceId: string, campaignId: string): Promise<{ hour: Date; sent: number }[]> {
      const rows = rowsOf<{ hour: string | Date; sent: number }>(
        await db.execute(sql`
          select date_trunc('hour', sent_at) as hour, count(*)::int as sent from campaign_sends
          where workspace_id = ${workspaceId} and campaign_id = ${campaignId} and status = 'sent' and sent_at is not null
          group by 1 order by 1`),
      );
      return rows.map((r) => ({ hour: new Date(r.hour), sent: Number(r.sent) }));
    },

    /** One page of the campaign's sends in id order, each with what its recipient did besides opening and clicking. */
    async recipientSendsPage(workspaceId: string, campaignId: string, after: string | null, limit: number): Promise<RecipientSendRow[]> {
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          select s.id, s.email, c.first_name, c.last_name, s.step, s.status::text as status, s.skip_reason, s.sent_at,
                 exists (select 1 from mail_events m where m.workspace_id = s.workspace_id and m.message_id = s.message_id and m.type = 'reply') as replied,
                 exists (select 1 from mail_events m where m.workspace_id = s.workspace_id and m.message_id = s.message_id and m.type = 'bounce') as bounced,
                 exists (select 1 from suppressions u where u.workspace_id = s.workspace_id and lower(u.email) = lower(s.email)
                           and u.reason = 'unsubscribe' and u.source = ${`campaign:${campaignId}`}) as unsubscribed
          from campaign_sends s
          left join contacts c on c.id = s.contact_id and c.workspace_id = s.workspace_id
          where s.workspace_id = ${workspaceId} and s.campaign_id = ${campaignId}
            and (${after}::uuid is null or s.id > ${after}::uuid)
            -- A deleted contact leaves every list at once (P-13), before the purge removes their sends.
            and (c.id is null or c.deleted_at is null)
          order by s.id
          limit ${limit}`),
      );
      return rows.map((r) => ({
        sendId: String(r.id),
        email: String(r.email),
        firstName: (r.first_name as string | null) ?? null,
        lastName: (r.last_name as string | null) ?? null,
        step: Number(r.step),
        status: String(r.status),
        skipReason: (r.skip_reason as string | null) ?? null,
        sentAt: dateOrNull(r.sent_at),
        replied: Boolean(r.replied),
        bounced: Boolean(r.bounced),
        unsubscribed: Boolean(r.unsubscribed),
      }));
    },
  };
}

export type ResultsRepo = ReturnType<typeof createResultsRepo>;
