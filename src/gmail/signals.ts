import { getDomain } from 'tldts';
import type { Config } from '../config.js';
import type { FailedRecipient, NoticeFormat } from './bounces/types.js';
import { isDaemonSender } from './mail-events.js';
import type { OriginalMessage, SyncQueries } from './sync.repo.js';
import { DAY_MS } from '../time.js';

/*
 * What mail read from a mailbox does to mail we sent (see README.md "Signals" and SIGNALS.md):
 *
 *   reply       a person answered            → mail_events(reply); the campaign sequence stops:
 *                                               queued later steps skipped `replied` at once
 *   auto_reply  an out-of-office or robot    → mail_events(auto_reply); the next step waits
 *                                               AUTO_REPLY_FOLLOW_UP_DELAY_DAYS, never stops
 *   bounce      delivery failed (hard|soft)  → mail_events(bounce); hard suppresses at once,
 *                                               soft after BOUNCE_SOFT_LIMIT in BOUNCE_SOFT_WINDOW_DAYS;
 *                                               once suppressed, queued later steps skipped `suppressed`;
 *                                               any bounce: the message's later steps skipped `bounced`
 *   delay       still being retried          → mail_events(delay); nothing else
 *
 * Everything here runs inside the sync's transaction for that message, so the event and
 * its effects (suppression through the suppression repo, follow-up dates) commit together.
 */

/** Clock skew between our send time and the notice's: a notice may look a little older than the send it reports. */
const MATCH_SKEW_MS = 3_600_000;

export interface BounceMatch {
  original: OriginalMessage;
  /** `address` is the address we sent to; `finalRecipient` the one that failed, when a forward made them differ. */
  recipients: (FailedRecipient & { finalRecipient?: string })[];
}

export interface BounceMatching {
  matches: BounceMatch[];
  /**
   * Recipients for whom no send of ours from this mailbox was found at all — among them every
   * recipient of a notice that quotes a message that is not one of ours (another workspace's
   * send from the same Gmail address, mail written in Gmail we never stored).
   */
  unmatched: FailedRecipient[];
  /** Recipients the named message of ours was never sent to (and no recent send to them either): never acted on. */
  notSent: FailedRecipient[];
  /** Recipients of a notice that names no message of ours and is not from a mail system that may report on them (mayReportOn). */
  unverified: FailedRecipient[];
}

/** Google's own notices (we send through Gmail): its mailer-daemon reports on any recipient. */
const PROVIDER_NOTICE_DOMAINS = new Set(['googlemail.com', 'google.com', 'gmail.com']);
const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();
/**
 * The organization a domain belongs to: its registrable domain by the Public Suffix List
 * (tldts), private suffixes included, so `mx.example.co.uk` is `example.co.uk` and
 * `alice.github.io` is not `bob.github.io`. A name the list cannot place (a bare suffix, one
 * label) is only itself.
 */
function organizationOf(domain: string): string {
  return getDomain(domain, { allowPrivateDomains: true }) ?? domain;
}

/**
 * Whether a notice that names no message of ours may still be matched to our latest send to
 * `address`: only a mail system's own address (mailer-daemon@, postmaster@) of Google (whose
 * mailer-daemon reports what Gmail could not deliver) or of the address's own organization
 * (`postmaster@mx.contoso.test` on `ann@contoso.test`). Anyone else writing "Undeliverable: …"
 * could otherwise suppress any address this mailbox mailed lately. Spoofing those senders meets
 * Gmail's own checks (DMARC) before the mail reaches the inbox sync reads.
 */
/** A notice from Google's own mail system (we send through Gmail). */
const isProviderNotice = (notifier: string | undefined) => Boolean(notifier && isDaemonSender(notifier) && PROVIDER_NOTICE_DOMAINS.has(domainOf(notifier)));

export function mayReportOn(notifier: string | undefined, address: string): boolean {
  if (!notifier || !isDaemonSender(notifier)) return false;
  const from = domainOf(notifier);
  return PROVIDER_NOTICE_DOMAINS.has(from) || organizationOf(from) === organizationOf(domainOf(address));
}

/** Every address a message of ours went to (To, Cc, Bcc), lowercased. */
export const sentTo = (m: OriginalMessage) => new Set([...m.toAddresses, ...m.ccAddresses, ...m.bccAddresses].map((a) => a.toLowerCase()));

export type SignalsConfig = Config['signals'];

