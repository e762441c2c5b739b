import { isbot } from 'isbot';
import { TtlLru } from './lru.js';

/*
 * Is a tracking hit a person, a machine, or impossible to tell? Pure rules over the
 * raw facts of one hit (and, for clicks, whether it was part of a burst — worked out
 * by the recorder, which sees the neighbouring hits). Every verdict carries short,
 * stable reasons, stored with the event and shown in stats.
 *
 *   machine  any machine signal: HEAD request, the honeypot link, a click from the same
 *            client (address and agent) as a HEAD or honeypot hit of the send within
 *            seconds (worked out by the recorder), an Apple Mail Privacy Protection
 *            address (opens, unless Safari's agent says it is Private Relay browsing), a
 *            link scanner or generic bot user agent, a hit within seconds of sending,
 *            every link of the message at once.
 *   unknown  no machine signal, but the hit comes through a mail provider's image proxy
 *            that fetches on the reader's behalf (Gmail, Yahoo), or carries no user agent:
 *            probably a person opening, but nothing proves it.
 *   human    a mail client or browser talking to us directly, with no machine signal.
 *
 * Stats upgrade a machine/unknown open when the same send later gets a human click
 * (stats.repo.ts); that is not done here because the click comes later.
 */

export type Classification = 'human' | 'machine' | 'unknown';
export type HitType = 'open' | 'click';

export const REASONS = {
  headRequest: 'head_request',
  honeypot: 'honeypot',
  appleMppIp: 'apple_mpp_ip',
  googleImageProxy: 'google_image_proxy',
  yahooMailProxy: 'yahoo_mail_proxy',
  scannerUserAgent: 'scanner_user_agent',
  botUserAgent: 'bot_user_agent',
  noUserAgent: 'no_user_agent',
  tooSoonAfterSend: 'too_soon_after_send',
  allLinksAtOnce: 'all_links_at_once',
  prefetch: 'prefetch',
  sameClientAsMachine: 'same_client_as_machine',
  noMachineSignal: 'no_machine_signal',
  /** Set by stats, never stored: a machine/unknown open counted human because of a later human click. */
  upgradedByHumanClick: 'upgraded_by_human_click',
} as const;

export interface HitFacts {
  type: HitType;
  method: string;
  atMs: number;
  ip?: string;
  userAgent?: string;
  /** When the send went out (or was claimed, while it is still going out); null when unknown. */
  sentAtMs: number | null;
  /** Click on the hidden link no person sees. */
  honeypot?: boolean;
  /** Click that is part of a burst covering the message's links within a second. */
  linkBurst?: boolean;
  /** The client said it fetched ahead of a person (Sec-Purpose: prefetch and its kin): a browser's or a mail app's preload, not a read or a click. */
  prefetch?: boolean;
  /** Click from the same address and agent as a HEAD or honeypot hit of the same send, within SAME_CLIENT_WINDOW_MS (recorder.ts). */
  sameClientAsMachine?: boolean;
}

/** Shared between hits (frozen): never change one. */
export interface Verdict {
  readonly classification: Classification;
  readonly reasons: readonly string[];
}

/** What a user agent says about the client, before anything else is known. */
export type AgentKind = 'none' | 'google_image_proxy' | 'yahoo_mail_proxy' | 'scanner' | 'office' | 'bot' | 'client';

/**
 * Mail security gateways and link scanners that say who they are. Many do not (they
 * borrow a browser's user agent); the timing and burst rules catch those.
 */
const SCANNER_AGENTS =
  /barracuda|proofpoint|mimecast|symantec|broadcom|forcepoint|fireeye|trellix|sophos|trend ?micro|ironport|cisco[ -]?(secure|esa)|fortinet|fortimail|fortiguard|check ?point|zscaler|mcafee|safe ?links|urldefense|appriver|vade ?secure|cloudmark|spamtitan|hornet ?security|libraesva|abnormal ?security|avanan|menlo ?security|netskope|paloalto|websense|microsoft office (existence|protocol) discovery|microsoft-webdav-miniredir|ms-search/i;
/**
 * Microsoft Office's own HTTP client. Outlook (Windows) loads a message's images with
 * it — a person opening — but a *link* fetched by it is Office checking the target
 * before (or instead of) handing it to the browser.
 */
const OFFICE_AGENT = /\bms-office\b|\bmsoffice\b|microsoft office\/|microsoft outlook/i;

