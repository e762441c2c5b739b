import type { Logger } from '../logger.js';
import { ContentAccessRefusedError, type GmailGuard } from '../privacy/gmail-guard.js';
import { readBounceNotice } from './bounces/read-notice.js';
import type { BounceNotice } from './bounces/types.js';
import type { GmailMessageMetadata, MailboxGmail } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxRow } from './mailboxes.repo.js';
import { SYNC_METADATA_HEADERS, classifyMessage, looksLikeDsn, parseAddressList, parseMessageIds, type MailClassification } from './mail-events.js';
import { sentTo, type createSignals } from './signals.js';
import type { SkipReason, SyncHealthCounts } from './sync-health.js';
import { parseDate } from './sync-support.js';
import type { OriginalMessage, SyncRepo } from './sync.repo.js';

/*
 * Sync's per-message step (see README.md "Sync"), shared by full and incremental sync: keeps
 * only mail with a CRM contact or about a message we sent, as metadata, and turns replies and
 * bounces into mail_events. sync.service.ts lists the ids and runs the passes.
 */

/** Not mail that happened: drafts, spam, chat. */
export const SKIPPED_LABELS = new Set(['DRAFT', 'SPAM', 'CHAT']);

/** One message's outcome: counters to add (read, kept, a skip reason, the signals recorded). */
export type MessageResult = Partial<SyncHealthCounts>;
const skipped = (reason: SkipReason, read = true): MessageResult => ({ ...(read ? { read: 1 } : {}), [reason]: 1 });

export interface MessageSyncDeps {
  repo: SyncRepo;
  signals: ReturnType<typeof createSignals>;
  /** The privacy guard: sync reads a notice's content as the service operating the owner's mailbox. */
  guard: Pick<GmailGuard, 'readContent'>;
  logger: Logger;
  now: () => Date;
}

