import type { AuthContext } from '../auth/auth.service.js';
import { NotFoundError } from '../errors.js';
import { REASONS, type Classification } from './classify.js';
import type { EventCountRow, StatsRepo, TimelineEventRow } from './stats.repo.js';

/*
 * Honest numbers: human first, machine and unknown beside them, and unique people
 * (recipients) who did it as a person. See stats.repo.ts for the open-upgrade rule.
 */

export interface Counts {
  human: number;
  machine: number;
  unknown: number;
  /** Distinct recipients with at least one human event. */
  uniqueHuman: number;
}

const zero = (): Counts => ({ human: 0, machine: 0, unknown: 0, uniqueHuman: 0 });

function countsOf(rows: EventCountRow[]): Counts {
  const counts = zero();
  for (const row of rows) {
    counts[row.classification] += row.events;
    if (row.classification === 'human') counts.uniqueHuman = row.recipients;
  }
  return counts;
}

/**
 * The same rule as the stats query, for one send's events in time order: the latest
 * non-human open before the first human click becomes human, unless a human open already
 * came before that click.
 */
export function judgeSendEvents<T extends Pick<TimelineEventRow, 'id' | 'type' | 'at' | 'classification'>>(events: readonly T[]): Map<string, Classification> {
  const judged = new Map<string, Classification>(events.map((e) => [e.id, e.classification]));
  const firstHumanClick = events.find((e) => e.type === 'click' && e.classification === 'human');
  if (!firstHumanClick) return judged;
  const opensBefore = events.filter((e) => e.type === 'open' && e.at.getTime() <= firstHumanClick.at.getTime());
  if (opensBefore.some((e) => e.classification === 'human')) return judged;
  const latest = opensBefore.at(-1);
  if (latest) judged.set(latest.id, 'human');
  return judged;
}

export function createStatsService(deps: { repo: StatsRepo }) {
  const { repo } = deps;

  return {
    /** GET /api/campaigns/:id/stats. Another workspace's campaign is a 404, like a missing one. */
    async campaignStats(auth: AuthContext, campaignId: string) {
      if (!(await repo.campaignExists(auth.workspaceId, campaignId))) throw new NotFoundError('Campaign');
      // In turn, not side by side: each read is a few rows or one index range (ms), and five
      // parallel reads would hold five of the pool's connections per stats request, starving
      // the tracking writer and click lookups when a few dashboards refresh at once.
      const sends = await repo.sendCounts(auth.workspaceId, campaignId);
      const mail = await repo.mailEventCounts(auth.workspaceId, campaignId);
      const unsubscribed = await repo.unsubscribedCount(auth.workspaceId, campaignId);
      const links = await repo.links(campaignId);
      const events = await repo.eventCounts(auth.workspaceId, campaignId);

      const totals = (type: 'open' | 'click') => countsOf(events.filter((e) => e.total && e.type === type));
      return {
        campaignId,
        sent: sends.sent,
        failed: sends.failed,
        bounced: mail.bounced,
        bounces: { hard: mail.hardBounced, soft: mail.softBounced, delayed: mail.delayed },
        replied: mail.replied,
        autoReplied: mail.autoReplied,
        unsubscribed,
        opens: totals('open'),
        clicks: totals('click'),
        // The honeypot is no one's link: its hits count as machine clicks above, and it is not listed.
        links: links
          .filter((l) => !l.honeypot)
          .map((l) => ({
            index: l.linkIndex,
            url: l.url,
            clicks: countsOf(events.filter((e) => !e.total && e.type === 'click' && e.linkIndex === l.linkIndex)),
          })),
      };
    },

    /**
     * Campaign mail in a contact's timeline: per send, human opens/clicks first with machine
     * and unknown beside them, and each event with its verdict and reasons (no IP or user agent).
     */
    async contactTimeline(workspaceId: string, contactId: string) {
      const sends = await repo.sendsOfContact(workspaceId, contactId);
      const events = await repo.eventsOfSends(workspaceId, sends.map((s) => s.sendId));
      const linkUrls = new Map<string, Map<number, string>>();
      for (const campaignId of new Set(sends.map((s) => s.campaignId))) {
        linkUrls.set(campaignId, new Map((await repo.links(campaignId)).map((l) => [l.linkIndex, l.url])));
      }
      return sends.map((send) => {
        const own = events.filter((e) => e.sendId === send.sendId);
        const judged = judgeSendEvents(own);
        const opens = zero();
        const clicks = zero();
        const entries = own.map((e) => {
          const classification = judged.get(e.id)!;
          const counts = e.type === 'open' ? opens : clicks;
          counts[classification] += 1;
          return {
            type: e.type,
            at: e.at,
            classification,
            reasons: classification !== e.classification ? [...e.reasons, REASONS.upgradedByHumanClick] : e.reasons,
            ...(e.type === 'click' ? { linkIndex: e.linkIndex, url: linkUrls.get(send.campaignId)?.get(e.linkIndex ?? -1) ?? null } : {}),
          };
        });
        opens.uniqueHuman = opens.human > 0 ? 1 : 0;
        clicks.uniqueHuman = clicks.human > 0 ? 1 : 0;
        return {
          type: 'campaign_mail' as const,
          at: send.sentAt ?? send.createdAt,
          campaignId: send.campaignId,
          campaignName: send.campaignName,
          step: send.step,
          status: send.status,
          opens,
          clicks,
          events: entries,
        };
      });
    },
  };
}

export type StatsService = ReturnType<typeof createStatsService>;
