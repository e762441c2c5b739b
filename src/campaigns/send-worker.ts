import { composeMime } from '../gmail/compose-mime.js';
import { GMAIL_SCOPES, SEND_OUTCOME_UNKNOWN } from '../gmail/gmail-client.js';
import { GmailError } from '../gmail/gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from '../gmail/mailboxes.repo.js';
import type { MailboxService } from '../gmail/mailboxes.service.js';
import type { MailboxPacer } from '../gmail/pacer.js';
import type { Logger } from '../logger.js';
import type { TrackingUrls } from '../tracking/urls.js';
import { buildCampaignMail } from './campaign-mail.js';
import type { CampaignRow, CampaignsRepo, ClaimedSend } from './campaigns.repo.js';
import { isInsideWindow } from './sending-window.js';
import type { MergeContact } from './templates.js';

const DAY_MS = 24 * 3600 * 1000;
const MAX_ATTEMPTS = 5;
/** A send still `sending` after this long lost its process (crash) or its answer. */
const STUCK_AFTER_MS = 2 * 60 * 1000;

export interface SendWorkerDeps {
  repo: CampaignsRepo;
  mailboxRepo: MailboxesRepo;
  mailboxes: MailboxService;
  pacer: MailboxPacer;
  urls: TrackingUrls;
  logger: Logger;
  batchSize?: number;
  /** Sends in flight at once per batch; default 4. */
  concurrency?: number;
  now?: () => Date;
  /** Test seam: runs after Gmail accepted a message and before the ledger records it (a crash there). */
  afterGmailAccepted?: (sendId: string) => void | Promise<void>;
}

const senderDomain = (email: string) => email.split('@')[1] ?? 'inboxtrail.invalid';

/**
 * Drains the send ledger. Each tick, per campaign that may send now: claim a batch (the
 * claim re-checks suppression and consent, invariant 1), send each through the mailbox's
 * pacer, record the outcome. Several workers may run against one Postgres server; the
 * claim's SKIP LOCKED keeps them off each other's rows.
 */
