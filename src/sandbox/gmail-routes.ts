import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import { queryList, queryString, sendGoogleError, sleep, trackCall, type SandboxContext } from './context.js';
import type { SandboxEndpoint } from './faults.js';
import { GoogleApiError, OAuthError, gmailErrors } from './google-errors.js';
import { contentTypeOf, fromBase64Any, splitHeaderAndBody, splitMultipart, toBase64Url } from './mime.js';
import { compileQuery } from './query.js';
import { MailStoreError, SYSTEM_LABELS, type HistoryKind, type HistoryRecord, type Mailbox, type StoredMessage } from './store.js';

/**
 * Gmail REST v1 under /gmail/v1/users/{userId}/…, shaped so that `@googleapis/gmail`
 * parses every answer as it parses Google's. Each route: count the call, authenticate
 * the bearer token, resolve userId, check scopes, apply injected faults, then act.
 */

const FULL = 'https://mail.google.com/';
const gmailScope = (name: string) => `https://www.googleapis.com/auth/gmail.${name}`;
const READ = [FULL, gmailScope('modify'), gmailScope('readonly')];
const METADATA = [...READ, gmailScope('metadata')];
const SEND = [FULL, gmailScope('modify'), gmailScope('compose'), gmailScope('send')];
const ANY_GMAIL = [...METADATA, gmailScope('compose'), gmailScope('send'), gmailScope('insert'), gmailScope('labels')];
const MODIFY = [FULL, gmailScope('modify')];
const LABELS = [...METADATA, gmailScope('labels')];

const DEFAULT_PAGE = 100;
const MAX_PAGE = 500;
const WATCH_TTL_MS = 7 * 86_400_000;

interface GmailCall {
  mailbox: Mailbox;
  scopes: string[];
}

type Handler = (call: GmailCall, req: Request, res: Response) => Promise<unknown> | unknown;

function bearer(req: Request): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  return match?.[1] ?? queryString(req, 'access_token');
}

function pageOffset(token: string | undefined): number {
  if (!token) return 0;
  const offset = Number(Buffer.from(token, 'base64url').toString('utf8'));
  if (!Number.isSafeInteger(offset) || offset < 0) throw gmailErrors.invalidArgument('Invalid pageToken');
  return offset;
}

function pageSize(req: Request): number {
  const raw = queryString(req, 'maxResults');
  if (raw === undefined) return DEFAULT_PAGE;
  const size = Number(raw);
  if (!Number.isInteger(size) || size < 1) throw gmailErrors.invalidArgument('Invalid maxResults');
  return Math.min(size, MAX_PAGE);
}

function paginate<T>(items: T[], req: Request): { page: T[]; nextPageToken?: string } {
  const offset = pageOffset(queryString(req, 'pageToken'));
  const size = pageSize(req);
  const page = items.slice(offset, offset + size);
  const next = offset + size < items.length ? Buffer.from(String(offset + size)).toString('base64url') : undefined;
  return { page, ...(next ? { nextPageToken: next } : {}) };
}

type Format = 'full' | 'metadata' | 'minimal' | 'raw';

function parseFormat(value: string | undefined): Format {
  const format = (value ?? 'full').toLowerCase();
  if (format === 'full' || format === 'metadata' || format === 'minimal' || format === 'raw') return format;
  throw gmailErrors.invalidArgument(`Invalid value at 'format' (${value})`);
}

export function messageResource(ctx: SandboxContext, mailbox: Mailbox, message: StoredMessage, format: Format, metadataHeaders: string[] = []) {
  const base = {
    id: message.id,
    threadId: message.threadId,
    labelIds: [...message.labelIds],
    snippet: message.snippet,
    sizeEstimate: message.raw.length,
    historyId: String(message.historyId),
    internalDate: String(message.internalDate),
  };
  if (format === 'minimal') return base;
  if (format === 'raw') return { ...base, raw: toBase64Url(message.raw) };
  const payload = ctx.store.payloadOf(mailbox, message);
  if (format === 'full') return { ...base, payload };
  const wanted = new Set(metadataHeaders.map((h) => h.toLowerCase()));
  return {
    ...base,
    payload: {
      partId: '',
      mimeType: payload.mimeType,
      filename: '',
      headers: wanted.size > 0 ? payload.headers.filter((h) => wanted.has(h.name.toLowerCase())) : payload.headers,
    },
  };
}

