import { simpleParser, type AddressObject } from 'mailparser';
import type { AuthContext } from '../auth/auth.service.js';
import { AppError, ConflictError, NotFoundError, TooManyRequestsError } from '../errors.js';
import type { MessagesRepo } from '../messages/messages.repo.js';
import type { ContentBasis, ContentPurpose, GmailGuard } from '../privacy/gmail-guard.js';
import { GMAIL_SCOPES } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxesRepo } from './mailboxes.repo.js';
import { GRANT_REFUSED_MESSAGE, mailboxNeedsReconnect, type MailboxService } from './mailboxes.service.js';

export interface MessageContent {
  id: string;
  subject: string | null;
  from: ContentAddress | null;
  to: ContentAddress[];
  cc: ContentAddress[];
  date: Date | null;
  text: string | null;
  /** The message's own HTML, unsanitized: a client must render it sandboxed (no scripts), never inline. */
  html: string | null;
}

export interface ContentAddress {
  name: string;
  address: string;
}

export interface MessageContentDeps {
  messagesRepo: Pick<MessagesRepo, 'findById'>;
  mailboxesRepo: Pick<MailboxesRepo, 'findById'>;
  mailboxes: Pick<MailboxService, 'withGmail'>;
  guard: Pick<GmailGuard, 'readContent'>;
}

/** What a reader states besides who they are: the basis of a non-owner read, its purpose, its case. */
export interface ContentRequest {
  basis?: ContentBasis;
  purpose?: ContentPurpose;
  caseReference?: string;
}

function addresses(value: AddressObject | AddressObject[] | undefined): ContentAddress[] {
  const objects = value === undefined ? [] : Array.isArray(value) ? value : [value];
  const flat: ContentAddress[] = [];
  for (const entry of objects.flatMap((o) => o.value)) {
    if (entry.group) flat.push(...entry.group.map((g) => ({ name: g.name, address: g.address ?? '' })));
    else flat.push({ name: entry.name, address: entry.address ?? '' });
  }
  return flat.filter((a) => a.address);
}

/**
 * Message content (bodies) is never stored: sync keeps metadata only. This module is how a
 * person reads a synced or sent message's content, fetched from Gmail on demand through the
 * privacy guard (src/privacy/gmail-guard.ts), which every content read passes.
 */
export function createMessageContentReader(deps: MessageContentDeps) {
  const { messagesRepo, mailboxesRepo, mailboxes, guard } = deps;

  return {
    /**
     * The content of one message, through the privacy guard (P-03, invariant 5): its
     * mailbox's owner reads it; anyone else in the workspace needs a basis (`request`),
     * and the guard records their read or its refusal. Another workspace gets the same 404
     * as for a message that does not exist.
     */
    async readMessageContent(auth: AuthContext, messageId: string, request: ContentRequest = {}): Promise<MessageContent> {
      const message = await messagesRepo.findById(auth.workspaceId, messageId);
      if (!message?.mailboxId || !message.gmailMessageId) throw new NotFoundError('Message');
      const mailbox = await mailboxesRepo.findById(auth.workspaceId, message.mailboxId);
      if (!mailbox) throw new NotFoundError('Message');
      const target = { workspaceId: auth.workspaceId, mailboxId: mailbox.id, ownerUserId: mailbox.userId, messageId: message.id, gmailMessageId: message.gmailMessageId };

      const raw = await guard.readContent({ reader: { kind: 'member', auth }, ...request }, target, async () => {
        if (mailbox.status !== 'active') throw mailboxNeedsReconnect('This mailbox must be reconnected before its mail can be read');
        // Without read access Gmail answers 403, which would pause the mailbox: ask for the permission instead.
        if (!mailbox.scopes.includes(GMAIL_SCOPES.readonly)) {
          throw new ConflictError('read_access_not_granted', 'Reading mail needs this mailbox connected with sync turned on');
        }
        try {
          return await mailboxes.withGmail(mailbox, (gmail) => gmail.getRaw(message.gmailMessageId!));
        } catch (error) {
          if (!(error instanceof GmailError)) throw error;
          if (error.kind === 'not_found') throw new NotFoundError('Message');
          if (error.kind === 'auth_revoked') throw mailboxNeedsReconnect(GRANT_REFUSED_MESSAGE);
          if (error.kind === 'rate_limited') throw new TooManyRequestsError('Gmail is rate limiting this mailbox; try again shortly', error.retryAfterSeconds);
          if (error.kind === 'temporary') throw new AppError('gmail_unavailable', 503, 'Gmail did not answer; try again shortly');
          throw new AppError('gmail_error', 502, 'Gmail refused to return this message');
        }
      });

      // In memory only: parsed, returned, forgotten. cid: images stay links rather than inlined data.
      const parsed = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true });
      return {
        id: message.id,
        subject: parsed.subject ?? null,
        from: addresses(parsed.from)[0] ?? null,
        to: addresses(parsed.to),
        cc: addresses(parsed.cc),
        date: parsed.date ?? null,
        text: parsed.text ?? null,
        html: typeof parsed.html === 'string' ? parsed.html : null,
      };
    },
  };
}

export type MessageContentReader = ReturnType<typeof createMessageContentReader>;
