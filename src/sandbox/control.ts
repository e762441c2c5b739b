import MailComposer from 'nodemailer/lib/mail-composer';
import type { BounceKind, NoticeForm } from './bounce.js';
import type { SandboxContext } from './context.js';
import type { ActiveFault, CallFilter, CallRecord, FaultRule, SandboxEndpoint } from './faults.js';
import { formatAddress, parseHeaders, splitHeaderAndBody, type MessageHeader } from './mime.js';
import type { QueuedDecision } from './oauth.js';
import type { PushBody, PushDelivery, PushSubscription, PushSubscriptionInput, PushTokenInput } from './push.js';
import type { Mailbox, MailboxKind, StoredMessage } from './store.js';

/**
 * The in-process handle tests use to arrange and inspect the sandbox world. The
 * `/__control` HTTP API exposes the same operations (see README.md).
 */

export interface MailboxInfo {
  email: string;
  kind: MailboxKind;
  displayName: string;
  historyId: string;
  /** A startHistoryId below this is answered 404. */
  oldestHistoryId: string;
  messagesTotal: number;
  threadsTotal: number;
  unread: number;
  watch?: { topicName: string; labelIds: string[]; labelFilterBehavior: string; expiration: string };
  grants: { clientId: string; scopes: string[] }[];
}

export interface MessageInfo {
  id: string;
  threadId: string;
  labelIds: string[];
  historyId: string;
  internalDate: string;
  messageId?: string;
  inReplyTo?: string;
  references: string[];
  from?: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  snippet: string;
  sizeEstimate: number;
}

export interface MessageDetail extends MessageInfo {
  headers: MessageHeader[];
  text: string;
  html?: string;
  /** The RFC 822 message as text (UTF-8). */
  raw: string;
}

export interface MailFields {
  from?: string;
  to?: string | string[];
  cc?: string | string[];
  bcc?: string | string[];
  subject?: string;
  text?: string;
  html?: string;
  inReplyTo?: string;
  references?: string | string[];
  messageId?: string;
  date?: string | Date;
  headers?: Record<string, string>;
}

/** Either a whole RFC 822 message or fields to compose one from. */
export type MailInput = { raw: string | Buffer } | MailFields;

export interface BounceInput {
  /** Gmail id (in the receiving mailbox) of the message that bounced. */
  originalId?: string;
  /** …or its RFC 822 Message-ID. */
  originalMessageId?: string;
  /** The address that failed; defaults to the original's first To. */
  recipient?: string;
  /** `hard` (5.1.1, default), `soft` (5.2.2 mailbox full) or `delay` (4.2.2, still retrying). */
  kind?: BounceKind;
  /** `report` (multipart/report, default) or Gmail's plain-text notice. */
  form?: NoticeForm;
  status?: string;
  diagnostic?: string;
  /** `none`: the notice quotes nothing of the original and has no threading headers (matched by recipient and time). */
  includeOriginal?: 'headers' | 'full' | 'none';
}

export interface SandboxControl {
  createMailbox(input: { email: string; kind?: MailboxKind; displayName?: string } | string): MailboxInfo;
  getMailbox(email: string): MailboxInfo | undefined;
  listMailboxes(): MailboxInfo[];
  /** Newest first; `labelId` narrows to one label. */
  listMessages(email: string, options?: { labelId?: string }): MessageInfo[];
  getMessage(email: string, id: string): MessageDetail;
  /** Mail arriving from outside into a mailbox's INBOX (e.g. a contact's reply). `to` defaults to the mailbox. */
  deliverInbound(email: string, input: MailInput): Promise<MessageInfo>;
  /** Sends as a sandbox mailbox, exactly as messages.send would (SENT copy, INBOX copies to sandbox recipients). */
  sendAs(email: string, input: MailInput & { threadId?: string }): Promise<MessageInfo>;
  /** The mailbox replies to one of its messages (to its Reply-To or From), threaded as a mail client would. */
  reply(email: string, messageId: string, input: { text: string; html?: string }): Promise<MessageInfo>;
  /** A mailer-daemon DSN into the mailbox that sent the original. */
  deliverBounce(email: string, input: BounceInput): Promise<MessageInfo>;
  /** From now on, sending to this address bounces back to the sender (null stops it). */
  setBouncingAddress(address: string, kind: BounceKind | null, status?: string, form?: NoticeForm): void;
  modifyLabels(email: string, id: string, change: { add?: string[]; remove?: string[] }): MessageInfo;
  /**
   * Dates a stored message as if Gmail had stored it at `at` (as `messages.import` can): label
   * listings order by it, newest first, and searches filter by it. Tests of what spans time.
   */
  setInternalDate(email: string, id: string, at: Date): MessageInfo;

