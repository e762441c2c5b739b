import type { Classification, HitType } from './classify.js';
import { addCampaign, addRecipient, ALL_LINKS, earliest, type RollupPlan } from './rollups.js';

/*
 * A rollup pass's window in JavaScript (rollups.repo.ts): the claimed pending rows' events,
 * read once as text, then summed here. Counting 5,000 events per window in SQL (unnest, then
 * grouping them three times: by send, by recipient, by campaign) was most of the pass's cost
 * on PGlite, whose executor runs as WebAssembly: ~70 of the ~110 ms of a window, against
 * a few ms to read the same arrays out and sum them here (BENCHMARKS.md, issue 14 eighteenth
 * pass). What stays in SQL is what needs the database: whether each send still exists (and
 * its recipient), its stored state, the upgrade lookup and the writes.
 */

/** A claimed pending row as the claim statement returns it: the events' columns as comma-separated text. */
export interface PendingText {
  id: string;
  events: number;
  workspace_id: string;
  campaign_id: string;
  send_ids: string;
  at_ms: string;
  types: string;
  link_indexes: string;
  classifications: string;
}

/** One writer batch of one campaign: its events by column. */
export interface PendingBatch {
  id: string;
  events: number;
  workspaceId: string;
  campaignId: string;
  sendIds: string[];
  atMs: number[];
  types: HitType[];
  linkIndexes: (number | null)[];
  classifications: Classification[];
}

export function parsePending(row: PendingText): PendingBatch {
  // One value per event: a one-event row's null link is the empty string, one value too.
  const split = (text: string | null) => (Number(row.events) === 0 || text === null ? [] : text.split(','));
  return {
    id: String(row.id),
    events: Number(row.events),
    workspaceId: String(row.workspace_id),
    campaignId: String(row.campaign_id),
    sendIds: split(row.send_ids),
    // Stored as to_timestamp(ms / 1000.0): whole milliseconds, up to the float's last digit.
    atMs: split(row.at_ms).map((ms) => Math.round(Number(ms))),
    types: split(row.types) as HitType[],
    // A null (an open's link) is written as the empty string.
    linkIndexes: split(row.link_indexes).map((link) => (link === '' ? null : Number(link))),
    classifications: split(row.classifications) as Classification[],
  };
}

/** One send of the window: its earliest time of each kind (null: none), before anything is known of its state. */
export interface SendSummary {
  sendId: string;
  workspaceId: string;
  campaignId: string;
  firstHumanClickMs: number | null;
  firstHumanOpenMs: number | null;
  firstNonHumanOpenMs: number | null;
}

/** Per send of the window, its earliest human click, human open and other open. */
export function summarizeSends(batches: readonly PendingBatch[]): Map<string, SendSummary> {
  const sends = new Map<string, SendSummary>();
  for (const batch of batches) {
    for (let i = 0; i < batch.sendIds.length; i += 1) {
      const sendId = batch.sendIds[i]!;
      let send = sends.get(sendId);
      if (!send) {
        send = { sendId, workspaceId: batch.workspaceId, campaignId: batch.campaignId, firstHumanClickMs: null, firstHumanOpenMs: null, firstNonHumanOpenMs: null };
        sends.set(sendId, send);
      }
      const human = batch.classifications[i] === 'human';
      const at = batch.atMs[i]!;
      if (batch.types[i] === 'click') {
        if (human) send.firstHumanClickMs = earliest(send.firstHumanClickMs, at);
      } else if (human) send.firstHumanOpenMs = earliest(send.firstHumanOpenMs, at);
      else send.firstNonHumanOpenMs = earliest(send.firstNonHumanOpenMs, at);
    }
  }
  return sends;
}

const VERDICTS: readonly Classification[] = ['human', 'machine', 'unknown'];
const TYPES: readonly HitType[] = ['open', 'click'];
/** A (type, link, verdict) as one small number: counted per batch without building a string key per event. */
const countKey = (type: HitType, link: number, classification: Classification) => ((link + 1) * 2 + TYPES.indexOf(type)) * 3 + VERDICTS.indexOf(classification);
const keyParts = (key: number) => ({ classification: VERDICTS[key % 3]!, type: TYPES[Math.floor(key / 3) % 2]!, link: Math.floor(key / 6) - 1 });

function count(counts: Map<number, number>, key: number) {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/**
 * The additive counts, into the plan beside the upgrades' moves: each event of a send that
 * still exists (`recipientOf`: send id → recipient) counts for its campaign by type and
 * verdict over every link (-1) and, a click, for its link too; a human one also for its
 * recipient. Returns the events counted (the others' sends are gone, their events with them).
 */
export function countWindow(plan: RollupPlan, batches: readonly PendingBatch[], recipientOf: ReadonlyMap<string, string>): number {
  let counted = 0;
  for (const batch of batches) {
    // One batch is one campaign: its counts by (type, link, verdict), and its recipients' human ones.
    const campaign = new Map<number, number>();
    const recipients = new Map<string, Map<number, number>>();
    for (let i = 0; i < batch.sendIds.length; i += 1) {
      const recipientId = recipientOf.get(batch.sendIds[i]!);
      if (recipientId === undefined) continue;
      counted += 1;
      const type = batch.types[i]!;
      const classification = batch.classifications[i]!;
      const link = type === 'click' ? (batch.linkIndexes[i] ?? null) : null;
      count(campaign, countKey(type, ALL_LINKS, classification));
      if (link !== null) count(campaign, countKey(type, link, classification));
      if (classification !== 'human') continue;
      let own = recipients.get(recipientId);
      if (!own) recipients.set(recipientId, (own = new Map()));
      count(own, countKey(type, ALL_LINKS, 'human'));
      if (link !== null) count(own, countKey(type, link, 'human'));
    }
    const { workspaceId, campaignId } = batch;
    for (const [key, n] of campaign) {
      const { type, link, classification } = keyParts(key);
      addCampaign(plan, workspaceId, campaignId, type, link, classification, n);
    }
    for (const [recipientId, own] of recipients) {
      for (const [key, n] of own) {
        const { type, link } = keyParts(key);
        addRecipient(plan, { workspaceId, campaignId, recipientId }, type, link, n);
      }
    }
  }
  return counted;
}
