import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { AuthContext } from '../auth/auth.service.js';
import { isRecoveryOwner, RESOLVE_LOOKS, recoveryOwnerOf, UNSEARCHABLE_RECHECK_MS } from '../campaigns/send-recovery.js';
import { ConflictError, NotFoundError, AppError, TooManyRequestsError } from '../errors.js';
import { composeMime, newMessageId } from '../gmail/compose-mime.js';
import { GMAIL_SCOPES, ONE_TO_ONE_NOT_SENT, SEND_OUTCOME_UNKNOWN } from '../gmail/gmail-client.js';
import { GmailError, type GmailErrorKind } from '../gmail/gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from '../gmail/mailboxes.repo.js';
import { GRANT_REFUSED_MESSAGE, mailboxNeedsReconnect, type MailboxService } from '../gmail/mailboxes.service.js';
import { MAILBOX_GONE } from '../gmail/pacer.js';
import { UNDECIDED, type SentCopies } from '../gmail/sent-copy.js';
import type { IdempotencyClaim } from '../idempotency/idempotency.repo.js';
import { errorNameOf, type Logger } from '../logger.js';
import { isOwnMessage, seesMessageSubject } from '../privacy/gmail-guard.js';
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

/** `outcome_unknown`: Gmail never confirmed it and the mailbox could not tell (send-only, or more sent since than recovery's listing reads); check Sent before sending again. */
function presentStatus(message: MessageRow) {
  if (message.status === 'sending') return 'pending' as const;
  if (message.status === 'failed' && message.errorCode === SEND_OUTCOME_UNKNOWN) return 'outcome_unknown' as const;
  return message.status;
}

/** `seesSubject`: whether the caller may see its subject (gmail-guard.ts seesMessageSubject, P-03); null otherwise. */
function presentMessage(message: MessageRow, seesSubject: boolean) {
  return {
    id: message.id,
    status: presentStatus(message),
    mailboxId: message.mailboxId,
    messageId: message.rfc822MessageId,
    gmailMessageId: message.gmailMessageId,
    threadId: message.gmailThreadId,
    from: message.fromAddress,
    to: message.toAddresses,
    cc: message.ccAddresses,
    subject: seesSubject ? message.subject : null,
    at: message.at,
  };
}

/** How long a 1:1 request waits for its one in-request mailbox search before answering `pending`. */
const IN_REQUEST_LOOK_MAX_MS = 5_000;

