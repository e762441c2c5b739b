/*
 * Every send of a campaign that is being opened or clicked, held compactly in memory, so
 * that a click on any of its sends still redirects while the database is down or hung.
 * A token names only its send; the first hit of a campaign that reaches the database
 * loads the whole campaign's sends in the background (one query), and the list is
 * reloaded while hits keep coming (new sends of a running campaign).
 *
 * Per campaign: the send ids as sorted 16-byte keys in one Buffer and their sent times
 * in a Float64Array, their steps in a Uint8Array (25 bytes a send: 1,000,000 sends ≈ 25 MB),
 * found by binary search.
 * The total is bounded; the campaign loaded longest ago goes first.
 */

export interface IndexedSend {
  workspaceId: string;
  campaignId: string;
  sentAtMs: number | null;
  step: number;
}

interface CampaignSends {
  workspaceId: string;
  ids: Buffer;
  sentAtMs: Float64Array;
  /** A campaign has at most 11 steps (campaigns.routes.ts): a byte each. */
  steps: Uint8Array;
  loadedAtMs: number;
}

const KEY_BYTES = 16;
const keyOf = (uuid: string) => Buffer.from(uuid.replace(/-/g, ''), 'hex');

export interface CampaignSendRow {
  id: string;
  workspaceId: string;
  step: number;
  /** Sent time, or claim time while it goes out; null when neither is known. */
  sentAtMs: number | null;
}

export function createCampaignSendIndex(options: { maxSends?: number; now?: () => number } = {}) {
  const maxSends = options.maxSends ?? 1_000_000;
  const now = options.now ?? Date.now;
  const campaigns = new Map<string, CampaignSends>();
  let total = 0;

  const find = (entry: CampaignSends, key: Buffer): number => {
    let lo = 0;
    let hi = entry.sentAtMs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const order = key.compare(entry.ids, mid * KEY_BYTES, mid * KEY_BYTES + KEY_BYTES);
      if (order === 0) return mid;
      if (order < 0) hi = mid - 1;
      else lo = mid + 1;
    }
    return -1;
  };

  return {
    /** Replaces a campaign's sends (a fresh load). */
    set(campaignId: string, rows: readonly CampaignSendRow[]): void {
      const previous = campaigns.get(campaignId);
      if (previous) {
        total -= previous.sentAtMs.length;
        campaigns.delete(campaignId);
      }
      if (rows.length === 0 || rows.length > maxSends) return;
      const sorted = rows.map((r) => ({ hex: r.id.replace(/-/g, '').toLowerCase(), sentAtMs: r.sentAtMs, step: r.step })).sort((a, b) => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0));
      const ids = Buffer.from(sorted.map((r) => r.hex).join(''), 'hex');
      const sentAtMs = new Float64Array(sorted.map((r) => r.sentAtMs ?? Number.NaN));
      const steps = Uint8Array.from(sorted, (r) => r.step);
      campaigns.set(campaignId, { workspaceId: rows[0]!.workspaceId, ids, sentAtMs, steps, loadedAtMs: now() });
      total += rows.length;
      for (const [oldest, entry] of campaigns) {
        if (total <= maxSends) break;
        campaigns.delete(oldest);
        total -= entry.sentAtMs.length;
      }
    },

    /** When the campaign's sends were last loaded; undefined when they are not held. */
    loadedAt(campaignId: string): number | undefined {
      return campaigns.get(campaignId)?.loadedAtMs;
    },

    /** The send, if it belongs to a campaign held here (a binary search per campaign held). */
    get(sendId: string): IndexedSend | undefined {
      if (campaigns.size === 0 || !/^[0-9a-f-]{36}$/i.test(sendId)) return undefined;
      const key = keyOf(sendId);
      for (const [campaignId, entry] of campaigns) {
        const at = find(entry, key);
        if (at < 0) continue;
        const sentAtMs = entry.sentAtMs[at]!;
        return { workspaceId: entry.workspaceId, campaignId, sentAtMs: Number.isNaN(sentAtMs) ? null : sentAtMs, step: entry.steps[at]! };
      }
      return undefined;
    },

    get size(): number {
      return total;
    },

    clear(): void {
      campaigns.clear();
      total = 0;
    },
  };
}

export type CampaignSendIndex = ReturnType<typeof createCampaignSendIndex>;