function historyResource(record: HistoryRecord) {
  const message = { id: record.messageId, threadId: record.threadId };
  const withLabels = { ...message, labelIds: record.messageLabels };
  const change =
    record.kind === 'messageAdded'
      ? { messagesAdded: [{ message: withLabels }] }
      : record.kind === 'messageDeleted'
        ? { messagesDeleted: [{ message }] }
        : record.kind === 'labelAdded'
          ? { labelsAdded: [{ message: withLabels, labelIds: record.changedLabels }] }
          : { labelsRemoved: [{ message: withLabels, labelIds: record.changedLabels }] };
  return { id: String(record.id), messages: [message], ...change };
}

const HISTORY_TYPES: Record<string, HistoryKind> = {
  messageadded: 'messageAdded',
  messagedeleted: 'messageDeleted',
  labeladded: 'labelAdded',
  labelremoved: 'labelRemoved',
};

function labelResource(ctx: SandboxContext, mailbox: Mailbox | undefined, id: string) {
  const hidden = id.startsWith('CATEGORY_') || id === 'CHAT' || id === 'UNREAD' || id === 'STARRED' || id === 'IMPORTANT';
  const base = {
    id,
    name: id,
    type: 'system',
    ...(hidden ? {} : { messageListVisibility: 'hide', labelListVisibility: 'labelShow' }),
  };
  if (!mailbox) return base;
  const messages = ctx.store.messagesOf(mailbox).filter((m) => m.labelIds.includes(id));
  const unread = messages.filter((m) => m.labelIds.includes('UNREAD'));
  return {
    ...base,
    messagesTotal: messages.length,
    messagesUnread: unread.length,
    threadsTotal: new Set(messages.map((m) => m.threadId)).size,
    threadsUnread: new Set(unread.map((m) => m.threadId)).size,
  };
}

/** The RFC 822 bytes of an /upload/ send: `uploadType=media` is the message itself, `multipart` is JSON metadata + message. */
function uploadedMessage(req: Request): { raw: Buffer; threadId?: string } {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const type = contentTypeOf([{ name: 'Content-Type', value: req.headers['content-type'] ?? '' }], 'application/octet-stream');
  if (type.mimeType.startsWith('multipart/') && type.params['boundary']) {
    const parts = splitMultipart(body, type.params['boundary']).map((part) => splitHeaderAndBody(part));
    const metadataPart = parts.find((p) => /application\/json/i.test(p.headerText));
    const messagePart = parts.find((p) => !/application\/json/i.test(p.headerText));
    let threadId: string | undefined;
    if (metadataPart && metadataPart.body.length > 0) {
      const metadata = JSON.parse(metadataPart.body.toString('utf8')) as { threadId?: unknown };
      if (typeof metadata.threadId === 'string') threadId = metadata.threadId;
    }
    return { raw: messagePart?.body ?? Buffer.alloc(0), threadId };
  }
  return { raw: body };
}

