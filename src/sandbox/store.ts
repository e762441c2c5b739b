import { randomBytes, randomInt } from 'node:crypto';
import { buildDsn, type BounceKind, type NoticeForm } from './bounce.js';
import {
  buildPayload,
  headerNames,
  normalizeMessageId,
  prependHeaders,
  removeHeader,
  snippetOf,
  summarize,
  type MailSummary,
  type MessagePart,
} from './mime.js';

/**
 * The sandbox's mail world: mailboxes, their messages, threads and history, kept in
 * memory. It knows nothing about HTTP or OAuth; the Gmail routes and the control
 * API both drive it.
 */

export type MailboxKind = 'workspace' | 'consumer';

export const SYSTEM_LABELS = [
  'INBOX',
  'SENT',
  'UNREAD',
  'STARRED',
  'IMPORTANT',
  'DRAFT',
  'SPAM',
  'TRASH',
  'CHAT',
  'CATEGORY_PERSONAL',
  'CATEGORY_SOCIAL',
  'CATEGORY_PROMOTIONS',
  'CATEGORY_UPDATES',
  'CATEGORY_FORUMS',
] as const;

export interface StoredMessage {
  id: string;
  threadId: string;
  labelIds: string[];
  raw: Buffer;
  /** Epoch milliseconds, as Gmail's `internalDate`. */
  internalDate: number;
  /** The last history record that touched this message. */
  historyId: number;
  summary: MailSummary;
  snippet: string;
  payload?: MessagePart;
}

export type HistoryKind = 'messageAdded' | 'messageDeleted' | 'labelAdded' | 'labelRemoved';

export interface HistoryRecord {
  id: number;
  kind: HistoryKind;
  messageId: string;
  threadId: string;
  /** The message's labels right after the change. */
  messageLabels: string[];
  /** For label changes: the labels added or removed. */
  changedLabels: string[];
}

export interface Watch {
  topicName: string;
  labelIds: string[];
  labelFilterBehavior: 'include' | 'exclude';
  expiration: number;
  historyId: number;
}

export interface Mailbox {
  email: string;
  kind: MailboxKind;
  displayName: string;
  /** Stable Google account id, as `sub` in id tokens. */
  sub: string;
  createdAt: Date;
  historyId: number;
  /** A startHistoryId below this is gone (404), as when Gmail no longer has that history. */
  oldestHistoryId: number;
  /** How long a stored message stays out of `q=` searches (0: none), as Gmail's search index can lag behind its store. */
  searchIndexLagMs: number;
  messages: Map<string, StoredMessage>;
  history: HistoryRecord[];
  /** Normalised RFC 822 Message-ID → Gmail ids in this mailbox, for threading and rfc822msgid:. */
  byMessageId: Map<string, string[]>;
  /** The threads of the stored messages (messages are never deleted): a send's `threadId` check and threadsTotal without a walk of every message. */
  threadIds: Set<string>;
  attachments: Map<string, Buffer>;
  watch?: Watch;
}

export interface SendResult {
  sent: StoredMessage;
  /** Copies delivered to recipients that are sandbox mailboxes. */
  delivered: { mailbox: string; message: StoredMessage }[];
  /** Recipients outside the sandbox (delivered nowhere, as if to the internet). */
  external: string[];
  bounced: { recipient: string; kind: BounceKind; report: StoredMessage }[];
}

export class MailStoreError extends Error {
  constructor(
    readonly code: 'not_found' | 'invalid',
    message: string,
  ) {
    super(message);
    this.name = 'MailStoreError';
  }
}