/**
 * Safari says `Version/<n> … Safari/<n>`; Mail's web view (the agent of Apple Mail and of
 * Mail Privacy Protection's fetches) says neither. Through an Apple egress address, Safari is
 * a person browsing with iCloud Private Relay, not Mail Privacy Protection (apple-mpp.ts).
 */
const SAFARI_AGENT = /\bVersion\/\d[\d.]*\b.*\bSafari\/\d/;
/** Safari's agent is ~150 characters: a longer one is read no further (the pattern backtracks on a crafted 16 KB one). */
const isSafariAgent = (userAgent: string) => SAFARI_AGENT.test(userAgent.slice(0, 512));

export function agentKind(userAgent: string | undefined): AgentKind {
  if (!userAgent || !userAgent.trim()) return 'none';
  if (userAgent.includes('GoogleImageProxy')) return 'google_image_proxy';
  if (userAgent.includes('YahooMailProxy')) return 'yahoo_mail_proxy';
  if (SCANNER_AGENTS.test(userAgent)) return 'scanner';
  if (OFFICE_AGENT.test(userAgent)) return 'office';
  if (isbot(userAgent)) return 'bot';
  return 'client';
}

export interface ClassifierOptions {
  /** Apple Mail Privacy Protection egress lookup. */
  isAppleMppIp: (ip: string) => boolean;
  /** A hit sooner than this after sending is a machine (default 10 s). */
  tooSoonMs?: number;
}

export const DEFAULT_TOO_SOON_MS = 10_000;

export function createClassifier(options: ClassifierOptions) {
  const tooSoonMs = options.tooSoonMs ?? DEFAULT_TOO_SOON_MS;
  // isbot is one large regular expression (~3 µs); user agents repeat, so remember verdicts.
  const agents = new TtlLru<string, AgentKind>(5_000, 3600_000);
  const kindOf = (userAgent: string | undefined): AgentKind => {
    if (!userAgent) return 'none';
    let kind = agents.get(userAgent);
    if (kind === undefined) {
      kind = agentKind(userAgent);
      agents.set(userAgent, kind);
    }
    return kind;
  };

  return function classify(hit: HitFacts): Verdict {
    let machine = 0;
    let unknown = 0;
    if (hit.method === 'HEAD') machine |= HEAD_REQUEST;
    if (hit.prefetch) machine |= PREFETCH;
    if (hit.type === 'click' && hit.honeypot) machine |= HONEYPOT;
    const kind = kindOf(hit.userAgent);
    // Apple's ranges carry Private Relay browsing too: Safari there is judged by what else is known.
    if (hit.type === 'open' && hit.ip && options.isAppleMppIp(hit.ip) && !(kind === 'client' && isSafariAgent(hit.userAgent!))) machine |= APPLE_MPP_IP;
    switch (kind) {
      case 'google_image_proxy':
        if (hit.type === 'open') unknown |= GOOGLE_IMAGE_PROXY;
        else machine |= GOOGLE_IMAGE_PROXY;
        break;
      case 'yahoo_mail_proxy':
        if (hit.type === 'open') unknown |= YAHOO_MAIL_PROXY;
        else machine |= YAHOO_MAIL_PROXY;
        break;
      case 'scanner':
        machine |= SCANNER_USER_AGENT;
        break;
      case 'office':
        if (hit.type === 'click') machine |= SCANNER_USER_AGENT;
        break;
      case 'bot':
        machine |= BOT_USER_AGENT;
        break;
      case 'none':
        // Every browser sends a user agent; a click without one is a script. An image
        // fetch without one may be a privacy-minded client.
        if (hit.type === 'click') machine |= NO_USER_AGENT;
        else unknown |= NO_USER_AGENT;
        break;
      case 'client':
        break;
    }

    if (hit.sentAtMs !== null && hit.atMs - hit.sentAtMs < tooSoonMs) machine |= TOO_SOON_AFTER_SEND;
    if (hit.type === 'click' && hit.linkBurst) machine |= ALL_LINKS_AT_ONCE;
    if (hit.type === 'click' && hit.sameClientAsMachine) machine |= SAME_CLIENT_AS_MACHINE;
    return verdictOf(machine, unknown);
  };
}

/*
 * A verdict is one of a few hundred combinations of reasons, so each is made once and shared
 * (frozen): classifying thousands of hits a second allocates nothing that outlives the call,
 * and a batch of events refers to a handful of reason lists instead of holding one per event.
 * A reason's bit is its place in the stored list: machine reasons in the order the rules
 * run (at most one comes from the user agent), then the unknown ones.
 */
