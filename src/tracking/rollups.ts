import type { Classification, HitType } from './classify.js';

/*
 * Campaign stats as rollups, so that reading them is a handful of rows whatever the event
 * count. Kept by the rollup pass (rollups.repo.ts), off the event write path: the writer
 * inserts the events and a pending record of them (events.repo.ts) in one statement, and a
 * pass counts pending records later, in windows of thousands of events — so the stats lag the
 * events by about one pass (rollup-runner.ts: ~1 s after writes; flush() runs both stages).
 * The numbers are the same as a recount over the raw events (stats.repo.ts
 * `eventCountsFromEvents`, which the tests compare against):
 *
 * - events by type and verdict, per campaign (link -1) and, for clicks, per link;
 * - uniqueHuman: distinct recipients with at least one human event of that type (and link);
 * - the human-click upgrade: for a send with a human click, if no human open came at or
 *   before its first human click, the latest non-human open at or before that click
 *   counts as human (ties: the larger event id). Stored verdicts never change.
 *
 * Only events actually inserted have a pending record, and the pass that counts a record
 * deletes it in the same transaction, so nothing counts twice. Every delta here is additive;
 * the upgrade is kept per send (its first human click and open, and the verdict of the open it
 * upgraded), and re-judged from the send's stored opens whenever an event could move it.
 * Passes over one campaign are serialized (a transaction-scoped advisory lock), so each
 * re-judgement sees every rollup before it; the stored opens it reads may include events
 * still pending in a later window — their own pass re-judges again and the counts converge
 * (until then a class count can be transiently lower by such an upgraded open).
 *
 * Here "inserted" means "in this pass's window": a window is planned as one batch.
 */

/** An event of the pass's window (one the writer actually inserted), with its send's recipient. */
export interface InsertedEvent {
  workspaceId: string;
  campaignId: string;
  sendId: string;
  recipientId: string;
  type: HitType;
  linkIndex: number | null;
  atMs: number;
  classification: Classification;
}

export interface SendState {
  sendId: string;
  workspaceId: string;
  campaignId: string;
  recipientId: string;
  firstHumanClickMs: number | null;
  firstHumanOpenMs: number | null;
  /** The stored verdict of the open counted as human because of a later human click; null when none is. */
  upgradedClass: Classification | null;
}

export interface CampaignDelta {
  workspaceId: string;
  campaignId: string;
  type: HitType;
  /** -1: every link together. */
  linkIndex: number;
  human: number;
  machine: number;
  unknown: number;
  uniqueHuman: number;
}

export interface RecipientDelta {
  workspaceId: string;
  campaignId: string;
  recipientId: string;
  type: HitType;
  linkIndex: number;
  humanEvents: number;
}

export const ALL_LINKS = -1;

export interface RollupPlan {
  campaign: Map<string, CampaignDelta>;
  recipient: Map<string, RecipientDelta>;
  /** Send states after this batch, by send id (only sends whose state changed or must be re-judged). */
  states: Map<string, SendState>;
  /** Sends whose upgrade must be re-judged from their stored opens, with their first human click. */
  recheck: { sendId: string; firstHumanClickMs: number }[];
  /** Of those, the sends whose latest earlier open must be looked up (the others had a human open first: no upgrade). */
  lookups: { sendId: string; firstHumanClickMs: number }[];
}

const minOf = (a: number | null, b: number) => (a === null || b < a ? b : a);

function addCampaign(plan: RollupPlan, workspaceId: string, campaignId: string, type: HitType, linkIndex: number, cls: Classification, n: number) {
  const key = `${campaignId}|${type}|${linkIndex}`;
  let delta = plan.campaign.get(key);
  if (!delta) {
    delta = { workspaceId, campaignId, type, linkIndex, human: 0, machine: 0, unknown: 0, uniqueHuman: 0 };
    plan.campaign.set(key, delta);
  }
  delta[cls] += n;
}

function addRecipient(plan: RollupPlan, state: Pick<SendState, 'workspaceId' | 'campaignId' | 'recipientId'>, type: HitType, linkIndex: number, n: number) {
  const key = recipientKey(state.campaignId, state.recipientId, type, linkIndex);
  const delta = plan.recipient.get(key);
  if (delta) delta.humanEvents += n;
  else plan.recipient.set(key, { workspaceId: state.workspaceId, campaignId: state.campaignId, recipientId: state.recipientId, type, linkIndex, humanEvents: n });
}

