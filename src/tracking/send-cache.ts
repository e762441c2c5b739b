import { createCampaignSendIndex } from './campaign-send-index.js';
import { TtlLru } from './lru.js';
import type { LinkRow, SendRow, TrackingRepo } from './tracking.repo.js';

/*
 * What a tracking hit needs to know about its send: workspace, campaign, when it went
 * out, and the campaign's links. Held in memory (bounded LRU with a TTL) so that a
 * click redirects without touching the database; a miss is one indexed query, and
 * concurrent misses for the same send share it.
 *
 * For outages: every send of a campaign that has had a hit is held compactly
 * (campaign-send-index.ts, loaded in the background), expired entries are kept until
 * evicted, and `peekStale` answers from them when the database does not.
 */

export interface LinkTarget {
  url: string;
  /** The URL as a Location header value (ASCII, punycode host, percent-encoded), or undefined when the stored URL is not a usable http(s) URL. */
  location: string | undefined;
  honeypot: boolean;
}

export interface CampaignLinks {
  byIndex: ReadonlyMap<number, LinkTarget>;
  /**
   * Links a person can see (the honeypot excluded) in each step's mail: the base of the "every
   * link at once" rule, which counts the mail that was scanned, not the whole sequence. Links
   * whose steps are not known (written before migration 0057) are counted in every step.
   */
  contentLinksByStep: ReadonlyMap<number, number>;
  contentLinksInEveryStep: number;
  loadedAtMs: number;
}

/** The links a person can see in the mail of this send's step. */
export const contentLinkCountOf = (send: { step: number; links: CampaignLinks }) =>
  send.links.contentLinksInEveryStep + (send.links.contentLinksByStep.get(send.step) ?? 0);

export interface SendInfo {
  sendId: string;
  workspaceId: string;
  campaignId: string;
  /** Which mail of the sequence (0 the first): its links are the burst rule's base. */
  step: number;
  /** Sent time, or claim time while it is still going out; null when neither is known. */
  sentAtMs: number | null;
}

export interface ResolvedSend extends SendInfo {
  links: CampaignLinks;
}

/** A stored URL as a redirect target: only absolute http(s) URLs, serialised so the header is pure ASCII. */
export function locationOf(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined;
  const href = parsed.href;
  return /^[\x21-\x7e]+$/.test(href) ? href : undefined;
}

export interface SendCacheOptions {
  repo: Pick<TrackingRepo, 'findSendWithLinks' | 'findSends' | 'findLinks'> & Partial<Pick<TrackingRepo, 'findCampaignSends'>>;
  now?: () => number;
  maxSends?: number;
  maxCampaigns?: number;
  ttlMs?: number;
  /** How long "no such send" is remembered (tokens are HMAC-signed, so these are rare). */
  missingTtlMs?: number;
  /** A send not yet marked sent is re-read soon, to pick up its sent time. */
  unsentTtlMs?: number;
  /** A link index the cached campaign lacks triggers a re-read at most this often. */
  linkRefreshMs?: number;
  /** A campaign's whole send list is re-read at most this often, while its sends get hits. */
  campaignSendsRefreshMs?: number;
  /** Sends held in the per-campaign index, all campaigns together. */
  maxIndexedSends?: number;
  /** After a failed or timed-out lookup, misses skip the database for this long (answered from what is held). */
  unavailableMs?: number;
}