export function createSignals(config: SignalsConfig) {
  return {
    /**
     * Which send of ours each failed recipient is about. A notice that quotes the bounced
     * message's Message-ID (`quotedId`) is about that message only: if it is this mailbox's send
     * to the address, that one; else nothing (`unmatched` when it is no message of ours) — never
     * "some other send to the address", which would pin another workspace's bounce, or one of
     * mail written in Gmail, on ours. Only a notice that quotes none is matched by its threading
     * headers, then by our latest send to the address from this mailbox within
     * BOUNCE_MATCH_WINDOW_DAYS before the notice, when it comes from a mail system that may
     * report on the address (mayReportOn). A notice naming an address this mailbox never sent to
     * is not acted on.
     */
    async matchBounce(
      repo: Pick<SyncQueries, 'findOutboundByRfc822Ids' | 'latestSendTo'>,
      input: { workspaceId: string; mailboxId: string; at: Date; quotedId?: string; threadingIds: string[]; recipients: FailedRecipient[]; notifier?: string },
    ): Promise<BounceMatching> {
      const quoted = Boolean(input.quotedId);
      const candidateIds = input.quotedId ? [input.quotedId] : input.threadingIds;
      const named = await repo.findOutboundByRfc822Ids(input.workspaceId, candidateIds, input.mailboxId);
      const ordered = candidateIds.flatMap((id) => named.filter((m) => m.rfc822MessageId === id));
      const window = { from: new Date(input.at.getTime() - config.matchWindowDays * DAY_MS), to: new Date(input.at.getTime() + MATCH_SKEW_MS) };
      const groups = new Map<string, BounceMatch>();
      const result: BounceMatching = { matches: [], unmatched: [], notSent: [], unverified: [] };
      for (const found of input.recipients) {
        // A forward or alias: the report's Original-Recipient is the address we sent to, and the one acted on.
        const addresses = [...new Set([found.originalRecipient, found.address].filter((a): a is string => Boolean(a)))];
        let original: OriginalMessage | undefined;
        let address = found.address;
        let verified = ordered.length > 0;
        for (const candidate of addresses) {
          original = ordered.find((m) => sentTo(m).has(candidate));
          // Only a notice that quotes no original looks further. One whose threading headers name
          // a message of ours reports on that message's recipients — unless it is Google's own
          // (someone added in Gmail to our thread): an organization's postmaster may be quoting
          // anyone. (Google's prose is read for recipients only in its own words: prose-families.ts.)
          if (!original && !quoted && (ordered.length === 0 || isProviderNotice(input.notifier)) && mayReportOn(input.notifier, candidate)) {
            verified = true;
            original = await repo.latestSendTo(input.workspaceId, input.mailboxId, candidate, window);
          }
          if (original) {
            address = candidate;
            break;
          }
        }
        if (!original) {
          (ordered.length > 0 ? result.notSent : verified || quoted ? result.unmatched : result.unverified).push(found);
          continue;
        }
        const recipient = address === found.address ? found : { ...found, address, originalRecipient: undefined, finalRecipient: found.address };
        const group = groups.get(original.id) ?? { original, recipients: [] };
        group.recipients.push(recipient);
        groups.set(original.id, group);
      }
      result.matches = [...groups.values()];
      return result;
    },

    /**
     * A reply to one of our messages: a person's ends the recipient's sequence in the campaign it
     * answers (its queued later steps skipped `replied` now, the campaign completed if nothing is
     * left); an automatic one pushes them back. Both first take the answered recipient's address
     * lock, ordered with a sent record queuing that recipient's next step (auto-reply-hold-sql.ts
     * holdOrderLock): whichever comes second sees the first.
     */
    async recordReply(
      tx: SyncQueries,
      input: { workspaceId: string; original: OriginalMessage; sourceGmailMessageId: string; from?: string; automatic: boolean; syncedMessageId: string; at: Date },
    ): Promise<{ recorded: boolean; deferred: number; skipped: number }> {
      const holds = input.automatic && config.autoReplyFollowUpDelayDays > 0;
      const stops = !input.automatic;
      if (holds || stops) await tx.lockForReply(input.workspaceId, input.original.id);
      const recorded = await tx.insertMailEvent({
        workspaceId: input.workspaceId,
        messageId: input.original.id,
        type: input.automatic ? 'auto_reply' : 'reply',
        sourceGmailMessageId: input.sourceGmailMessageId,
        recipient: input.from ?? null,
        detail: { automatic: input.automatic, syncedMessageId: input.syncedMessageId },
        at: input.at,
      });
      let deferred = 0;
      let skipped = 0;
      if (recorded && holds) {
        deferred = await tx.deferFollowUps(input.workspaceId, input.original.id, new Date(input.at.getTime() + config.autoReplyFollowUpDelayDays * DAY_MS));
      }
      // Completed as of now: the reply's own time may be hours old (a sync catching up).
      if (recorded && stops) skipped = await tx.skipFollowUps(input.workspaceId, { reason: 'replied', messageId: input.original.id }, new Date());
      return { recorded, deferred, skipped };
    },

    /**
     * Every match of one notice (sync's transaction for it). The recipients' address locks are
     * taken first, together, in key order: one by one with each suppression, in the notice's
     * order, they deadlocked with a group's claim or sent record (holdOrderLock), which take
     * theirs in key order — each side held one and waited for the other, and the server failed
     * one of them (bounce-lock-order.test.ts).
     *
     * An address the notice suppressed (a hard bounce, or the soft bounce that reached the limit)
     * ends its sequences now: its queued later steps that the gate would refuse are skipped
     * `suppressed`, the gate's reason, and their campaigns complete if nothing is left — the
     * entry's own write does it (suppression.repo.ts `suppress`, as every write of an entry),
     * under the address locks taken here first, then the ledger's rows, then a campaign's row,
     * as a reply's transaction and the gate take them. Before, they stayed queued until their day
     * and the campaign `sending`. Any bounce of a message, a soft one below
     * the limit too, ends its recipient's sequence in its campaign (`bounced`, the gate's reason
     * after any bounce of an earlier step), after the events; a delay ends nothing. The campaigns
     * all these skips touched are asked whether they are done once, at the end, in key order
     * (follow-ups.repo.ts oneCompletionQuestion): asked after each skip, in the notice's order, two
     * notices naming sends of the same two campaigns in opposite orders deadlocked on the
     * completion locks (completion-lock-order.test.ts).
     */
    async recordBounces(
      tx: SyncQueries,
      input: { workspaceId: string; matches: BounceMatch[]; sourceGmailMessageId: string; format: NoticeFormat; syncedMessageId: string; at: Date },
    ): Promise<{ bounces: number; delays: number }> {
      const { matches, ...common } = input;
      const total = { bounces: 0, delays: 0 };
      await tx.lockAddresses(input.workspaceId, matches.flatMap((m) => m.recipients.map((r) => r.address)));
      // Each suppression and each bounce below skips; their campaigns' completion is asked once, at the end, in key order.
      await tx.oneCompletionQuestion(async () => {
        for (const match of matches) {
          const recorded = await this.recordBounce(tx, { ...common, match });
          total.bounces += recorded.bounces;
          total.delays += recorded.delays;
        }
        // Any bounce of a message (a soft one below the limit too) ends its recipient's sequence in its
        // campaign: the gate skips those steps `bounced`. After the entries' own `suppressed` skips, the
        // gate's first reason; their rows are of addresses this transaction holds the locks of. A
        // notice read again finds nothing queued. Completed as of now, like a reply's: the notice's
        // own time may be hours old.
        const at = new Date();
        const bounced = new Set(matches.filter((m) => m.recipients.some((r) => r.class !== 'delay')).map((m) => m.original.id));
        for (const messageId of bounced) await tx.skipFollowUps(input.workspaceId, { reason: 'bounced', messageId }, at);
      });
      return total;
    },

    /**
     * One event per failed recipient of a matched send. Hard → suppressed now; soft → counted,
     * suppressed once BOUNCE_SOFT_LIMIT soft bounces of the address fall within the window;
     * delay → recorded only.
     */
    async recordBounce(
      tx: SyncQueries,
      input: { workspaceId: string; match: BounceMatch; sourceGmailMessageId: string; format: NoticeFormat; syncedMessageId: string; at: Date },
    ): Promise<{ bounces: number; delays: number; suppressed: string[] }> {
      const outcome = { bounces: 0, delays: 0, suppressed: [] as string[] };
      for (const r of input.match.recipients) {
        let suppress = r.class === 'hard';
        let softInWindow: number | undefined;
        if (r.class === 'soft') {
          const since = new Date(input.at.getTime() - config.softWindowDays * DAY_MS);
          softInWindow = (await tx.countSoftBounces(input.workspaceId, r.address, since, input.sourceGmailMessageId)) + 1;
          suppress = softInWindow >= config.softBounceLimit;
        }
        if (suppress) {
          await tx.suppress({ workspaceId: input.workspaceId, email: r.address, reason: 'bounce', source: `dsn:${input.sourceGmailMessageId}` });
          outcome.suppressed.push(r.address);
        }
        const recorded = await tx.insertMailEvent({
          workspaceId: input.workspaceId,
          messageId: input.match.original.id,
          type: r.class === 'delay' ? 'delay' : 'bounce',
          sourceGmailMessageId: input.sourceGmailMessageId,
          recipient: r.address,
          detail: {
            kind: r.class,
            recipient: r.address,
            action: r.action,
            status: r.status ?? null,
            reason: r.reason,
            ...(r.diagnostic ? { diagnostic: r.diagnostic } : {}),
            ...(r.finalRecipient ? { finalRecipient: r.finalRecipient } : {}),
            format: input.format,
            ...(softInWindow !== undefined ? { softBouncesInWindow: softInWindow } : {}),
            suppressed: suppress,
            syncedMessageId: input.syncedMessageId,
          },
          at: input.at,
        });
        if (recorded && r.class === 'delay') outcome.delays += 1;
        else if (recorded) outcome.bounces += 1;
      }
      return outcome;
    },
  };
}

export type Signals = ReturnType<typeof createSignals>;