const CONSUMER_DOMAINS = new Set(['gmail.com', 'googlemail.com']);
const EMAIL = /^[^\s@<>()",;:]+@[^\s@<>()",;:]+\.[^\s@<>()",;:]+$/;

export function defaultKindFor(email: string): MailboxKind {
  return CONSUMER_DOMAINS.has(email.split('@')[1] ?? '') ? 'consumer' : 'workspace';
}

function rfc2822Date(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000');
}

export interface MailStoreOptions {
  now: () => Date;
  /** Called after each history record is appended (drives Pub/Sub pushes). */
  onHistory?: (mailbox: Mailbox, record: HistoryRecord) => void;
}

export class MailStore {
  private mailboxes = new Map<string, Mailbox>();
  private bouncing = new Map<string, { kind: BounceKind; status?: string; form?: NoticeForm }>();
  // History ids come from one counter for all mailboxes: still strictly increasing per
  // mailbox, with gaps like Gmail's, so nobody can rely on "+1".
  private historyCounter = 100_000 + randomInt(0, 50_000);
  private lastGmailId = 0n;

  constructor(private readonly options: MailStoreOptions) {}

  private now(): Date {
    return this.options.now();
  }

  /** Gmail-like ids: 16 hex digits that grow with time (milliseconds << 20 plus a counter). */
  nextGmailId(): string {
    let id = BigInt(this.now().getTime()) << 20n;
    if (id <= this.lastGmailId) id = this.lastGmailId + 1n;
    this.lastGmailId = id;
    return id.toString(16).padStart(16, '0');
  }

  private nextHistoryId(): number {
    this.historyCounter += 1 + randomInt(0, 3);
    return this.historyCounter;
  }

  createMailbox(input: { email: string; kind?: MailboxKind; displayName?: string }): Mailbox {
    const email = input.email.trim().toLowerCase();
    if (!EMAIL.test(email)) throw new MailStoreError('invalid', `not an email address: ${input.email}`);
    const existing = this.mailboxes.get(email);
    if (existing) return existing;
    const historyId = this.nextHistoryId();
    const mailbox: Mailbox = {
      email,
      kind: input.kind ?? defaultKindFor(email),
      displayName: input.displayName ?? email.split('@')[0]!,
      sub: `1${Array.from({ length: 20 }, () => randomInt(0, 10)).join('')}`,
      createdAt: this.now(),
      historyId,
      oldestHistoryId: historyId,
      searchIndexLagMs: 0,
      messages: new Map(),
      history: [],
      byMessageId: new Map(),
      threadIds: new Set(),
      attachments: new Map(),
    };
    this.mailboxes.set(email, mailbox);
    return mailbox;
  }

  find(email: string): Mailbox | undefined {
    return this.mailboxes.get(email.trim().toLowerCase());
  }

  get(email: string): Mailbox {
    const mailbox = this.find(email);
    if (!mailbox) throw new MailStoreError('not_found', `no sandbox mailbox ${email}`);
    return mailbox;
  }

  list(): Mailbox[] {
    return [...this.mailboxes.values()];
  }

  /** Newest first, as Gmail lists. */
  messagesOf(mailbox: Mailbox): StoredMessage[] {
    return [...mailbox.messages.values()].sort((a, b) => b.internalDate - a.internalDate || (a.id < b.id ? 1 : -1));
  }

  message(mailbox: Mailbox, id: string): StoredMessage {
    const message = mailbox.messages.get(id);
    if (!message) throw new MailStoreError('not_found', `no message ${id} in ${mailbox.email}`);
    return message;
  }

  payloadOf(mailbox: Mailbox, message: StoredMessage): MessagePart {
    message.payload ??= buildPayload(message.raw, {
      registerAttachment: (data) => {
        const id = `ANGjdJ${randomBytes(24).toString('base64url')}`;
        mailbox.attachments.set(id, data);
        return id;
      },
    });
    return message.payload;
  }

  private appendHistory(mailbox: Mailbox, kind: HistoryKind, message: StoredMessage, changedLabels: string[] = []): HistoryRecord {
    const record: HistoryRecord = {
      id: this.nextHistoryId(),
      kind,
      messageId: message.id,
      threadId: message.threadId,
      messageLabels: [...message.labelIds],
      changedLabels,
    };
    mailbox.history.push(record);
    mailbox.historyId = record.id;
    message.historyId = record.id;
    this.options.onHistory?.(mailbox, record);
    return record;
  }

  /** The thread a new message joins: its In-Reply-To, then its References newest first. */
  private threadFor(mailbox: Mailbox, summary: MailSummary): string | undefined {
    const candidates = [summary.inReplyTo, ...[...summary.references].reverse()].filter((id): id is string => Boolean(id));
    for (const candidate of candidates) {
      const ids = mailbox.byMessageId.get(normalizeMessageId(candidate));
      const known = ids?.map((id) => mailbox.messages.get(id)).find(Boolean);
      if (known) return known.threadId;
    }
    return undefined;
  }

  private store(mailbox: Mailbox, raw: Buffer, summary: MailSummary, labelIds: string[], threadId?: string): StoredMessage {
    const id = this.nextGmailId();
    const message: StoredMessage = {
      id,
      threadId: threadId ?? this.threadFor(mailbox, summary) ?? id,
      labelIds: [...new Set(labelIds)],
      raw,
      internalDate: this.now().getTime(),
      historyId: mailbox.historyId,
      summary,
      snippet: snippetOf(summary.text || summary.subject),
    };
    mailbox.messages.set(id, message);
    mailbox.threadIds.add(message.threadId);
    if (summary.messageId) {
      const key = normalizeMessageId(summary.messageId);
      mailbox.byMessageId.set(key, [...(mailbox.byMessageId.get(key) ?? []), id]);
    }
    this.appendHistory(mailbox, 'messageAdded', message);
    return message;
  }

  /** Headers Gmail adds to a sent message that lacks them. */
  private completeOutgoing(mailbox: Mailbox, raw: Buffer): Buffer {
    const present = headerNames(raw);
    const missing: string[] = [];
    if (!present.has('from')) missing.push(`From: ${mailbox.displayName} <${mailbox.email}>`);
    if (!present.has('date')) missing.push(`Date: ${rfc2822Date(this.now())}`);
    if (!present.has('message-id')) missing.push(`Message-ID: <sandbox.${randomBytes(12).toString('hex')}@mail.gmail.com>`);
    if (!present.has('mime-version')) missing.push('MIME-Version: 1.0');
    return prependHeaders(raw, missing);
  }

  /** What `messages.send` does: a SENT copy here, an INBOX copy in each sandbox recipient. */
  async send(fromEmail: string, input: Buffer, threadId?: string): Promise<SendResult> {
    const sender = this.get(fromEmail);
    if (threadId !== undefined && !sender.threadIds.has(threadId)) {
      throw new MailStoreError('invalid', 'Invalid thread_id value');
    }
    const raw = this.completeOutgoing(sender, input);
    const summary = await summarize(raw);
    const recipients = [...new Set([...summary.to, ...summary.cc, ...summary.bcc].map((a) => a.address))];
    if (recipients.length === 0) throw new MailStoreError('invalid', 'Recipient address required');

    const toSelf = recipients.includes(sender.email);
    const sent = this.store(sender, raw, summary, toSelf ? ['SENT', 'INBOX', 'UNREAD'] : ['SENT'], threadId);
    const result: SendResult = { sent, delivered: [], external: [], bounced: [] };

    // Recipients never see Bcc; the sender's own copy keeps it.
    const delivered = summary.bcc.length > 0 ? removeHeader(raw, 'bcc') : raw;
    const deliveredSummary = summary.bcc.length > 0 ? { ...summary, bcc: [] } : summary;
    for (const recipient of recipients) {
      if (recipient === sender.email) continue;
      const bounce = this.bouncing.get(recipient);
      if (bounce) {
        const report = await this.deliverBounce(sender.email, { recipient, kind: bounce.kind, status: bounce.status, form: bounce.form, originalId: sent.id });
        result.bounced.push({ recipient, kind: bounce.kind, report });
        continue;
      }
      const target = this.find(recipient);
      if (!target) {
        result.external.push(recipient);
        continue;
      }
      const copy = prependHeaders(delivered, [
        `Delivered-To: ${target.email}`,
        `Received: from sandbox.mail.gmail.com by sandbox.mx.google.com; ${rfc2822Date(this.now())}`,
        `Return-Path: <${sender.email}>`,
      ]);
      result.delivered.push({ mailbox: target.email, message: this.store(target, copy, deliveredSummary, ['INBOX', 'UNREAD', 'CATEGORY_PERSONAL']) });
    }
    return result;
  }

  /** Mail arriving from outside: INBOX + UNREAD, threaded by its headers. */
  async receive(email: string, raw: Buffer, labelIds: string[] = ['INBOX', 'UNREAD', 'CATEGORY_PERSONAL']): Promise<StoredMessage> {
    const mailbox = this.get(email);
    const withDelivery = prependHeaders(raw, [`Delivered-To: ${mailbox.email}`]);
    return this.store(mailbox, withDelivery, await summarize(withDelivery), labelIds);
  }

  /** Finds a message in a mailbox by Gmail id or by RFC 822 Message-ID. */
  findMessage(mailbox: Mailbox, ref: { id?: string; messageId?: string }): StoredMessage | undefined {
    if (ref.id) return mailbox.messages.get(ref.id);
    if (ref.messageId) {
      const ids = mailbox.byMessageId.get(normalizeMessageId(ref.messageId)) ?? [];
      return ids.map((id) => mailbox.messages.get(id)).find((m): m is StoredMessage => Boolean(m));
    }
    return undefined;
  }

  async deliverBounce(
    email: string,
    input: {
      recipient?: string;
      kind?: BounceKind;
      status?: string;
      diagnostic?: string;
      originalId?: string;
      originalMessageId?: string;
      includeOriginal?: 'headers' | 'full' | 'none';
      form?: NoticeForm;
    },
  ): Promise<StoredMessage> {
    const mailbox = this.get(email);
    const original = this.findMessage(mailbox, { id: input.originalId, messageId: input.originalMessageId });
    if (!original) throw new MailStoreError('not_found', 'the original message is not in that mailbox (give originalId or originalMessageId)');
    const recipient = input.recipient ?? original.summary.to[0]?.address;
    if (!recipient) throw new MailStoreError('invalid', 'recipient is required when the original has no To');
    const raw = buildDsn({
      to: mailbox.email,
      recipient,
      kind: input.kind ?? 'hard',
      status: input.status,
      diagnostic: input.diagnostic,
      original: original.raw,
      originalMessageId: original.summary.messageId,
      includeOriginal: input.includeOriginal,
      form: input.form,
      date: this.now(),
    });
    return this.receive(mailbox.email, raw, ['INBOX', 'UNREAD', 'CATEGORY_UPDATES']);
  }

  /** From now on, a send to this address comes back as a DSN instead of being delivered. */
  setBouncing(address: string, kind: BounceKind | null, status?: string, form?: NoticeForm): void {
    const key = address.trim().toLowerCase();
    if (kind === null) this.bouncing.delete(key);
    else this.bouncing.set(key, { kind, status, form });
  }

  bouncingAddresses(): { address: string; kind: BounceKind; status?: string; form?: NoticeForm }[] {
    return [...this.bouncing].map(([address, rule]) => ({ address, ...rule }));
  }

  modifyLabels(mailbox: Mailbox, id: string, add: string[], remove: string[]): StoredMessage {
    const message = this.message(mailbox, id);
    for (const label of [...add, ...remove]) {
      if (!(SYSTEM_LABELS as readonly string[]).includes(label)) throw new MailStoreError('invalid', `Invalid label: ${label}`);
    }
    const added = add.filter((l) => !message.labelIds.includes(l));
    const removed = remove.filter((l) => message.labelIds.includes(l) && !add.includes(l));
    message.labelIds = [...message.labelIds.filter((l) => !removed.includes(l)), ...added];
    if (added.length > 0) this.appendHistory(mailbox, 'labelAdded', message, added);
    if (removed.length > 0) this.appendHistory(mailbox, 'labelRemoved', message, removed);
    return message;
  }

  /** Forgets all history so far: any startHistoryId below the current one is answered 404. */
  truncateHistory(mailbox: Mailbox): number {
    mailbox.history = [];
    mailbox.oldestHistoryId = mailbox.historyId;
    return mailbox.oldestHistoryId;
  }

  threadsTotal(mailbox: Mailbox): number {
    return mailbox.threadIds.size;
  }

  reset(): void {
    this.mailboxes.clear();
    this.bouncing.clear();
  }
}