export function createMessageSync(deps: MessageSyncDeps) {
  const { repo, signals, logger, now } = deps;

  function contactAddresses(mailbox: MailboxRow, addresses: string[]): string[] {
    const own = mailbox.email.toLowerCase();
    return addresses.filter((a) => a !== own);
  }

  /** The first candidate (best first) that is a message of ours. */
  function pickOriginal(classification: MailClassification, found: OriginalMessage[]): OriginalMessage | undefined {
    if (classification.type !== 'reply') return undefined;
    for (const candidate of classification.originalMessageIds) {
      const match = found.find((m) => m.rfc822MessageId === candidate);
      if (match) return match;
    }
    return undefined;
  }

  /**
   * A delivery notice is machine-generated (a mailer daemon's report about our own
   * message), not anyone's personal content: it alone is fetched whole, to read its
   * recipients, status codes and the Message-ID it reports on. Parsed in memory, never stored.
   * It passes the privacy guard on the `service_operation` basis (counted, not audited one by one).
   */
  async function readNotice(mailbox: MailboxRow, api: MailboxGmail, gmailId: string): Promise<BounceNotice | 'gone' | undefined> {
    try {
      const target = { workspaceId: mailbox.workspaceId, mailboxId: mailbox.id, ownerUserId: mailbox.userId, gmailMessageId: gmailId };
      const raw = await deps.guard.readContent({ reader: { kind: 'system', job: 'sync' }, basis: 'service_operation', purpose: 'service' }, target, () => api.getRaw(gmailId));
      return await readBounceNotice(raw);
    } catch (error) {
      if (error instanceof GmailError && error.kind === 'not_found') return 'gone';
      if (error instanceof GmailError || error instanceof ContentAccessRefusedError) throw error;
      logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId }, 'a delivery notice could not be parsed; treated as plain mail');
      return undefined;
    }
  }

  /**
   * The per-message step, shared by full and incremental sync. `later`: received mail that is
   * about other mail (a notice, a reply) is handed back with what was read of it (`deferred`),
   * to be processed once the rest of its batch is (sync-pass.ts): the mail it is about may be in
   * the same batch — a message written in Gmail and its bounce — and must be stored first, or
   * the notice matched nothing and its hard bounce suppressed no one. `meta`: read already.
   */
  async function processMessage(
    mailbox: MailboxRow,
    api: MailboxGmail,
    gmailId: string,
    options: { later?: boolean; meta?: GmailMessageMetadata } = {},
  ): Promise<MessageResult | { deferred: GmailMessageMetadata }> {
    let meta: GmailMessageMetadata;
    try {
      meta = options.meta ?? (await api.getMetadata(gmailId, [...SYNC_METADATA_HEADERS]));
    } catch (error) {
      // Deleted between listing and fetching: nothing to keep.
      if (error instanceof GmailError && error.kind === 'not_found') return skipped('gone', false);
      throw error;
    }
    if (meta.labelIds.some((l) => SKIPPED_LABELS.has(l))) return skipped('ignoredLabel');
    const aboutOtherMail = !meta.labelIds.includes('SENT') && (looksLikeDsn(meta.headers) || Boolean(meta.headers['in-reply-to'] || meta.headers['references']));
    if (options.later && aboutOtherMail) return { deferred: meta };

    const headers = meta.headers;
    const from = parseAddressList(headers['from']);
    const to = parseAddressList(headers['to']);
    const cc = parseAddressList(headers['cc']);
    // Sent by the owner (from here or any other client) is what Gmail labels SENT. A From of the
    // mailbox's own address proves nothing — anyone can write it — and mail taken for ours would
    // be matched by notices (a stranger's forged bounce suppressing a contact) and count against
    // the daily budget.
    const direction = meta.labelIds.includes('SENT') ? 'outbound' : 'inbound';
    // The sender's own copy keeps its Bcc (never shown); on received mail a Bcc header is anyone's word.
    const bcc = direction === 'outbound' ? parseAddressList(headers['bcc']) : [];
    const rfc822MessageId = parseMessageIds(headers['message-id'])[0];
    // A message we sent ourselves is recorded already (the send ledger owns that row).
    const own = rfc822MessageId ? await repo.findOwnSend(mailbox.workspaceId, mailbox.id, rfc822MessageId) : undefined;
    if (own) {
      // Gmail stored a send whose answer we never had: the proof recovery needs when the
      // search index lags (sent-copy.ts). Only sent mail: anyone who received it knows its
      // Message-ID and could mail it back in.
      if (direction === 'outbound') {
        const gmail = { id: meta.id || gmailId, threadId: meta.threadId };
        // Not recorded for recovery: it may have given up on it, now or since `own` was read
        // (not sent, or its outcome unknown for good). It went out after all.
        const seen = own.open && (await repo.recordSeenSend(own.id, gmail));
        if (!seen && (await repo.transaction((tx) => tx.recordLateSent(own.id, gmail, meta.internalDate ?? now())))) {
          logger.info({ mailboxId: mailbox.id, messageId: own.id }, 'a send recovery had given up on was found in Sent: recorded sent');
        }
      }
      return skipped('ownSend');
    }

    const result: MessageResult = { read: 1 };
    let notice: BounceNotice | undefined;
    if (direction === 'inbound' && looksLikeDsn(headers)) {
      const read = await readNotice(mailbox, api, gmailId);
      if (read === 'gone') return skipped('gone');
      notice = read;
      if (!notice) {
        result.unparsedNotice = 1;
        logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId }, 'a delivery notice named no failed recipient we could read; counted as unparsedNotice');
      }
    }
    const classification = classifyMessage({ direction, headers, notice });
    const at = meta.internalDate ?? parseDate(headers['date']) ?? now();

    const replied =
      classification.type === 'reply' ? pickOriginal(classification, await repo.findOutboundByRfc822Ids(mailbox.workspaceId, classification.originalMessageIds)) : undefined;
    // A teammate answering on the thread (an internal reply-all) is not the recipient replying:
    // it neither stops the recipient's sequence nor counts in the campaign's replies. A teammate
    // the message went to (a campaign to a member's address) does reply.
    const teammateOnThread = (sender: string) => !sentTo(replied!).has(sender) && repo.isTeammate(mailbox.workspaceId, sender);
    const original = replied && !(from[0] && (await teammateOnThread(from[0]))) ? replied : undefined;
    const bounce =
      classification.type === 'bounce'
        ? await signals.matchBounce(repo, {
            workspaceId: mailbox.workspaceId,
            mailboxId: mailbox.id,
            at,
            ...(classification.quotedMessageId ? { quotedId: classification.quotedMessageId } : {}),
            threadingIds: classification.threadingIds,
            recipients: classification.notice.recipients,
            notifier: from[0],
          })
        : undefined;
    if (bounce) {
      if (bounce.unmatched.length > 0) result.unmatchedNotice = 1;
      if (bounce.unverified.length > 0) result.unverifiedNotice = 1;
      if (bounce.notSent.length > 0) {
        result.recipientNotSent = 1;
        logger.warn({ mailboxId: mailbox.id, gmailMessageId: gmailId, recipients: bounce.notSent.length }, 'a bounce notice named addresses this mailbox never sent to; ignored');
      }
    }
    const contacts = await repo.contactsAmong(mailbox.workspaceId, contactAddresses(mailbox, [...from, ...to, ...cc]));
    // A contact only in Bcc: the mail is kept (a bounce of theirs must match it) but not put on
    // their timeline, which teammates see and which would show them as the hidden recipient.
    const bccOnly = contacts.length === 0 && bcc.length > 0 ? await repo.contactsAmong(mailbox.workspaceId, contactAddresses(mailbox, bcc)) : [];
    if (contacts.length === 0 && bccOnly.length === 0 && !original && !bounce?.matches.length) {
      if (!result.unparsedNotice && !result.unmatchedNotice && !result.recipientNotSent && !result.unverifiedNotice) result.notContact = 1;
      return result;
    }

    const stored = await repo.transaction(async (tx) => {
      const row = await tx.insertSyncedMessage(
        {
          workspaceId: mailbox.workspaceId,
          mailboxId: mailbox.id,
          direction,
          status: direction === 'outbound' ? 'sent' : 'received',
          rfc822MessageId: rfc822MessageId ?? null,
          gmailMessageId: meta.id,
          gmailThreadId: meta.threadId || null,
          inReplyTo: parseMessageIds(headers['in-reply-to'])[0] ?? null,
          subject: headers['subject'] ?? null,
          fromAddress: from[0] ?? '',
          toAddresses: to,
          ccAddresses: cc,
          bccAddresses: bcc,
          at,
        },
        contacts.map((c) => c.id),
      );
      if (!row) return row;
      const common = { workspaceId: mailbox.workspaceId, sourceGmailMessageId: meta.id, syncedMessageId: row.id, at };
      if (original && classification.type === 'reply') {
        const reply = await signals.recordReply(tx, { ...common, original, from: from[0], automatic: classification.automatic });
        if (reply.recorded) result[classification.automatic ? 'autoReply' : 'reply'] = 1;
      }
      if (bounce?.matches.length) {
        const recorded = await signals.recordBounces(tx, { ...common, matches: bounce.matches, format: (classification as { notice: BounceNotice }).notice.format });
        result.bounce = (result.bounce ?? 0) + recorded.bounces;
        result.delay = (result.delay ?? 0) + recorded.delays;
      }
      return row;
    });
    if (stored) {
      result.kept = 1;
      const events = (result.reply ?? 0) + (result.autoReply ?? 0) + (result.bounce ?? 0) + (result.delay ?? 0);
      if (events > 0) logger.info({ mailboxId: mailbox.id, event: classification.type, events }, 'mail events recorded from sync');
    }
    return result;
  }

  return { processMessage };
}