export function createSendCache(options: SendCacheOptions) {
  const now = options.now ?? Date.now;
  const ttlMs = options.ttlMs ?? 10 * 60_000;
  const unsentTtlMs = options.unsentTtlMs ?? 2_000;
  const missingTtlMs = options.missingTtlMs ?? 60_000;
  const linkRefreshMs = options.linkRefreshMs ?? 5_000;
  const campaignSendsRefreshMs = options.campaignSendsRefreshMs ?? 60_000;
  const unavailableMs = options.unavailableMs ?? 2_000;
  const sends = new TtlLru<string, SendInfo | null>(options.maxSends ?? 100_000, ttlMs, now, true);
  const campaigns = new TtlLru<string, CampaignLinks>(options.maxCampaigns ?? 10_000, ttlMs, now, true);
  const inFlight = new Map<string, Promise<ResolvedSend | null>>();
  const joined = new WeakMap<SendInfo, ResolvedSend>();
  const index = createCampaignSendIndex({ maxSends: options.maxIndexedSends, now });
  const indexing = new Set<string>();
  let unavailableUntil = 0;

  /** Loads (or reloads) every send of the campaign, in the background. */
  const indexCampaign = (campaignId: string) => {
    const findCampaignSends = options.repo.findCampaignSends;
    if (!findCampaignSends || indexing.has(campaignId)) return;
    const loadedAt = index.loadedAt(campaignId);
    if (loadedAt !== undefined && now() - loadedAt < campaignSendsRefreshMs) return;
    indexing.add(campaignId);
    findCampaignSends(campaignId).then(
      (rows) => {
        index.set(campaignId, rows);
        indexing.delete(campaignId);
      },
      () => indexing.delete(campaignId),
    );
  };

  const rememberSend = (row: SendRow) => {
    const sentAt = row.sentAt ?? row.claimedAt;
    const info: SendInfo = { sendId: row.id, workspaceId: row.workspaceId, campaignId: row.campaignId, step: row.step, sentAtMs: sentAt ? sentAt.getTime() : null };
    sends.set(row.id, info, row.sentAt ? ttlMs : unsentTtlMs);
    indexCampaign(row.campaignId);
    return info;
  };
  const rememberLinks = (campaignId: string, rows: readonly LinkRow[]) => {
    const byIndex = new Map<number, LinkTarget>();
    const contentLinksByStep = new Map<number, number>();
    let contentLinksInEveryStep = 0;
    for (const row of rows) {
      byIndex.set(row.linkIndex, { url: row.url, location: locationOf(row.url), honeypot: row.honeypot });
      if (row.honeypot) continue;
      if (row.steps === null) contentLinksInEveryStep += 1;
      else for (const step of new Set(row.steps)) contentLinksByStep.set(step, (contentLinksByStep.get(step) ?? 0) + 1);
    }
    const links: CampaignLinks = { byIndex, contentLinksByStep, contentLinksInEveryStep, loadedAtMs: now() };
    campaigns.set(campaignId, links);
    return links;
  };

  async function load(sendId: string): Promise<ResolvedSend | null> {
    const found = await options.repo.findSendWithLinks(sendId).catch((error: unknown) => {
      unavailableUntil = now() + unavailableMs;
      throw error;
    });
    if (!found) {
      sends.set(sendId, null, missingTtlMs);
      return null;
    }
    return { ...rememberSend(found.send), links: rememberLinks(found.send.campaignId, found.links) };
  }

  /** Without waiting: the send with its links, null when known not to exist, undefined when not cached. */
  function peek(sendId: string): ResolvedSend | null | undefined {
    let send = sends.get(sendId);
    if (send === null) return null;
    if (send === undefined) {
      // Another send of a campaign already held: no query needed (unless its sent time is unknown yet).
      const indexed = index.get(sendId);
      if (!indexed || indexed.sentAtMs === null) return undefined;
      send = { sendId, ...indexed };
      sends.set(sendId, send);
    }
    const links = campaigns.get(send.campaignId);
    if (!links) return undefined;
    // One object per (send, links) pair, reused while neither changes: no allocation per hit.
    const resolved = joined.get(send);
    if (resolved?.links === links) return resolved;
    const fresh = { ...send, links };
    joined.set(send, fresh);
    return fresh;
  }

  return {
    peek,

    /**
     * The last known answer, however old, for when the database does not answer: the
     * send (cached or in its campaign's index) with its campaign's links; undefined when
     * nothing is held.
     */
    peekStale(sendId: string): ResolvedSend | undefined {
      const indexed = index.get(sendId);
      const send = sends.getStale(sendId) ?? (indexed ? { sendId, ...indexed } : undefined);
      if (!send) return undefined;
      const links = campaigns.getStale(send.campaignId);
      return links ? { ...send, links } : undefined;
    },

    /** False for a moment after a lookup failed or timed out: misses are then answered from what is held. */
    available(): boolean {
      return now() >= unavailableUntil;
    },

    /** A lookup took too long: treat the database as unavailable for a moment. */
    markUnavailable(): void {
      unavailableUntil = now() + unavailableMs;
    },

    /** Sends held in the per-campaign index. */
    get indexedSends(): number {
      return index.size;
    },

    /** The send with its links, from the cache or one query; null when there is no such send. Throws when the database fails. */
    resolve(sendId: string): Promise<ResolvedSend | null> {
      const cached = peek(sendId);
      if (cached !== undefined) return Promise.resolve(cached);
      let pending = inFlight.get(sendId);
      if (!pending) {
        pending = load(sendId).finally(() => inFlight.delete(sendId));
        inFlight.set(sendId, pending);
      }
      return pending;
    },

    /** Fills the cache for many sends at once (the open path, off the request): two queries at most. */
    async loadMany(sendIds: Iterable<string>): Promise<void> {
      const missing = [...new Set(sendIds)].filter((id) => peek(id) === undefined);
      if (missing.length === 0) return;
      const rows = await options.repo.findSends(missing);
      const found = new Set<string>();
      for (const row of rows) {
        rememberSend(row);
        found.add(row.id);
      }
      for (const id of missing) if (!found.has(id)) sends.set(id, null, missingTtlMs);
      const campaignIds = [...new Set(rows.map((r) => r.campaignId))].filter((id) => !campaigns.has(id));
      if (campaignIds.length === 0) return;
      const links = await options.repo.findLinks(campaignIds);
      for (const campaignId of campaignIds) rememberLinks(campaignId, links.filter((l) => l.campaignId === campaignId));
    },

    /**
     * A link index the cached campaign does not know: re-read the campaign's links if the
     * cached copy is older than `linkRefreshMs` (links can be added as later steps render).
     */
    async refreshLinks(send: ResolvedSend): Promise<ResolvedSend> {
      if (now() - send.links.loadedAtMs < linkRefreshMs) return send;
      const rows = await options.repo.findLinks([send.campaignId]);
      return { ...send, links: rememberLinks(send.campaignId, rows) };
    },

    clear() {
      sends.clear();
      campaigns.clear();
      index.clear();
    },
  };
}

export type SendCache = ReturnType<typeof createSendCache>;