export function gmailRoutes(ctx: SandboxContext): Router {
  const router = express.Router();

  function route(endpoint: SandboxEndpoint, allowed: readonly string[], handler: Handler): RequestHandler {
    return async (req, res) => {
      const call = trackCall(ctx, res, endpoint);
      try {
        const token = ctx.oauth.authenticate(bearer(req));
        if (!token) throw gmailErrors.unauthenticated();
        const userId = String(req.params['userId'] ?? '');
        if (userId !== 'me' && userId.toLowerCase() !== token.email) throw gmailErrors.delegationDenied(userId);
        const mailbox = ctx.store.find(token.email);
        if (!mailbox) throw gmailErrors.unauthenticated();
        call.mailbox = mailbox.email;
        // A read names its message too: tests can tell which message a slowed or failed read was.
        if (endpoint === 'get') call.messageId = String(req.params['id'] ?? '');
        if (ctx.enforceScopes && !token.scopes.some((s) => allowed.includes(s))) throw gmailErrors.insufficientScopes();

        const fault = ctx.faults.decide(endpoint, mailbox.email, ctx.now());
        if (fault.latencyMs > 0) await sleep(fault.latencyMs);
        if (fault.error) {
          call.faulted = true;
          throw fault.error;
        }
        const result = await handler({ mailbox, scopes: token.scopes }, req, res);
        if (endpoint === 'send' && result && typeof (result as { id?: unknown }).id === 'string') call.messageId = (result as { id: string }).id;
        if (res.headersSent) return;
        if (result === undefined) res.status(204).end();
        else res.json(result);
      } catch (error) {
        if (res.headersSent) return;
        if (error instanceof GoogleApiError || error instanceof OAuthError) return sendGoogleError(res, error);
        if (error instanceof MailStoreError) {
          return sendGoogleError(res, error.code === 'not_found' ? gmailErrors.notFound() : gmailErrors.invalidArgument(error.message));
        }
        if (error instanceof RangeError || error instanceof SyntaxError) return sendGoogleError(res, gmailErrors.invalidArgument(error.message));
        console.error('gmail sandbox: unexpected error', error);
        sendGoogleError(res, gmailErrors.backendError(500));
      }
    };
  }

  const metadataOnly = (scopes: string[]) => !scopes.some((s) => READ.includes(s)) && scopes.includes(gmailScope('metadata'));

  router.get(
    '/gmail/v1/users/:userId/profile',
    route('profile', ANY_GMAIL, ({ mailbox }) => ({
      emailAddress: mailbox.email,
      messagesTotal: mailbox.messages.size,
      threadsTotal: ctx.store.threadsTotal(mailbox),
      historyId: String(mailbox.historyId),
    })),
  );

  const send: Handler = async ({ mailbox }, req) => {
    let raw: Buffer;
    let threadId: string | undefined;
    if (req.path.startsWith('/upload/')) {
      ({ raw, threadId } = uploadedMessage(req));
    } else {
      const body = (req.body ?? {}) as { raw?: unknown; threadId?: unknown };
      raw = typeof body.raw === 'string' ? fromBase64Any(body.raw) : Buffer.alloc(0);
      threadId = typeof body.threadId === 'string' && body.threadId ? body.threadId : undefined;
    }
    if (raw.length === 0) throw gmailErrors.invalidArgument("'raw' RFC822 payload message string or uploading message via /upload/* URL required");
    const result = await ctx.store.send(mailbox.email, raw, threadId);
    return { id: result.sent.id, threadId: result.sent.threadId, labelIds: result.sent.labelIds };
  };
  router.post('/gmail/v1/users/:userId/messages/send', express.json({ limit: '50mb' }), route('send', SEND, send));
  router.post('/upload/gmail/v1/users/:userId/messages/send', express.raw({ type: () => true, limit: '50mb' }), route('send', SEND, send));

  router.get(
    '/gmail/v1/users/:userId/messages',
    route('list', METADATA, ({ mailbox, scopes }, req) => {
      const q = queryString(req, 'q');
      if (q && metadataOnly(scopes)) throw new GoogleApiError(403, 'forbidden', "Metadata scope does not support 'q' parameter");
      const query = compileQuery(q, ctx.now());
      const labelIds = queryList(req, 'labelIds');
      const includeSpamTrash = queryString(req, 'includeSpamTrash') === 'true' || query.includesSpamTrash;
      const matching = ctx.store
        .messagesOf(mailbox)
        .filter((m) => includeSpamTrash || !(m.labelIds.includes('SPAM') || m.labelIds.includes('TRASH')))
        .filter((m) => labelIds.every((l) => m.labelIds.includes(l)))
        // A search reads Gmail's index, which may not hold a message stored a moment ago.
        .filter((m) => !q || m.internalDate + mailbox.searchIndexLagMs <= ctx.now().getTime())
        .filter((m) => query.matches(m));
      const { page, nextPageToken } = paginate(matching, req);
      return {
        ...(page.length > 0 ? { messages: page.map((m) => ({ id: m.id, threadId: m.threadId })) } : {}),
        ...(nextPageToken ? { nextPageToken } : {}),
        resultSizeEstimate: matching.length,
      };
    }),
  );

  router.get(
    '/gmail/v1/users/:userId/messages/:id',
    route('get', METADATA, ({ mailbox, scopes }, req) => {
      const format = parseFormat(queryString(req, 'format'));
      if (metadataOnly(scopes) && (format === 'full' || format === 'raw')) {
        throw new GoogleApiError(403, 'forbidden', `Metadata scope doesn't allow format ${format.toUpperCase()}`);
      }
      const id = String(req.params['id']);
      if (!/^[0-9a-f]{1,32}$/i.test(id)) throw gmailErrors.invalidArgument('Invalid id value');
      return messageResource(ctx, mailbox, ctx.store.message(mailbox, id), format, queryList(req, 'metadataHeaders'));
    }),
  );

  router.get(
    '/gmail/v1/users/:userId/messages/:messageId/attachments/:id',
    route('attachment', READ, ({ mailbox }, req) => {
      const message = ctx.store.message(mailbox, String(req.params['messageId']));
      ctx.store.payloadOf(mailbox, message);
      const data = mailbox.attachments.get(String(req.params['id']));
      if (!data) throw gmailErrors.invalidArgument('Invalid attachment token');
      return { size: data.length, data: toBase64Url(data) };
    }),
  );

  router.post(
    '/gmail/v1/users/:userId/messages/:id/modify',
    express.json(),
    route('modify', MODIFY, ({ mailbox }, req) => {
      const body = (req.body ?? {}) as { addLabelIds?: unknown; removeLabelIds?: unknown };
      const list = (value: unknown) => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
      const message = ctx.store.modifyLabels(mailbox, String(req.params['id']), list(body.addLabelIds), list(body.removeLabelIds));
      return { id: message.id, threadId: message.threadId, labelIds: message.labelIds };
    }),
  );

  router.get(
    '/gmail/v1/users/:userId/threads/:id',
    route('thread', METADATA, ({ mailbox, scopes }, req) => {
      const format = parseFormat(queryString(req, 'format'));
      if (metadataOnly(scopes) && (format === 'full' || format === 'raw')) {
        throw new GoogleApiError(403, 'forbidden', `Metadata scope doesn't allow format ${format.toUpperCase()}`);
      }
      const messages = ctx.store
        .messagesOf(mailbox)
        .filter((m) => m.threadId === req.params['id'])
        .reverse();
      if (messages.length === 0) throw gmailErrors.notFound();
      const headers = queryList(req, 'metadataHeaders');
      return {
        id: req.params['id'],
        snippet: messages[messages.length - 1]!.snippet,
        historyId: String(Math.max(...messages.map((m) => m.historyId))),
        // Gmail's threads.get has no raw format; raw falls back to full like Google does.
        messages: messages.map((m) => messageResource(ctx, mailbox, m, format === 'raw' ? 'full' : format, headers)),
      };
    }),
  );

  router.get(
    '/gmail/v1/users/:userId/history',
    route('history', METADATA, ({ mailbox }, req) => {
      const startRaw = queryString(req, 'startHistoryId');
      if (!startRaw) throw gmailErrors.invalidArgument('Missing required parameter: startHistoryId');
      if (!/^\d+$/.test(startRaw)) throw gmailErrors.invalidArgument('Invalid startHistoryId');
      const start = Number(startRaw);
      if (start < mailbox.oldestHistoryId) throw gmailErrors.notFound();
      const types = queryList(req, 'historyTypes').map((t) => {
        const kind = HISTORY_TYPES[t.toLowerCase()];
        if (!kind) throw gmailErrors.invalidArgument(`Invalid value at 'history_types' (${t})`);
        return kind;
      });
      const labelId = queryString(req, 'labelId');
      const records = mailbox.history
        .filter((r) => r.id > start)
        .filter((r) => types.length === 0 || types.includes(r.kind))
        .filter((r) => !labelId || r.messageLabels.includes(labelId) || r.changedLabels.includes(labelId));
      const { page, nextPageToken } = paginate(records, req);
      return {
        ...(page.length > 0 ? { history: page.map(historyResource) } : {}),
        ...(nextPageToken ? { nextPageToken } : {}),
        historyId: String(mailbox.historyId),
      };
    }),
  );

  router.post(
    '/gmail/v1/users/:userId/watch',
    express.json(),
    route('watch', METADATA, ({ mailbox }, req) => {
      const body = (req.body ?? {}) as { topicName?: unknown; labelIds?: unknown; labelFilterBehavior?: unknown; labelFilterAction?: unknown };
      if (typeof body.topicName !== 'string' || !/^projects\/[^/]+\/topics\/[^/]+$/.test(body.topicName)) {
        throw gmailErrors.invalidArgument('Invalid topicName does not match projects/SOME-ANDROID-PROJECT/topics/*');
      }
      const behavior = String(body.labelFilterBehavior ?? body.labelFilterAction ?? 'include').toLowerCase();
      const expiration = ctx.now().getTime() + WATCH_TTL_MS;
      mailbox.watch = {
        topicName: body.topicName,
        labelIds: Array.isArray(body.labelIds) ? body.labelIds.filter((l): l is string => typeof l === 'string') : [],
        labelFilterBehavior: behavior === 'exclude' ? 'exclude' : 'include',
        expiration,
        historyId: mailbox.historyId,
      };
      return { historyId: String(mailbox.historyId), expiration: String(expiration) };
    }),
  );

  router.post(
    '/gmail/v1/users/:userId/stop',
    route('stop', METADATA, ({ mailbox }) => {
      delete mailbox.watch;
      return undefined;
    }),
  );

  router.get(
    '/gmail/v1/users/:userId/labels',
    route('labels', LABELS, () => ({ labels: SYSTEM_LABELS.map((id) => labelResource(ctx, undefined, id)) })),
  );
  router.get(
    '/gmail/v1/users/:userId/labels/:id',
    route('labels', LABELS, ({ mailbox }, req) => {
      const id = String(req.params['id']);
      if (!(SYSTEM_LABELS as readonly string[]).includes(id)) throw gmailErrors.notFound();
      return labelResource(ctx, mailbox, id);
    }),
  );

  // Anything else under the Gmail API is a method this sandbox does not emulate; say so in Google's shape.
  router.all(['/gmail/v1/{*rest}', '/upload/gmail/v1/{*rest}'], (req, res) => {
    sendGoogleError(res, new GoogleApiError(404, 'notFound', `The Gmail sandbox does not emulate ${req.method} ${req.path}`));
  });

  // Malformed JSON bodies: Google's 400 for an unparseable payload.
  router.use(((error, _req, res, next) => {
    const status = (error as { status?: number } | null)?.status;
    if (res.headersSent || !status || status >= 500) return next(error);
    sendGoogleError(res, new GoogleApiError(status, status === 413 ? 'uploadTooLarge' : 'parseError', status === 413 ? 'Request payload is too large' : 'Invalid JSON payload received.'));
  }) as express.ErrorRequestHandler);

  return router;
}