  injectFault(rule: FaultRule): ActiveFault;
  listFaults(): ActiveFault[];
  removeFault(id: string): boolean;
  clearFaults(): void;

  /** Drops all history so far: startHistoryId below the current id now gets 404. Returns the new oldest id. */
  truncateHistory(email: string): string;
  /**
   * From now on, `q=` searches of this mailbox miss messages stored less than `ms` ago (0 ends
   * it), as Gmail's search index can lag behind its store; history, get and label listings see
   * them at once.
   */
  setSearchIndexLag(email: string, ms: number): void;
  /** Expires live access tokens now (all or one mailbox's); refresh tokens still work. Returns how many. */
  expireAccessTokens(email?: string): number;
  /** As if the person removed the app in their Google account: every grant of the mailbox ends. */
  revokeAccess(email: string): number;
  /** The next authorize request is decided without the page (FIFO), whatever autoApprove says. */
  queueAuthorization(decision: QueuedDecision): void;

  calls(filter?: CallFilter): CallRecord[];
  callCounts(filter?: Omit<CallFilter, 'endpoint'>): Record<SandboxEndpoint, number>;

  signPushToken(input: PushTokenInput): string;
  pushNotificationBody(email: string, options?: { subscription?: string; historyId?: string | number }): PushBody;
  addPushSubscription(input: PushSubscriptionInput): PushSubscription;
  listPushSubscriptions(): PushSubscription[];
  pushDeliveries(): PushDelivery[];
  /** Waits for every push started so far. */
  flushPushes(): Promise<void>;

  /** Back to empty: mailboxes, tokens, grants, faults, counts, subscriptions. The signing key stays. */
  reset(): void;
}

export function messageInfo(message: StoredMessage): MessageInfo {
  const s = message.summary;
  return {
    id: message.id,
    threadId: message.threadId,
    labelIds: [...message.labelIds],
    historyId: String(message.historyId),
    internalDate: new Date(message.internalDate).toISOString(),
    ...(s.messageId ? { messageId: s.messageId } : {}),
    ...(s.inReplyTo ? { inReplyTo: s.inReplyTo } : {}),
    references: [...s.references],
    ...(s.from[0] ? { from: formatAddress(s.from[0]) } : {}),
    to: s.to.map((a) => a.address),
    cc: s.cc.map((a) => a.address),
    bcc: s.bcc.map((a) => a.address),
    subject: s.subject,
    snippet: message.snippet,
    sizeEstimate: message.raw.length,
  };
}

export async function composeMail(fields: MailFields, defaults: { from?: string; to?: string } = {}): Promise<Buffer> {
  const node = new MailComposer({
    from: fields.from ?? defaults.from,
    to: fields.to ?? defaults.to,
    cc: fields.cc,
    bcc: fields.bcc,
    subject: fields.subject ?? '',
    text: fields.text ?? (fields.html ? undefined : ''),
    html: fields.html,
    inReplyTo: fields.inReplyTo,
    references: fields.references,
    messageId: fields.messageId,
    date: fields.date,
    headers: fields.headers,
  }).compile();
  // Gmail reads Bcc from the message it is given, so it must survive composition.
  node.keepBcc = true;
  return node.build();
}

async function toRaw(input: MailInput, defaults: { from?: string; to?: string }): Promise<Buffer> {
  if ('raw' in input) return Buffer.isBuffer(input.raw) ? input.raw : Buffer.from(input.raw, 'utf8');
  return composeMail(input, defaults);
}