export function createSendWorker(deps: SendWorkerDeps) {
  const { repo, mailboxes, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const batchSize = deps.batchSize ?? 50;
  const concurrency = deps.concurrency ?? 4;

  async function pauseForReconnect(campaign: CampaignRow) {
    await repo.transition(campaign.id, ['sending', 'scheduled'], { status: 'paused', statusReason: 'mailbox_needs_reconnect' });
    logger.warn({ campaignId: campaign.id }, 'campaign paused: its mailbox must be reconnected');
  }

  /** What every send of one batch shares: loaded once per batch, not once per message. */
  interface BatchContext {
    campaign: CampaignRow;
    mailbox: MailboxRow;
    postalAddress: string | null;
    links: Awaited<ReturnType<CampaignsRepo['linksOf']>>;
    contacts: Map<string, MergeContact>;
  }

  async function sendOne(batch: BatchContext, send: ClaimedSend): Promise<'sent' | 'stop'> {
    const { campaign, mailbox } = batch;
    const previous = send.step > 0 ? await repo.previousStep(campaign.id, send.recipientId, send.step) : undefined;
    const mail = buildCampaignMail({
      campaign,
      send,
      contact: (send.contactId && batch.contacts.get(send.contactId)) || { email: send.email, firstName: null, lastName: null, attributes: {} },
      from: mailbox.email,
      links: batch.links,
      urls: deps.urls,
      postalAddress: batch.postalAddress,
      previous: previous ? { rfc822MessageId: previous.rfc822MessageId } : undefined,
    });
    try {
      const raw = await composeMime(mail);
      const sent = await mailboxes.withGmail(mailbox, (gmail) => gmail.sendRaw(raw, previous?.gmailThreadId ?? undefined));
      await deps.afterGmailAccepted?.(send.id);
      await recordSent(campaign, send, sent, mail.subject, mailbox);
      return 'sent';
    } catch (error) {
      if (!(error instanceof GmailError)) throw error;
      return recordFailure(campaign, send, error);
    }
  }

  /**
   * Sends a claimed batch a few at a time (Gmail allows a handful of concurrent calls per
   * user; the pacer still meters quota). When one send says stop (rate limit, revoked
   * grant), nothing new starts, and the batch's unstarted rows go back to the queue.
   */
  async function sendBatch(batch: BatchContext, claimed: ClaimedSend[]): Promise<number> {
    let next = 0;
    let sent = 0;
    let stop = false;
    const lane = async () => {
      while (!stop && next < claimed.length) {
        const send = claimed[next++]!;
        if ((await sendOne(batch, send)) === 'stop') stop = true;
        else sent += 1;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, claimed.length) }, lane));
    for (const unstarted of claimed.slice(next)) {
      await repo.requeue({ id: unstarted.id, messageRowId: unstarted.messageRowId }, now(), 'deferred');
    }
    return sent;
  }

  async function recordSent(campaign: CampaignRow, send: ClaimedSend, gmail: { id: string; threadId: string }, subject: string, mailbox: MailboxRow) {
    const at = now();
    const nextStep = campaign.steps[send.step];
    if (!nextStep) {
      await repo.markSent({ id: send.id, messageRowId: send.messageRowId }, gmail, at, subject);
      return;
    }
    await repo.transaction(async (tx) => {
      await tx.markSent({ id: send.id, messageRowId: send.messageRowId }, gmail, at, subject);
      await tx.queueNextStep(campaign, send, senderDomain(mailbox.email), new Date(at.getTime() + nextStep.afterDays * DAY_MS));
    });
  }

  async function recordFailure(campaign: CampaignRow, send: ClaimedSend, error: GmailError): Promise<'sent' | 'stop'> {
    const ledger = { id: send.id, messageRowId: send.messageRowId };
    if (error.reason === SEND_OUTCOME_UNKNOWN) {
      // It may have gone out: leave it `sending`; recovery searches the mailbox before any retry.
      logger.warn({ sendId: send.id }, 'send outcome unknown; left for recovery');
      return 'stop';
    }
    if (error.kind === 'auth_revoked') {
      await repo.requeue(ledger, now(), 'auth_revoked');
      await pauseForReconnect(campaign);
      return 'stop';
    }
    if (error.kind === 'rate_limited' || error.kind === 'temporary') {
      if (send.attempts >= MAX_ATTEMPTS) {
        await repo.markFailed(ledger, error.kind);
        return 'sent';
      }
      const waitMs = error.retryAfterSeconds ? error.retryAfterSeconds * 1000 : 30_000 * 2 ** (send.attempts - 1);
      await repo.requeue(ledger, new Date(now().getTime() + waitMs), error.kind);
      return 'stop';
    }
    await repo.markFailed(ledger, error.reason ?? error.kind);
    return 'sent';
  }

  /**
   * A send found in `sending` is resolved by asking the mailbox whether our Message-ID is
   * there, before any retry (invariant 3). Without read access that question cannot be
   * asked, so the send is marked failed rather than risk a second copy (at most once).
   */
  async function recoverStuck(olderThan = new Date(now().getTime() - STUCK_AFTER_MS)): Promise<number> {
    let resolved = 0;
    for (const { send, mailbox, campaign } of await repo.stuckSends(olderThan)) {
      const ledger = { id: send.id, messageRowId: send.messageId };
      if (!mailbox || !mailbox.scopes.includes(GMAIL_SCOPES.readonly) || mailbox.status !== 'active') {
        if (mailbox && mailbox.status !== 'active') continue; // resolved after reconnecting
        await repo.markFailed(ledger, SEND_OUTCOME_UNKNOWN);
        resolved += 1;
        continue;
      }
      try {
        const found = await mailboxes.withGmail(mailbox, (gmail) => gmail.findByRfc822MessageId(send.rfc822MessageId));
        const claimed: ClaimedSend = {
          id: send.id,
          campaignId: send.campaignId,
          step: send.step,
          contactId: send.contactId,
          recipientId: send.recipientId,
          email: send.email,
          rfc822MessageId: send.rfc822MessageId,
          messageRowId: send.messageId ?? '',
          attempts: send.attempts,
        };
        if (found.length > 0) await recordSent(campaign, claimed, found[0]!, campaign.subject, mailbox);
        else if (send.messageId) await repo.requeue({ id: send.id, messageRowId: send.messageId }, now(), 'recovered_unsent');
        resolved += 1;
      } catch (error) {
        logger.warn({ sendId: send.id, err: error instanceof GmailError ? error.message : 'error' }, 'could not resolve a stuck send yet');
      }
    }
    return resolved;
  }

  /** One pass over every active campaign; returns how many messages went out. */
  async function tick(): Promise<number> {
    let sentCount = 0;
    for (const paused of await repo.pausedForReconnect()) {
      const mailbox = paused.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(paused.mailboxId) : undefined;
      if (mailbox?.status === 'active') await repo.transition(paused.id, ['paused'], { status: 'sending', statusReason: null });
    }
    for (const campaign of await repo.activeCampaigns(now())) {
      if (campaign.status === 'scheduled') {
        if (!(await repo.transition(campaign.id, ['scheduled'], { status: 'sending', statusReason: null }))) continue;
      }
      const mailbox = campaign.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(campaign.mailboxId) : undefined;
      if (!mailbox) {
        await repo.transition(campaign.id, ['sending'], { status: 'paused', statusReason: 'mailbox_disconnected' });
        continue;
      }
      if (mailbox.status !== 'active') {
        await pauseForReconnect(campaign);
        continue;
      }
      if (!isInsideWindow(campaign.sendingWindow, now()) || (await deps.pacer.pauseEndsAt(mailbox.id))) continue;
      const budget = await mailboxes.remainingBudget(mailbox);
      if (budget <= 0) continue;

      const claimed = await repo.transaction((tx) => tx.claimDue(campaign, mailbox, Math.min(batchSize, budget), now()));
      if (claimed.length > 0) {
        const contactIds = claimed.map((c) => c.contactId).filter((id): id is string => id !== null);
        const batch: BatchContext = {
          campaign,
          mailbox,
          postalAddress: await repo.postalAddressOf(campaign.workspaceId),
          links: await repo.linksOf(campaign.id),
          contacts: new Map((await repo.contactsForMerge(contactIds)).map((c) => [c.id, c])),
        };
        sentCount += await sendBatch(batch, claimed);
      }
      await repo.completeIfDone(campaign.id, now());
    }
    return sentCount;
  }

  /** Ticks until a pass sends nothing: for tests, the CLI and benchmarks. */
  async function runUntilIdle(maxTicks = 10_000): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxTicks; i += 1) {
      const sent = await tick();
      total += sent;
      if (sent === 0) break;
    }
    return total;
  }

  return {
    tick,
    runUntilIdle,
    recoverStuck,
  };
}

export type SendWorker = ReturnType<typeof createSendWorker>;