const recipientKey = (campaignId: string, recipientId: string, type: string, linkIndex: number) => `${campaignId}|${recipientId}|${type}|${linkIndex}`;

/**
 * Step 1: what the inserted events add by themselves, the new first-human times of their
 * sends, and which sends' upgrade may have moved (to be re-judged from the database).
 */
export function planRollups(inserted: readonly InsertedEvent[], known: ReadonlyMap<string, SendState>): RollupPlan {
  const plan: RollupPlan = { campaign: new Map(), recipient: new Map(), states: new Map(), recheck: [], lookups: [] };
  const touched = new Map<string, { before: SendState | undefined; nonHumanOpenAtMs: number[] }>();
  for (const event of inserted) {
    const { workspaceId, campaignId, type, linkIndex, classification: cls } = event;
    addCampaign(plan, workspaceId, campaignId, type, ALL_LINKS, cls, 1);
    if (type === 'click' && linkIndex !== null) addCampaign(plan, workspaceId, campaignId, type, linkIndex, cls, 1);

    let seen = touched.get(event.sendId);
    if (!seen) {
      seen = { before: known.get(event.sendId), nonHumanOpenAtMs: [] };
      touched.set(event.sendId, seen);
    }
    if (cls !== 'human') {
      if (type === 'open') seen.nonHumanOpenAtMs.push(event.atMs);
      continue;
    }
    addRecipient(plan, event, type, ALL_LINKS, 1);
    if (type === 'click' && linkIndex !== null) addRecipient(plan, event, type, linkIndex, 1);
    const state = plan.states.get(event.sendId) ?? {
      sendId: event.sendId,
      workspaceId,
      campaignId,
      recipientId: event.recipientId,
      firstHumanClickMs: seen.before?.firstHumanClickMs ?? null,
      firstHumanOpenMs: seen.before?.firstHumanOpenMs ?? null,
      upgradedClass: seen.before?.upgradedClass ?? null,
    };
    if (type === 'click') state.firstHumanClickMs = minOf(state.firstHumanClickMs, event.atMs);
    else state.firstHumanOpenMs = minOf(state.firstHumanOpenMs, event.atMs);
    plan.states.set(event.sendId, state);
  }

  for (const [sendId, { before, nonHumanOpenAtMs }] of touched) {
    const after = plan.states.get(sendId) ?? before;
    if (!after || after.firstHumanClickMs === null) continue;
    const click = after.firstHumanClickMs;
    const moved =
      before === undefined ||
      before.firstHumanClickMs !== after.firstHumanClickMs ||
      before.firstHumanOpenMs !== after.firstHumanOpenMs ||
      nonHumanOpenAtMs.some((at) => at <= click);
    if (!moved) continue;
    plan.states.set(sendId, { ...after });
    plan.recheck.push({ sendId, firstHumanClickMs: click });
    if (after.firstHumanOpenMs === null || after.firstHumanOpenMs > click) plan.lookups.push({ sendId, firstHumanClickMs: click });
  }
  return plan;
}

/**
 * Step 2: with the verdict of the latest non-human open at or before each re-judged send's
 * first human click (absent: there is none), moves the upgrade and its counts.
 */
export function applyUpgrades(plan: RollupPlan, known: ReadonlyMap<string, SendState>, latestOpenBeforeClick: ReadonlyMap<string, Classification>): void {
  for (const { sendId, firstHumanClickMs } of plan.recheck) {
    const state = plan.states.get(sendId)!;
    const before = known.get(sendId)?.upgradedClass ?? null;
    const humanOpenFirst = state.firstHumanOpenMs !== null && state.firstHumanOpenMs <= firstHumanClickMs;
    const after = humanOpenFirst ? null : (latestOpenBeforeClick.get(sendId) ?? null);
    state.upgradedClass = after;
    if (before === after) continue;
    if (before) {
      addCampaign(plan, state.workspaceId, state.campaignId, 'open', ALL_LINKS, before, 1);
      addCampaign(plan, state.workspaceId, state.campaignId, 'open', ALL_LINKS, 'human', -1);
      addRecipient(plan, state, 'open', ALL_LINKS, -1);
    }
    if (after) {
      addCampaign(plan, state.workspaceId, state.campaignId, 'open', ALL_LINKS, after, -1);
      addCampaign(plan, state.workspaceId, state.campaignId, 'open', ALL_LINKS, 'human', 1);
      addRecipient(plan, state, 'open', ALL_LINKS, 1);
    }
  }
}