export interface MessagesServiceDeps {
  repo: MessagesRepo;
  mailboxes: MailboxService;
  /** Recovery's question "did Gmail store it" (gmail/sent-copy.ts), wired by the composition root. */
  sentCopies: SentCopies;
  mailboxRepo: Pick<MailboxesRepo, 'findByIdUnscoped'>;
  logger: Logger;
  /** This process's name on the leases it holds. */
  workerId?: string;
  leaseMs?: number;
  resolveDelayMs?: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

/** The gate refused the send: thrown out of the pacer's turn before any request. */
class SendRefused extends Error {
  constructor(readonly appError: AppError) {
    super(appError.message);
  }
}

/**
 * 1:1 mail through the same gate as campaigns (invariant 1): right before the Gmail request
 * — after the pacer granted quota, and again before any retry — one short transaction takes
 * the address locks of every recipient, checks the suppression list (fail closed) and
 * claims the send (`sending` row with our Message-ID and this process's lease). A send that
 * Gmail did not clearly answer is resolved by searching the mailbox; when that cannot be
 * done within the request, the answer is 202 `pending` and the outcome shows later on the
 * message (GET /api/messages/:id) and the contact's timeline.
 */
export function createMessagesService(deps: MessagesServiceDeps) {
  const { repo, mailboxes, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const workerId = deps.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const recoveryOwner = recoveryOwnerOf(workerId);
  const leaseMs = deps.leaseMs ?? 240_000;
  const resolveDelayMs = deps.resolveDelayMs ?? 15_000;
  const lookDelay = (looksDone: number) => resolveDelayMs * 4 ** looksDone;
  const after = (ms: number) => new Date(now().getTime() + ms);

  /** One look (a search, what sync saw, on the last look a listing of Sent: gmail/sent-copy.ts): the row's new state, or undefined when the mailbox could not be asked. */
  async function look(mailbox: MailboxRow, row: MessageRow, owner: string, looksDone: number, round = now()): Promise<MessageRow | undefined> {
    const lastLook = looksDone + 1 >= RESOLVE_LOOKS ? { round } : undefined;
    let found;
    try {
      found = await deps.sentCopies.find(mailbox, { rfc822MessageId: row.rfc822MessageId!, messageRowId: row.id }, lastLook);
    } catch (error) {
      logger.warn({ messageId: row.id, err: error instanceof GmailError ? error.message : 'error' }, 'could not search the mailbox for a 1:1 send yet');
      return undefined;
    }
    if (found && found !== UNDECIDED) return markSent(row, owner, found);
    if (!lastLook) return repo.updateLeased(row.id, owner, { resolveLooks: looksDone + 1, leaseExpiresAt: after(lookDelay(looksDone + 1)) });
    // Never re-sent by us: too much sent since to tell (its outcome unknown), or, looked for
    // RESOLVE_LOOKS times over minutes, it did not go out.
    return verdict(row, owner, found === UNDECIDED ? SEND_OUTCOME_UNKNOWN : ONE_TO_ONE_NOT_SENT);
  }

  const markSent = (row: MessageRow, owner: string, ids: { id: string; threadId: string }) =>
    repo.updateLeased(row.id, owner, { status: 'sent', gmailMessageId: ids.id, gmailThreadId: ids.threadId, leaseOwner: null, leaseExpiresAt: null });

  /**
   * A verdict (`failed`, `errorCode`) that gives way to a copy sync recorded on the row — before
   * the mailbox lost read access, or at this very moment (updateLeased's `unseen`): then the
   * send is recorded sent.
   */
  async function verdict(row: MessageRow, owner: string, errorCode: string): Promise<MessageRow | undefined> {
    const failed = await repo.updateLeased(row.id, owner, { status: 'failed', errorCode, leaseOwner: null, leaseExpiresAt: null }, { unseen: true });
    if (failed) return failed;
    const seen = await deps.sentCopies.seenBySync(row.id);
    return seen ? markSent(row, owner, seen) : undefined;
  }

  /**
   * Gmail gave no clear answer. A readable mailbox is searched once within the request,
   * after a short wait for Gmail's index; if that does not settle it, the send stays
   * `sending` under a lease that expires when the next search is due (recovery does it).
   * A send-only mailbox cannot be asked: the message is recorded `outcome_unknown`.
   */
  async function resolveUnknownOutcome(mailbox: MailboxRow, claimed: MessageRow): Promise<MessageRow> {
    if (!mailbox.scopes.includes(GMAIL_SCOPES.readonly)) return (await verdict(claimed, workerId, SEND_OUTCOME_UNKNOWN)) ?? claimed;
    await repo.updateLeased(claimed.id, workerId, { errorCode: SEND_OUTCOME_UNKNOWN, leaseExpiresAt: after(lookDelay(0) + leaseMs) });
    await sleep(Math.min(lookDelay(0), IN_REQUEST_LOOK_MAX_MS));
    const after1 = await look(mailbox, claimed, workerId, 0);
    if (after1) return after1;
    // The search itself failed: leave it to recovery at the usual time.
    return (await repo.updateLeased(claimed.id, workerId, { resolveLooks: 1, leaseExpiresAt: after(lookDelay(1)) })) ?? claimed;
  }

  /**
   * Recovery of 1:1 sends whose lease expired, run with the campaign ledger's recovery in its
   * pass (`round`: one walk of each mailbox's Sent serves the last looks of both).
   */
  async function recoverExpired(asOf: Date = now(), round: Date = now()): Promise<number> {
    let resolved = 0;
    for (const row of await repo.expiredLeases(asOf)) {
      const mailbox = row.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(row.mailboxId) : undefined;
      // A mailbox waiting to be reconnected cannot be searched: the send stays `sending`, no
      // search counted, but its lease moves to a later look so that it leaves the front of
      // expiredLeases (oldest first, 100 a pass) — see campaigns/send-recovery.ts — parked
      // and marked, so that the reconnect makes it due at once (campaigns/parked-sends.ts).
      const searchable = !mailbox || mailbox.status === 'active';
      const parkedFor = searchable ? undefined : { mailboxId: mailbox.id };
      if (!(await repo.takeOver(row, recoveryOwner, asOf, after(searchable ? leaseMs : UNSEARCHABLE_RECHECK_MS), parkedFor))) continue;
      if (!searchable) continue;
      if (!mailbox || !mailbox.scopes.includes(GMAIL_SCOPES.readonly)) {
        // Cannot be asked: at most once wins over at least once.
        if (await verdict(row, recoveryOwner, SEND_OUTCOME_UNKNOWN)) resolved += 1;
        continue;
      }
      const result = await look(mailbox, row, recoveryOwner, row.resolveLooks, round);
      if (result && result.status !== 'sending') resolved += 1;
    }
    return resolved;
  }

  /** Who this message's mail belongs to (its sender, its mailbox's owner), as gmail-guard.ts's rules take it. */
  async function ownersOf(message: MessageRow) {
    const mailbox = message.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(message.mailboxId) : undefined;
    return { sentBy: message.sentBy, mailboxOwner: mailbox?.userId };
  }

  return {
    recoverExpired,

    async get(auth: AuthContext, id: string) {
      const row = await repo.findById(auth.workspaceId, id);
      if (!row || row.direction !== 'outbound') throw new NotFoundError('Message');
      return presentMessage(row, seesMessageSubject(auth, await ownersOf(row)));
    },

    /**
     * The answer to a retry whose Idempotency-Key a crash left `in_progress` with this claimed send:
     * undefined while its first request may still be running (it holds the send's live lease — a
     * live send never outlasts it, config.ts — and recovery has not taken it over); then the
     * message's state as send answers it (201 `sent`, 202 otherwise), or, when Gmail refused it
     * (nothing went out), the error send threw naming it.
     */
    async answerOfClaim(auth: AuthContext, id: string): Promise<{ status: number; body: ReturnType<typeof presentMessage> } | undefined> {
      const row = await repo.findById(auth.workspaceId, id);
      if (!row) return undefined;
      // Recovery's lease means the request's own ended.
      const requestHolds = row.leaseOwner !== null && !isRecoveryOwner(row.leaseOwner);
      if (row.status === 'sending' && requestHolds && row.leaseExpiresAt !== null && row.leaseExpiresAt > now()) return undefined;
      // Recovery's verdicts are no refusal: Gmail never said no, so the state is answered as it stands.
      const refusedBy = row.status === 'failed' && row.errorCode !== SEND_OUTCOME_UNKNOWN && row.errorCode !== ONE_TO_ONE_NOT_SENT ? row.errorCode : null;
      if (refusedBy) throw gmailFailure({ kind: refusedBy as GmailErrorKind }, { messageId: row.id });
      return { status: row.status === 'sent' ? 201 : 202, body: presentMessage(row, true) };
    },

    /** 201 with the sent message, or 202 while its outcome is being resolved. `idempotencyKey`: the request's claim of its key, linked to the send's claim. */
    async send(auth: AuthContext, mail: OneToOneMail, options: { idempotencyKey?: IdempotencyClaim } = {}): Promise<{ pending: boolean; message: ReturnType<typeof presentMessage> }> {
      const mailbox = await mailboxes.requireSendable(auth, mail.mailboxId);
      if ((await mailboxes.remainingBudget(mailbox)) <= 0) {
        // No numbers: the budget is the Gmail account's, and what used it up may be another
        // workspace's mail from the same address (or its lower budget).
        throw new TooManyRequestsError('The daily sending budget of this Gmail account is used up; try again later');
      }

      let replyTo: MessageRow | undefined;
      if (mail.inReplyTo) {
        replyTo = await repo.findById(auth.workspaceId, mail.inReplyTo);
        // One answers mail one may read: a teammate's message (its Message-ID, its thread) is not
        // the caller's to reply to, and answers as if it did not exist.
        if (!replyTo || !isOwnMessage(auth, await ownersOf(replyTo))) throw new NotFoundError('Message being replied to');
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

      const messageRowId = randomUUID();
      const threadId = replyTo?.mailboxId === mailbox.id ? replyTo.gmailThreadId : null;
      let claimed: MessageRow | undefined;
      /** The gate, inside the pacer's turn right before each attempt. */
      const beforeAttempt = async () => {
        // A refusal is returned, not thrown, from the transaction: a retry's claim deleted there
        // must commit (thrown, it was rolled back, and the row stayed `sending` for recovery to
        // report as unknown — a reviewer's finding).
        let refusal: AppError | undefined;
        const refuse = async (tx: { deleteLeased: MessagesRepo['deleteLeased'] }, error: AppError) => {
          if (claimed) await tx.deleteLeased(claimed.id, workerId);
          refusal = error;
          return undefined;
        };
        const row = await repo.transaction(async (tx) => {
          await tx.lockAddresses(auth.workspaceId, recipients);
          // Still connected, under its row's share lock (as the campaign gate): a disconnect that
          // answered while this send waited for its turn ends it here, before anything is sent.
          const state = await tx.lockSendingMailbox(mailbox.id);
          if (!state.sending) return refuse(tx, state.gone ? new NotFoundError('Mailbox') : mailboxNeedsReconnect());
          const suppressed = await tx.findSuppressed(auth.workspaceId, recipients);
          if (suppressed.size > 0) return refuse(tx, new ConflictError('recipient_suppressed', 'A recipient opted out of mail from this workspace', { recipients: [...suppressed] }));
          // A retry's renewal: a live lease, never parked (campaigns/parked-sends.ts).
          if (claimed) return tx.updateLeased(claimed.id, workerId, { leaseExpiresAt: after(leaseMs), errorCode: null });
          // A retry took the key over while this request stalled past its key's lease (idempotency/README.md):
          // the retry sends, this one claims nothing.
          if (options.idempotencyKey && !(await tx.lockIdempotencyClaim(options.idempotencyKey))) return refuse(tx, keyTakenOver());
          const inserted = await tx.insertWithContacts(
            {
              id: messageRowId,
              workspaceId: auth.workspaceId,
              mailboxId: mailbox.id,
              direction: 'outbound',
              status: 'sending',
              rfc822MessageId,
              inReplyTo: replyTo?.rfc822MessageId ?? null,
              gmailThreadId: threadId,
              subject: mail.subject,
              fromAddress: mailbox.email,
              toAddresses: mail.to,
              ccAddresses: mail.cc,
              bccAddresses: mail.bcc,
              sentBy: auth.userId,
              leaseOwner: workerId,
              leaseExpiresAt: after(leaseMs),
            },
            recipients,
          );
          if (options.idempotencyKey) await tx.linkIdempotencyKey(options.idempotencyKey, inserted.id);
          return inserted;
        });
        if (refusal) {
          claimed = undefined;
          throw new SendRefused(refusal);
        }
        claimed = row;
        if (!claimed) throw new SendRefused(new ConflictError('send_taken_over', 'This send was taken over by recovery; check the message for its outcome'));
      };

      /** The send and its outcome recorded: the row as it stands after, or an AppError when nothing went out. */
      const sendAndRecord = async (): Promise<MessageRow> => {
        try {
          const sent = await mailboxes.withGmail(mailbox, (gmail) => gmail.sendRaw(raw, threadId ?? undefined, { beforeAttempt }));
          const row = await repo.updateLeased(messageRowId, workerId, {
            status: 'sent',
            gmailMessageId: sent.id,
            gmailThreadId: sent.threadId,
            at: now(),
            // A sent row carries no mark (an unknown outcome, a search pending).
            errorCode: null,
            leaseOwner: null,
            leaseExpiresAt: null,
          });
          // A late answer after recovery took the send over: the row is recovery's now (its search finds the mail).
          return row ?? (await repo.findById(auth.workspaceId, messageRowId))!;
        } catch (error) {
          if (error instanceof SendRefused) throw error.appError;
          if (!(error instanceof GmailError)) throw error;
          // Refused before the gate (the pacer's pause is too long, the grant is dead, or the mailbox
          // was disconnected while the send waited its turn: 404, as from the gate): nothing was recorded or sent.
          if (!claimed) throw error.reason === MAILBOX_GONE ? new NotFoundError('Mailbox') : gmailFailure(error);
          if (error.reason === SEND_OUTCOME_UNKNOWN) return resolveUnknownOutcome(mailbox, claimed);
          // Gmail answered with a definite failure, so the message did not go out: record why, and
          // name that record in the answer (its id, for GET /api/messages/:id): the error is not
          // "nothing happened" — an attempt was refused — and a retry may safely send again.
          const failed = await repo.updateLeased(claimed.id, workerId, { status: 'failed', errorCode: error.kind, leaseOwner: null, leaseExpiresAt: null });
          logger.warn({ messageId: claimed.id, kind: error.kind, status: error.status, reason: error.reason }, '1:1 send failed');
          throw gmailFailure(error, failed ? { messageId: failed.id } : undefined);
        }
      };

      let outcome: MessageRow;
      try {
        outcome = await sendAndRecord();
      } catch (error) {
        if (error instanceof AppError || !claimed) throw error;
        // Claimed, then our own storage failed (recording Gmail's answer, a retry's lease
        // renewal, the in-request search's bookkeeping): the mail may have gone out. A 5xx
        // would say "nothing changed" and free an Idempotency-Key for a retry that sends it
        // again; this is pending, and recovery resolves it by its Message-ID when the lease ends.
        logger.warn({ messageId: claimed.id, errorName: errorNameOf(error) }, '1:1 send claimed but its outcome not recorded; recovery resolves it');
        outcome = claimed;
      }
      return { pending: outcome.status !== 'sent', message: presentMessage(outcome, true) };
    },
  };
}

/** A retry holds the request's Idempotency-Key now: its answer is the key's (nothing was sent here). */
const keyTakenOver = () => new ConflictError('idempotency_in_progress', 'A retry with this Idempotency-Key took it over while this request waited; nothing was sent by this request, retry for the answer');

/** The answer to a definite Gmail failure (or the failed row's `errorCode` it recorded); `recorded`: the failed message row the attempt left, named in `details`. */
function gmailFailure(error: Pick<GmailError, 'kind'> & { retryAfterSeconds?: number }, recorded?: { messageId: string }): AppError {
  if (error.kind === 'auth_revoked') return mailboxNeedsReconnect(GRANT_REFUSED_MESSAGE, recorded);
  if (error.kind === 'rate_limited') return new TooManyRequestsError('Gmail is rate limiting this mailbox; try again shortly', error.retryAfterSeconds, recorded);
  if (error.kind === 'permanent') return new AppError('gmail_rejected', 422, 'Gmail refused the message', recorded);
  return new AppError('gmail_unavailable', 503, 'Gmail did not answer; the message was not sent', recorded);
}

export type MessagesService = ReturnType<typeof createMessagesService>;
