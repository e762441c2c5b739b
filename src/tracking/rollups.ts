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
 * deletes it in the same transaction, so nothing counts twice. The additive part — events by
 * type and verdict per campaign and link, human events per recipient — is summed from the
 * pending records by rollup-window.ts, into the same plan. What needs rules is here, per
 * send: the upgrade is kept per send (its first human click and open, and the verdict of the
 * open it upgraded), and re-judged from the send's stored opens whenever an event could move it.
 * Passes over one campaign are serialized (a transaction-scoped advisory lock), so each
 * re-judgement sees every rollup before it; the stored opens it reads may include events
 * still pending in a later window — their own pass re-judges again and the counts converge
 * (until then a class count can be transiently lower by such an upgraded open).
 *
 * Here "inserted" means "in this pass's window": a window is planned as one batch, from one
 * row per send (WindowSend), not one per event.
 */

/**
 * One send of the pass's window, summed by rollup-window.ts (summarizeSends) and kept by the
 * read statement (rollups.repo.ts): its send still exists, and the window holds a human event
 * of it or a non-human open that may move its upgrade.
 * Times are the earliest of each kind in the window (null: none).
 */
export interface WindowSend {
  sendId: string;
  workspaceId: string;
  campaignId: string;
  recipientId: string;
  firstHumanClickMs: number | null;
  firstHumanOpenMs: number | null;
  firstNonHumanOpenMs: number | null;
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
  /** The upgrades' moves (rollups.ts) and the additive counts (rollup-window.ts countWindow). */
  campaign: Map<string, CampaignDelta>;
  recipient: Map<string, RecipientDelta>;
  /** Send states after this batch, by send id: those the window changed, and those re-judged (their upgrade may move). */
  states: Map<string, SendState>;
  /** Sends whose upgrade must be re-judged from their stored opens, with their first human click. */
  recheck: { sendId: string; firstHumanClickMs: number }[];
  /** Of those, the sends whose latest earlier open must be looked up (the others had a human open first: no upgrade). */
  lookups: { sendId: string; firstHumanClickMs: number }[];
}

/** The earlier of two optional times. */
export const earliest = (a: number | null, b: number | null) => (a === null ? b : b === null || a <= b ? a : b);

export function addCampaign(plan: RollupPlan, workspaceId: string, campaignId: string, type: HitType, linkIndex: number, cls: Classification, n: number) {
  const key = `${campaignId}|${type}|${linkIndex}`;
  let delta = plan.campaign.get(key);
  if (!delta) {
    delta = { workspaceId, campaignId, type, linkIndex, human: 0, machine: 0, unknown: 0, uniqueHuman: 0 };
    plan.campaign.set(key, delta);
  }
  delta[cls] += n;
}

export function addRecipient(plan: RollupPlan, state: Pick<SendState, 'workspaceId' | 'campaignId' | 'recipientId'>, type: HitType, linkIndex: number, n: number) {
  const key = `${state.campaignId}|${state.recipientId}|${type}|${linkIndex}`;
  const delta = plan.recipient.get(key);
  if (delta) delta.humanEvents += n;
  else plan.recipient.set(key, { workspaceId: state.workspaceId, campaignId: state.campaignId, recipientId: state.recipientId, type, linkIndex, humanEvents: n });
}

/**
 * Step 1: the new first-human times of the window's sends, and which sends' upgrade may have
 * moved (to be re-judged from the database): a send with a first human click moves when it
 * had no state, when its first human click or open changed, or when the window holds a
 * non-human open at or before that click.
 */
export function planRollups(window: readonly WindowSend[], known: ReadonlyMap<string, SendState>): RollupPlan {
  const plan: RollupPlan = { campaign: new Map(), recipient: new Map(), states: new Map(), recheck: [], lookups: [] };
  for (const send of window) {
    const before = known.get(send.sendId);
    let after = before;
    if (send.firstHumanClickMs !== null || send.firstHumanOpenMs !== null) {
      after = {
        sendId: send.sendId,
        workspaceId: send.workspaceId,
        campaignId: send.campaignId,
        recipientId: send.recipientId,
        firstHumanClickMs: earliest(before?.firstHumanClickMs ?? null, send.firstHumanClickMs),
        firstHumanOpenMs: earliest(before?.firstHumanOpenMs ?? null, send.firstHumanOpenMs),
        upgradedClass: before?.upgradedClass ?? null,
      };
      // A later human event leaves the state as it was: nothing to write (a row update each
      // was half of a pass's writes, BENCHMARKS.md issue 14 eighteenth pass).
      if (before === undefined || before.firstHumanClickMs !== after.firstHumanClickMs || before.firstHumanOpenMs !== after.firstHumanOpenMs) {
        plan.states.set(send.sendId, after);
      }
    }
    if (!after || after.firstHumanClickMs === null) continue;
    const click = after.firstHumanClickMs;
    const moved =
      before === undefined ||
      before.firstHumanClickMs !== after.firstHumanClickMs ||
      before.firstHumanOpenMs !== after.firstHumanOpenMs ||
      (send.firstNonHumanOpenMs !== null && send.firstNonHumanOpenMs <= click);
    if (!moved) continue;
    plan.states.set(send.sendId, { ...after });
    plan.recheck.push({ sendId: send.sendId, firstHumanClickMs: click });
    if (after.firstHumanOpenMs === null || after.firstHumanOpenMs > click) plan.lookups.push({ sendId: send.sendId, firstHumanClickMs: click });
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