export function createControl(ctx: SandboxContext): SandboxControl {
  const { store, oauth, faults, push } = ctx;

  function mailboxInfo(mailbox: Mailbox): MailboxInfo {
    const messages = [...mailbox.messages.values()];
    return {
      email: mailbox.email,
      kind: mailbox.kind,
      displayName: mailbox.displayName,
      historyId: String(mailbox.historyId),
      oldestHistoryId: String(mailbox.oldestHistoryId),
      messagesTotal: messages.length,
      threadsTotal: store.threadsTotal(mailbox),
      unread: messages.filter((m) => m.labelIds.includes('UNREAD')).length,
      ...(mailbox.watch
        ? {
            watch: {
              topicName: mailbox.watch.topicName,
              labelIds: [...mailbox.watch.labelIds],
              labelFilterBehavior: mailbox.watch.labelFilterBehavior,
              expiration: String(mailbox.watch.expiration),
            },
          }
        : {}),
      grants: oauth.grantsOf(mailbox.email),
    };
  }

  const control: SandboxControl = {
    createMailbox(input) {
      return mailboxInfo(store.createMailbox(typeof input === 'string' ? { email: input } : input));
    },
    getMailbox(email) {
      const mailbox = store.find(email);
      return mailbox ? mailboxInfo(mailbox) : undefined;
    },
    listMailboxes() {
      return store.list().map(mailboxInfo);
    },
    listMessages(email, options = {}) {
      return store
        .messagesOf(store.get(email))
        .filter((m) => !options.labelId || m.labelIds.includes(options.labelId))
        .map(messageInfo);
    },
    getMessage(email, id) {
      const message = store.message(store.get(email), id);
      return {
        ...messageInfo(message),
        headers: parseHeaders(splitHeaderAndBody(message.raw).headerText),
        text: message.summary.text,
        ...(message.summary.html ? { html: message.summary.html } : {}),
        raw: message.raw.toString('utf8'),
      };
    },
    async deliverInbound(email, input) {
      const mailbox = store.get(email);
      const raw = await toRaw(input, { to: mailbox.email });
      return messageInfo(await store.receive(mailbox.email, raw));
    },
    async sendAs(email, input) {
      const mailbox = store.get(email);
      const raw = await toRaw(input, { from: `${mailbox.displayName} <${mailbox.email}>` });
      const result = await store.send(mailbox.email, raw, input.threadId);
      return messageInfo(result.sent);
    },
    async reply(email, messageId, input) {
      const mailbox = store.get(email);
      const original = store.message(mailbox, messageId);
      const s = original.summary;
      const to = (s.replyTo.length > 0 ? s.replyTo : s.from).map(formatAddress);
      if (to.length === 0) throw new TypeError('the original has no From or Reply-To to reply to');
      const references = [...s.references, ...(s.messageId ? [s.messageId] : [])];
      const raw = await composeMail({
        from: `${mailbox.displayName} <${mailbox.email}>`,
        to,
        subject: /^re:/i.test(s.subject) ? s.subject : `Re: ${s.subject}`,
        text: input.text,
        html: input.html,
        inReplyTo: s.messageId,
        references,
      });
      const result = await store.send(mailbox.email, raw, original.threadId);
      return messageInfo(result.sent);
    },
    async deliverBounce(email, input) {
      return messageInfo(await store.deliverBounce(email, input));
    },
    setBouncingAddress(address, kind, status, form) {
      store.setBouncing(address, kind, status, form);
    },
    modifyLabels(email, id, change) {
      return messageInfo(store.modifyLabels(store.get(email), id, change.add ?? [], change.remove ?? []));
    },
    setInternalDate(email, id, at) {
      const message = store.message(store.get(email), id);
      message.internalDate = at.getTime();
      return messageInfo(message);
    },

    injectFault: (rule) => faults.add(rule),
    listFaults: () => faults.list(),
    removeFault: (id) => faults.remove(id),
    clearFaults: () => faults.clear(),

    truncateHistory(email) {
      return String(store.truncateHistory(store.get(email)));
    },
    setSearchIndexLag(email, ms) {
      store.get(email).searchIndexLagMs = ms;
    },
    expireAccessTokens: (email) => oauth.expireAccessTokens(email),
    revokeAccess: (email) => oauth.revokeMailbox(email),
    queueAuthorization: (decision) => oauth.queueDecision(decision),

    calls: (filter) => faults.calls(filter),
    callCounts: (filter) => faults.counts(filter),

    signPushToken: (input) => push.signPushToken(input),
    pushNotificationBody(email, options = {}) {
      const mailbox = store.get(email);
      return push.notificationBody(mailbox.email, Number(options.historyId ?? mailbox.historyId), options.subscription);
    },
    addPushSubscription: (input) => push.addSubscription(input),
    listPushSubscriptions: () => push.listSubscriptions(),
    pushDeliveries: () => push.deliveries(),
    flushPushes: () => push.flush(),

    reset() {
      store.reset();
      oauth.reset();
      faults.reset();
      push.reset();
    },
  };
  return control;
}