const REASON_ORDER = [
  REASONS.headRequest,
  REASONS.honeypot,
  REASONS.appleMppIp,
  REASONS.googleImageProxy,
  REASONS.yahooMailProxy,
  REASONS.scannerUserAgent,
  REASONS.botUserAgent,
  REASONS.noUserAgent,
  REASONS.tooSoonAfterSend,
  REASONS.allLinksAtOnce,
  REASONS.prefetch,
  REASONS.sameClientAsMachine,
] as const;
const bit = (reason: (typeof REASON_ORDER)[number]) => 1 << REASON_ORDER.indexOf(reason);
const HEAD_REQUEST = bit(REASONS.headRequest);
const HONEYPOT = bit(REASONS.honeypot);
const APPLE_MPP_IP = bit(REASONS.appleMppIp);
const GOOGLE_IMAGE_PROXY = bit(REASONS.googleImageProxy);
const YAHOO_MAIL_PROXY = bit(REASONS.yahooMailProxy);
const SCANNER_USER_AGENT = bit(REASONS.scannerUserAgent);
const BOT_USER_AGENT = bit(REASONS.botUserAgent);
const NO_USER_AGENT = bit(REASONS.noUserAgent);
const TOO_SOON_AFTER_SEND = bit(REASONS.tooSoonAfterSend);
const ALL_LINKS_AT_ONCE = bit(REASONS.allLinksAtOnce);
const PREFETCH = bit(REASONS.prefetch);
const SAME_CLIENT_AS_MACHINE = bit(REASONS.sameClientAsMachine);

const reasonsOf = (mask: number) => REASON_ORDER.filter((_, i) => mask & (1 << i));
const verdicts = new Map<number, Verdict>();
function verdictOf(machine: number, unknown: number): Verdict {
  const key = machine | (unknown << REASON_ORDER.length);
  let verdict = verdicts.get(key);
  if (!verdict) {
    const made: Verdict =
      machine !== 0
        ? { classification: 'machine', reasons: [...reasonsOf(machine), ...reasonsOf(unknown)] }
        : unknown !== 0
          ? { classification: 'unknown', reasons: reasonsOf(unknown) }
          : { classification: 'human', reasons: [REASONS.noMachineSignal] };
    Object.freeze(made.reasons);
    verdict = Object.freeze(made);
    verdicts.set(key, verdict);
  }
  return verdict;
}

export type Classify = ReturnType<typeof createClassifier>;

/** Distinct links that must be hit within the window for a burst, from the links of the mail that was hit (its step's: send-cache.ts contentLinkCountOf). */
export const BURST_WINDOW_MS = 1_000;
/**
 * A HEAD or a honeypot hit is a machine, and so is every click of the same send from the same
 * address and agent this close to it, before or after (a scanner clicks the button, then the
 * hidden link; a link checker sends HEAD, then GET). Clicks are held this long (recorder.ts).
 */
export const SAME_CLIENT_WINDOW_MS = 10_000;
export function burstThreshold(contentLinkCount: number): number | undefined {
  // One link cannot form a burst; three distinct links inside a second is beyond a person.
  return contentLinkCount < 2 ? undefined : Math.min(contentLinkCount, 3);
}

/**
 * True when a hit at `atMs` lies inside some window of `windowMs` in which at least
 * `required` distinct links of the same send were hit (the hit itself among `hits`).
 */
export function inLinkBurst(
  hits: readonly { linkIndex: number; atMs: number }[],
  atMs: number,
  required: number,
  windowMs = BURST_WINDOW_MS,
): boolean {
  // Cheap rejection first (the usual case): not enough distinct links anywhere near the hit.
  const near = new Set<number>();
  for (const hit of hits) if (Math.abs(hit.atMs - atMs) <= windowMs) near.add(hit.linkIndex);
  if (near.size < required) return false;
  for (const anchor of hits) {
    // Windows [anchor, anchor + window] that contain atMs.
    if (anchor.atMs > atMs || anchor.atMs + windowMs < atMs) continue;
    const distinct = new Set<number>();
    for (const hit of hits) if (hit.atMs >= anchor.atMs && hit.atMs <= anchor.atMs + windowMs) distinct.add(hit.linkIndex);
    if (distinct.size >= required) return true;
  }
  return false;
}
