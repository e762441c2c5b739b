import type { AuthContext } from '../auth/auth.service.js';
import { NotFoundError } from '../errors.js';
import type { Classification } from './classify.js';
import type { RecipientSendRow, ResultsRepo } from './results.repo.js';
import type { StatsRepo } from './stats.repo.js';
import { judgeSendEvents, type StatsService } from './stats.service.js';
import { HOUR_MS, DAY_MS } from '../time.js';

/*
 * What a campaign's results page and its CSV download show: the campaign stats (the same
 * numbers as GET /api/campaigns/:id/stats), sends over time, and one row per send with that
 * recipient's opens and clicks judged by the same rule as the stats (judgeSendEvents).
 */

/** Past three days of sending, hours become too many bars to read: days instead. */
const HOURLY_SPAN_LIMIT_MS = 3 * DAY_MS;
const PAGE_SIZE = 500;

export interface SendsOverTime {
  unit: 'hour' | 'day';
  /** Every bucket from the first send to the last, empty ones included, so gaps show as gaps. */
  points: { at: Date; sent: number }[];
}

export type Tally = Record<Classification, number>;

/** One send of the campaign: who, which step, what happened to it, and what its recipient did. */
export type RecipientResult = Omit<RecipientSendRow, 'sendId'> & { opens: Tally; clicks: Tally };

/** Hourly counts into hour or day buckets, gaps filled with zero. */
export function bucketSends(perHour: { hour: Date; sent: number }[]): SendsOverTime {
  if (perHour.length === 0) return { unit: 'hour', points: [] };
  const first = perHour[0]!.hour.getTime();
  const last = perHour.at(-1)!.hour.getTime();
  const unit = last - first > HOURLY_SPAN_LIMIT_MS ? 'day' : 'hour';
  const size = unit === 'day' ? DAY_MS : HOUR_MS;
  const start = Math.floor(first / size) * size;
  const counts = new Map<number, number>();
  for (const { hour, sent } of perHour) {
    const bucket = Math.floor(hour.getTime() / size) * size;
    counts.set(bucket, (counts.get(bucket) ?? 0) + sent);
  }
  const points: SendsOverTime['points'] = [];
  for (let at = start; at <= last; at += size) points.push({ at: new Date(at), sent: counts.get(at) ?? 0 });
  return { unit, points };
}

const emptyTally = (): Tally => ({ human: 0, machine: 0, unknown: 0 });

export function createResultsService(deps: { repo: ResultsRepo; statsRepo: StatsRepo; stats: StatsService }) {
  const { repo, statsRepo } = deps;

  async function* pages(workspaceId: string, campaignId: string): AsyncGenerator<RecipientResult[]> {
    let after: string | null = null;
    for (;;) {
      const page = await repo.recipientSendsPage(workspaceId, campaignId, after, PAGE_SIZE);
      if (page.length === 0) return;
      const events = await statsRepo.eventsOfSends(workspaceId, page.map((s) => s.sendId));
      const eventsBySend = new Map<string, typeof events>();
      for (const event of events) {
        const list = eventsBySend.get(event.sendId);
        if (list) list.push(event);
        else eventsBySend.set(event.sendId, [event]);
      }
      yield page.map(({ sendId, ...send }) => {
        const own = eventsBySend.get(sendId) ?? [];
        const judged = judgeSendEvents(own);
        const opens = emptyTally();
        const clicks = emptyTally();
        for (const event of own) (event.type === 'open' ? opens : clicks)[judged.get(event.id)!] += 1;
        return { ...send, opens, clicks };
      });
      after = page.at(-1)!.sendId;
    }
  }

  return {
    async campaignResults(auth: AuthContext, campaignId: string) {
      const stats = await deps.stats.campaignStats(auth, campaignId);
      const sendsOverTime = bucketSends(await repo.sentPerHour(auth.workspaceId, campaignId));
      return { stats, sendsOverTime };
    },

    /**
     * Every send of the campaign with its recipient's activity, a page at a time: the
     * caller (the CSV download) writes each page before the next is read. The campaign is
     * checked here, before the first byte of a download, so a wrong id is a clean 404.
     */
    async recipientResults(auth: AuthContext, campaignId: string): Promise<AsyncGenerator<RecipientResult[]>> {
      if (!(await statsRepo.campaignExists(auth.workspaceId, campaignId))) throw new NotFoundError('Campaign');
      return pages(auth.workspaceId, campaignId);
    },
  };
}

export type ResultsService = ReturnType<typeof createResultsService>;
