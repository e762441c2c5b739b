import type { AuthContext } from '../auth/auth.service.js';
import { ConflictError, NotFoundError, AppError, TooManyRequestsError } from '../errors.js';
import { composeMime, newMessageId } from '../gmail/compose-mime.js';
import { GMAIL_SCOPES, SEND_OUTCOME_UNKNOWN } from '../gmail/gmail-client.js';
import { GmailError } from '../gmail/gmail-errors.js';
import type { MailboxRow } from '../gmail/mailboxes.repo.js';
import type { MailboxService } from '../gmail/mailboxes.service.js';
import type { Logger } from '../logger.js';
import type { MessageRow, MessagesRepo } from './messages.repo.js';

export interface OneToOneMail {
  mailboxId: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  text?: string;
  html?: string;
  /** Our id of the message being answered (sent from here or synced). */
  inReplyTo?: string;
}

/** Gmail's limit for a message sent through the API. */
export const MAX_MESSAGE_BYTES = 35 * 1024 * 1024;

function presentMessage(message: MessageRow) {
  return {
    id: message.id,
    status: message.status,
    mailboxId: message.mailboxId,
    messageId: message.rfc822MessageId,
    gmailMessageId: message.gmailMessageId,
    threadId: message.gmailThreadId,
    from: message.fromAddress,
    to: message.toAddresses,
    cc: message.ccAddresses,
    subject: message.subject,
    at: message.at,
  };
}

/**
 * 1:1 mail. The suppression check and the claim of the send (the `sending` row with our
 * Message-ID) share one transaction (invariant 1, fail closed); Gmail is called only
 * after that commits, and the row is marked `sent` with Gmail's ids afterwards.
 */
export function createMessagesService(deps: { repo: MessagesRepo; mailboxes: MailboxService; logger: Logger }) {
  const { repo, mailboxes, logger } = deps;

  /**
   * Gmail gave no answer to the send. With read access the mailbox tells us whether our
   * Message-ID arrived in Sent; without it the row stays `sending` (never re-sent) and the
   * caller is told the outcome is unknown.
   */
  async function resolveUnknownOutcome(mailbox: MailboxRow, claimed: MessageRow): Promise<MessageRow> {
    if (mailbox.scopes.includes(GMAIL_SCOPES.readonly)) {
      const found = await mailboxes.withGmail(mailbox, (gmail) => gmail.findByRfc822MessageId(claimed.rfc822MessageId!)).catch(() => undefined);
      if (found && found.length > 0) {
        return (await repo.update(claimed.id, { status: 'sent', gmailMessageId: found[0]!.id, gmailThreadId: found[0]!.threadId }))!;
      }
      if (found) {
        await repo.update(claimed.id, { status: 'failed', errorCode: SEND_OUTCOME_UNKNOWN });
        throw new AppError('gmail_unavailable', 503, 'Gmail did not answer; the message was not sent');
      }
    }
    throw new AppError('send_outcome_unknown', 503, 'Gmail did not confirm the send; check the Sent folder before sending again');
  }

  return {
    async send(auth: AuthContext, mail: OneToOneMail) {
      const mailbox = await mailboxes.requireSendable(auth, mail.mailboxId);
      if ((await mailboxes.remainingBudget(mailbox)) <= 0) {
        throw new TooManyRequestsError(`This mailbox has sent its daily budget of ${mailbox.dailyBudget} messages; try again later`);
      }

      let replyTo: MessageRow | undefined;
      if (mail.inReplyTo) {
        replyTo = await repo.findById(auth.workspaceId, mail.inReplyTo);
        if (!replyTo) throw new NotFoundError('Message being replied to');
      }

      const recipients = [...mail.to, ...mail.cc, ...mail.bcc];
      const rfc822MessageId = newMessageId(mailbox.email);
      const raw = await composeMime({
        from: mailbox.email,
        to: mail.to,
        cc: mail.cc,
        bcc: mail.bcc,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        messageId: rfc822MessageId,
        inReplyTo: replyTo?.rfc822MessageId ?? undefined,
        references: replyTo?.rfc822MessageId ? [replyTo.rfc822MessageId] : undefined,
      });
      if (raw.length > MAX_MESSAGE_BYTES) {
        throw new AppError('message_too_large', 413, `A message may be at most ${MAX_MESSAGE_BYTES / 1024 / 1024} MB once encoded`);
      }

      const claimed = await repo.transaction(async (tx) => {
        const suppressed = await tx.findSuppressed(auth.workspaceId, recipients);
        if (suppressed.size > 0) {
          throw new ConflictError('recipient_suppressed', 'A recipient opted out of mail from this workspace', { recipients: [...suppressed] });
        }
        return tx.insertWithContacts(
          {
            workspaceId: auth.workspaceId,
            mailboxId: mailbox.id,
            direction: 'outbound',
            status: 'sending',
            rfc822MessageId,
            inReplyTo: replyTo?.rfc822MessageId ?? null,
            gmailThreadId: replyTo?.mailboxId === mailbox.id ? replyTo.gmailThreadId : null,
            subject: mail.subject,
            fromAddress: mailbox.email,
            toAddresses: mail.to,
            ccAddresses: mail.cc,
            sentBy: auth.userId,
          },
          recipients,
        );
      });

      try {
        const sent = await mailboxes.withGmail(mailbox, (gmail) => gmail.sendRaw(raw, claimed.gmailThreadId ?? undefined));
        const row = await repo.update(claimed.id, { status: 'sent', gmailMessageId: sent.id, gmailThreadId: sent.threadId, at: new Date() });
        return presentMessage(row!);
      } catch (error) {
        if (!(error instanceof GmailError)) throw error;
        if (error.reason === SEND_OUTCOME_UNKNOWN) return presentMessage(await resolveUnknownOutcome(mailbox, claimed));
        // Gmail answered with a definite failure, so the message did not go out: record why.
        await repo.update(claimed.id, { status: 'failed', errorCode: error.kind });
        logger.warn({ messageId: claimed.id, kind: error.kind, status: error.status, reason: error.reason }, '1:1 send failed');
        if (error.kind === 'auth_revoked') throw new ConflictError('mailbox_needs_reconnect', 'Google no longer accepts this mailbox’s access; reconnect it');
        if (error.kind === 'rate_limited') throw new TooManyRequestsError('Gmail is rate limiting this mailbox; try again shortly', error.retryAfterSeconds);
        if (error.kind === 'permanent') throw new AppError('gmail_rejected', 422, 'Gmail refused the message');
        throw new AppError('gmail_unavailable', 503, 'Gmail did not answer; the message was not sent');
      }
    },
  };
}

export type MessagesService = ReturnType<typeof createMessagesService>;
