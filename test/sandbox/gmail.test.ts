import type { gmail_v1 } from '@googleapis/gmail';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { CLIENT_ID, SCOPES, base64url, composeRaw, connect, failure, googleReason, type Connection } from './helpers.js';

let sandbox: Sandbox;
let alice: Connection;
let bob: Connection;

beforeAll(async () => {
  sandbox = await startSandbox({ autoApprove: true, clientId: CLIENT_ID });
});
afterAll(async () => {
  await sandbox.close();
});
beforeEach(async () => {
  sandbox.control.reset();
  alice = await connect(sandbox, 'alice@acme.test', [SCOPES.send, SCOPES.modify]);
  bob = await connect(sandbox, 'bob@contoso.test', [SCOPES.modify]);
});

function header(message: gmail_v1.Schema$Message, name: string): string | undefined {
  return message.payload?.headers?.find((h) => h.name?.toLowerCase() === name.toLowerCase())?.value ?? undefined;
}

function partsOf(part: gmail_v1.Schema$MessagePart | undefined): gmail_v1.Schema$MessagePart[] {
  if (!part) return [];
  return [part, ...(part.parts ?? []).flatMap(partsOf)];
}

function decode(data: string | null | undefined): string {
  return Buffer.from(data ?? '', 'base64url').toString('utf8');
}

async function sendFromAlice(options: { messageId: string; to?: string; subject?: string; bcc?: string; html?: string }) {
  const raw = await composeRaw({
    from: 'Alice <alice@acme.test>',
    to: options.to ?? 'bob@contoso.test',
    bcc: options.bcc,
    subject: options.subject ?? 'Quarterly numbers',
    text: 'Hello Bob, the numbers are attached in spirit.',
    html: options.html ?? '<p>Hello Bob, the <b>numbers</b> are attached in spirit.</p>',
    messageId: options.messageId,
    date: new Date('2026-03-01T10:00:00Z'),
  });
  const sent = await alice.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(raw) } });
  return { raw, sent: sent.data };
}

describe('messages.send and rfc822msgid search', () => {
  it('sends, labels SENT, and q=rfc822msgid: finds exactly that message, bracketed or not', async () => {
    const { sent } = await sendFromAlice({ messageId: '<send-1.abc@inboxtrail.test>' });
    expect(sent.id).toMatch(/^[0-9a-f]{16}$/);
    expect(sent.threadId).toBe(sent.id);
    expect(sent.labelIds).toEqual(['SENT']);
    await sendFromAlice({ messageId: '<send-2.abc@inboxtrail.test>' });

    for (const q of ['rfc822msgid:<send-1.abc@inboxtrail.test>', 'rfc822msgid:send-1.abc@inboxtrail.test']) {
      const found = await alice.api.users.messages.list({ userId: 'me', q });
      expect(found.data.messages).toEqual([{ id: sent.id, threadId: sent.threadId }]);
      expect(found.data.resultSizeEstimate).toBe(1);
    }
    const none = await alice.api.users.messages.list({ userId: 'me', q: 'rfc822msgid:<never-sent@inboxtrail.test>' });
    expect(none.data.messages).toBeUndefined();
    expect(none.data.resultSizeEstimate).toBe(0);

    expect((await alice.api.users.messages.list({ userId: 'me', q: 'to:bob@contoso.test', labelIds: ['SENT'] })).data.messages).toHaveLength(2);
    expect((await alice.api.users.messages.list({ userId: 'me', q: 'from:nobody@acme.test' })).data.resultSizeEstimate).toBe(0);
    expect(sandbox.control.callCounts({ mailbox: 'alice@acme.test', successfulOnly: true }).send).toBe(2);
  });

  it('delivers to sandbox recipients in INBOX, and threads a reply back into the sender thread', async () => {
    const { sent } = await sendFromAlice({ messageId: '<thread-start@inboxtrail.test>' });

    const inbox = await bob.api.users.messages.list({ userId: 'me', labelIds: ['INBOX'] });
    expect(inbox.data.messages).toHaveLength(1);
    const received = (await bob.api.users.messages.get({ userId: 'me', id: inbox.data.messages![0]!.id!, format: 'metadata', metadataHeaders: ['Message-ID', 'Subject'] })).data;
    expect(received.labelIds).toEqual(expect.arrayContaining(['INBOX', 'UNREAD']));
    expect(received.id).not.toBe(sent.id);
    expect(received.payload?.headers?.map((h) => h.name)).toEqual(['Subject', 'Message-ID']);
    expect(header(received, 'Message-ID')).toBe('<thread-start@inboxtrail.test>');

    // Bob replies the way a mail client does: In-Reply-To/References plus his own threadId.
    const reply = await composeRaw({
      from: 'bob@contoso.test',
      to: 'alice@acme.test',
      subject: 'Re: Quarterly numbers',
      text: 'Thanks!',
      inReplyTo: '<thread-start@inboxtrail.test>',
      references: ['<thread-start@inboxtrail.test>'],
      messageId: '<reply-1@contoso.test>',
    });
    const bobSent = (await bob.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(reply), threadId: received.threadId } })).data;
    expect(bobSent.threadId).toBe(received.threadId);

    const aliceInbox = await alice.api.users.messages.list({ userId: 'me', q: 'in:inbox' });
    expect(aliceInbox.data.messages).toEqual([{ id: expect.any(String), threadId: sent.threadId }]);
    const thread = await alice.api.users.threads.get({ userId: 'me', id: sent.threadId!, format: 'minimal' });
    expect(thread.data.messages?.map((m) => m.labelIds?.includes('SENT') ? 'sent' : 'inbox')).toEqual(['sent', 'inbox']);

    // An inbound reply from outside the sandbox threads the same way.
    const outside = await sandbox.control.deliverInbound('alice@acme.test', {
      from: 'carol@elsewhere.test',
      subject: 'Re: Quarterly numbers',
      text: 'Me too',
      inReplyTo: '<reply-1@contoso.test>',
      references: ['<thread-start@inboxtrail.test>', '<reply-1@contoso.test>'],
    });
    expect(outside.threadId).toBe(sent.threadId);
    const unrelated = await sandbox.control.deliverInbound('alice@acme.test', { from: 'dave@elsewhere.test', subject: 'Hi', text: 'New topic' });
    expect(unrelated.threadId).toBe(unrelated.id);
  });

  it('format=raw round-trips byte for byte; full gives the MIME tree; minimal has no payload', async () => {
    const { raw, sent } = await sendFromAlice({ messageId: '<raw-1@inboxtrail.test>', html: '<p>Caf\u00e9 <a href="https://example.test/x">link</a></p>' });
    const asRaw = (await alice.api.users.messages.get({ userId: 'me', id: sent.id!, format: 'raw' })).data;
    expect(Buffer.from(asRaw.raw!, 'base64url').equals(raw)).toBe(true);
    expect(asRaw.sizeEstimate).toBe(raw.length);
    expect(asRaw.payload).toBeUndefined();

    const full = (await alice.api.users.messages.get({ userId: 'me', id: sent.id! })).data;
    expect(full.payload?.mimeType).toBe('multipart/alternative');
    expect(full.payload?.partId).toBe('');
    expect(full.payload?.parts?.map((p) => [p.partId, p.mimeType])).toEqual([
      ['0', 'text/plain'],
      ['1', 'text/html'],
    ]);
    expect(decode(full.payload?.parts?.[1]?.body?.data)).toBe('<p>Caf\u00e9 <a href="https://example.test/x">link</a></p>');
    expect(full.snippet).toBe('Hello Bob, the numbers are attached in spirit.');
    expect(Number(full.internalDate)).toBeGreaterThan(0);
    expect(header(full, 'Subject')).toBe('Quarterly numbers');

    const minimal = (await alice.api.users.messages.get({ userId: 'me', id: sent.id!, format: 'minimal' })).data;
    expect(minimal.payload).toBeUndefined();
    expect(minimal.labelIds).toEqual(['SENT']);

    expect((await failure(alice.api.users.messages.get({ userId: 'me', id: 'ffffffffffffffff' }))).status).toBe(404);
  });

  it('keeps Bcc in the sender copy only, and delivers to the Bcc recipient', async () => {
    sandbox.control.createMailbox('hidden@acme.test');
    const { sent } = await sendFromAlice({ messageId: '<bcc-1@inboxtrail.test>', bcc: 'hidden@acme.test' });
    const mine = (await alice.api.users.messages.get({ userId: 'me', id: sent.id!, format: 'metadata' })).data;
    expect(header(mine, 'Bcc')).toBe('hidden@acme.test');
    const [theirs] = sandbox.control.listMessages('hidden@acme.test');
    expect(theirs?.labelIds).toContain('INBOX');
    expect(sandbox.control.getMessage('hidden@acme.test', theirs!.id).raw).not.toMatch(/^Bcc:/im);
    expect(sandbox.control.getMessage('bob@contoso.test', sandbox.control.listMessages('bob@contoso.test')[0]!.id).headers.some((h) => h.name === 'Bcc')).toBe(false);
  });

  it('accepts a media upload as messages.send does, and rejects a send with no recipients', async () => {
    const raw = await composeRaw({ from: 'alice@acme.test', to: 'bob@contoso.test', subject: 'Uploaded', text: 'via /upload', messageId: '<upload-1@inboxtrail.test>' });
    // googleapis-common builds media URLs from the per-call rootUrl only (the client-wide
    // rootUrl is applied before the media URL replaces it), so uploads need it per call.
    const sent = await alice.api.users.messages.send(
      { userId: 'me', media: { mimeType: 'message/rfc822', body: raw.toString('utf8') } },
      { rootUrl: sandbox.urls.apiRoot },
    );
    expect(sent.data.labelIds).toEqual(['SENT']);
    expect((await alice.api.users.messages.list({ userId: 'me', q: 'rfc822msgid:upload-1@inboxtrail.test' })).data.resultSizeEstimate).toBe(1);

    const nobody = await composeRaw({ from: 'alice@acme.test', subject: 'to nobody', text: 'x' });
    const error = await failure(alice.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(nobody) } }));
    expect(error.status).toBe(400);
    expect(googleReason(error)).toBe('invalidArgument');
  });

  it('sends into a thread of the sender only by a thread id it has, and counts threads in the profile', async () => {
    const { sent } = await sendFromAlice({ messageId: '<thread-1@inboxtrail.test>' });
    const followUp = await composeRaw({ from: 'alice@acme.test', to: 'bob@contoso.test', subject: 'Re: Quarterly numbers', text: 'again', messageId: '<thread-2@inboxtrail.test>' });
    const inThread = await alice.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(followUp), threadId: sent.threadId! } });
    expect(inThread.data.threadId).toBe(sent.threadId);
    // A thread id the mailbox does not have is refused, as Gmail refuses it.
    const strange = await composeRaw({ from: 'bob@contoso.test', to: 'alice@acme.test', subject: 'x', text: 'x' });
    const error = await failure(bob.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(strange), threadId: 'ffffffffffffffff' } }));
    expect(error.status).toBe(400);
    await sendFromAlice({ messageId: '<thread-3@inboxtrail.test>', subject: 'Another' });
    expect((await alice.api.users.getProfile({ userId: 'me' })).data.threadsTotal).toBe(2);
  });

  it('pages through messages.list with maxResults and pageToken, newest first', async () => {
    for (let i = 0; i < 5; i++) await sendFromAlice({ messageId: `<page-${i}@inboxtrail.test>`, subject: `n${i}` });
    const seen: string[] = [];
    let pageToken: string | undefined;
    do {
      const page = await alice.api.users.messages.list({ userId: 'me', maxResults: 2, pageToken });
      seen.push(...(page.data.messages ?? []).map((m) => m.id!));
      expect(page.data.resultSizeEstimate).toBe(5);
      pageToken = page.data.nextPageToken ?? undefined;
    } while (pageToken);
    expect(seen).toHaveLength(5);
    expect([...seen].sort().reverse()).toEqual(seen);
  });

  it('serves attachments by id, and answers methods it does not emulate with a Google-shaped 404', async () => {
    const raw = await composeRaw({
      from: 'alice@acme.test',
      to: 'bob@contoso.test',
      subject: 'With file',
      text: 'see attached',
      attachments: [{ filename: 'report.csv', content: 'a,b\n1,2\n', contentType: 'text/csv' }],
    });
    const sent = (await alice.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(raw) } })).data;
    const full = (await alice.api.users.messages.get({ userId: 'me', id: sent.id! })).data;
    const file = partsOf(full.payload).find((p) => p.filename === 'report.csv');
    expect(file?.mimeType).toBe('text/csv');
    expect(file?.body?.data).toBeUndefined();
    const attachment = await alice.api.users.messages.attachments.get({ userId: 'me', messageId: sent.id!, id: file!.body!.attachmentId! });
    expect(decode(attachment.data.data)).toBe('a,b\n1,2\n');
    expect((await alice.api.users.messages.list({ userId: 'me', q: 'has:attachment' })).data.resultSizeEstimate).toBe(1);

    const drafts = await failure(alice.api.users.drafts.list({ userId: 'me' }, { retry: false }));
    expect(drafts.status).toBe(404);
    expect(drafts.message).toMatch(/does not emulate/);
  });

  it('lists the system labels', async () => {
    const labels = (await alice.api.users.labels.list({ userId: 'me' })).data.labels ?? [];
    expect(labels.map((l) => l.id)).toEqual(expect.arrayContaining(['INBOX', 'SENT', 'UNREAD', 'SPAM', 'TRASH']));
    expect(labels.every((l) => l.type === 'system')).toBe(true);
  });
});

describe('history', () => {
  it('has strictly increasing ids, typed records, and 404 once truncated', async () => {
    const start = (await alice.api.users.getProfile({ userId: 'me' })).data.historyId!;
    const { sent } = await sendFromAlice({ messageId: '<h-1@inboxtrail.test>' });
    await sendFromAlice({ messageId: '<h-2@inboxtrail.test>' });
    await alice.api.users.messages.modify({ userId: 'me', id: sent.id!, requestBody: { addLabelIds: ['STARRED'] } });

    const history = (await alice.api.users.history.list({ userId: 'me', startHistoryId: start })).data;
    const ids = history.history!.map((h) => Number(h.id));
    expect(ids).toHaveLength(3);
    expect(ids.every((id, i) => id > Number(start) && (i === 0 || id > ids[i - 1]!))).toBe(true);
    expect(history.history![0]!.messagesAdded?.[0]?.message).toMatchObject({ id: sent.id, threadId: sent.threadId, labelIds: ['SENT'] });
    expect(history.history![2]!.labelsAdded?.[0]).toMatchObject({ labelIds: ['STARRED'], message: { id: sent.id } });
    expect(history.historyId).toBe(String(ids[2]));

    const onlyAdded = (await alice.api.users.history.list({ userId: 'me', startHistoryId: start, historyTypes: ['messageAdded'] })).data;
    expect(onlyAdded.history).toHaveLength(2);
    const paged = (await alice.api.users.history.list({ userId: 'me', startHistoryId: start, maxResults: 2 })).data;
    expect(paged.history).toHaveLength(2);
    expect(paged.nextPageToken).toBeTruthy();

    const nothingNew = (await alice.api.users.history.list({ userId: 'me', startHistoryId: history.historyId! })).data;
    expect(nothingNew.history).toBeUndefined();

    const oldest = sandbox.control.truncateHistory('alice@acme.test');
    const gone = await failure(alice.api.users.history.list({ userId: 'me', startHistoryId: start }));
    expect(gone.status).toBe(404);
    expect(googleReason(gone)).toBe('notFound');
    expect((await alice.api.users.history.list({ userId: 'me', startHistoryId: oldest })).data.historyId).toBe(oldest);
  });

  it('watch returns the current historyId and an expiration; stop answers 204', async () => {
    const watch = (await alice.api.users.watch({ userId: 'me', requestBody: { topicName: 'projects/inboxtrail/topics/gmail', labelIds: ['INBOX'] } })).data;
    expect(watch.historyId).toBe(sandbox.control.getMailbox('alice@acme.test')?.historyId);
    expect(Number(watch.expiration)).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    expect(sandbox.control.getMailbox('alice@acme.test')?.watch?.topicName).toBe('projects/inboxtrail/topics/gmail');
    const badTopic = await failure(alice.api.users.watch({ userId: 'me', requestBody: { topicName: 'gmail' } }));
    expect(badTopic.status).toBe(400);
    expect((await alice.api.users.stop({ userId: 'me' })).status).toBe(204);
    expect(sandbox.control.getMailbox('alice@acme.test')?.watch).toBeUndefined();
  });
});

describe('bounces', () => {
  it('delivers a DSN that reads like Gmail mailer-daemon, threaded with the original', async () => {
    const { sent } = await sendFromAlice({ messageId: '<bounce-me@inboxtrail.test>', to: 'nobody@nowhere.test' });
    const dsn = await sandbox.control.deliverBounce('alice@acme.test', { originalMessageId: '<bounce-me@inboxtrail.test>', kind: 'hard' });
    expect(dsn.threadId).toBe(sent.threadId);

    const found = await alice.api.users.messages.list({ userId: 'me', q: 'from:mailer-daemon@googlemail.com' });
    expect(found.data.messages?.[0]?.id).toBe(dsn.id);
    const full = (await alice.api.users.messages.get({ userId: 'me', id: dsn.id, format: 'full' })).data;
    expect(full.payload?.mimeType).toBe('multipart/report');
    expect(header(full, 'From')).toBe('Mail Delivery Subsystem <mailer-daemon@googlemail.com>');
    expect(header(full, 'X-Failed-Recipients')).toBe('nobody@nowhere.test');
    const parts = partsOf(full.payload);
    const status = decode(parts.find((p) => p.mimeType === 'message/delivery-status')?.body?.data);
    expect(status).toMatch(/^Final-Recipient: rfc822; nobody@nowhere\.test$/m);
    expect(status).toMatch(/^Status: 5\.1\.1$/m);
    expect(status).toMatch(/^Action: failed$/m);
    expect(decode(parts.find((p) => p.mimeType === 'text/rfc822-headers')?.body?.data)).toContain('Message-ID: <bounce-me@inboxtrail.test>');
  });

  it('bounces sends to an address marked as bouncing: soft is a failure (5.2.2), delay a warning (4.2.2)', async () => {
    sandbox.control.setBouncingAddress('full.mailbox@nowhere.test', 'soft');
    sandbox.control.setBouncingAddress('slow.mailbox@nowhere.test', 'delay');
    await sendFromAlice({ messageId: '<soft-1@inboxtrail.test>', to: 'full.mailbox@nowhere.test' });
    await sendFromAlice({ messageId: '<delay-1@inboxtrail.test>', to: 'slow.mailbox@nowhere.test' });
    const [delay, soft] = sandbox.control.listMessages('alice@acme.test', { labelId: 'INBOX' });
    expect(soft?.subject).toBe('Delivery Status Notification (Failure)');
    expect(sandbox.control.getMessage('alice@acme.test', soft!.id).raw).toMatch(/^Status: 5\.2\.2\r?$/m);
    expect(delay?.subject).toBe('Delivery Status Notification (Delay)');
    const detail = sandbox.control.getMessage('alice@acme.test', delay!.id);
    expect(detail.raw).toMatch(/^Status: 4\.2\.2\r?$/m);
    expect(detail.raw).toMatch(/^Action: delayed\r?$/m);
  });

  it('Gmail\'s plain-text form: X-Failed-Recipients, the prose, the original quoted inline, no report part and no threading', async () => {
    await sendFromAlice({ messageId: '<text-1@inboxtrail.test>', to: 'gone@nowhere.test' });
    const dsn = await sandbox.control.deliverBounce('alice@acme.test', { originalMessageId: '<text-1@inboxtrail.test>', kind: 'hard', form: 'text' });
    const full = (await alice.api.users.messages.get({ userId: 'me', id: dsn.id, format: 'full' })).data;
    expect(full.payload?.mimeType).toBe('text/plain');
    expect(header(full, 'X-Failed-Recipients')).toBe('gone@nowhere.test');
    expect(header(full, 'In-Reply-To')).toBeUndefined();
    const text = decode(full.payload?.body?.data);
    expect(text).toMatch(/Delivery to the following recipient failed permanently:\r?\n\r?\n {5}gone@nowhere\.test/);
    expect(text).toContain('550 5.1.1 The email account that you tried to reach does not exist.');
    expect(text).toMatch(/----- Original message -----[\s\S]*Message-ID: <text-1@inboxtrail\.test>/);

    const delay = await sandbox.control.deliverBounce('alice@acme.test', { originalMessageId: '<text-1@inboxtrail.test>', kind: 'delay', form: 'text' });
    const delayed = sandbox.control.getMessage('alice@acme.test', delay.id);
    expect(delayed.subject).toBe('Delivery Status Notification (Delay)');
    expect(delayed.raw).not.toMatch(/^X-Failed-Recipients:/m);
    expect(delayed.raw).toContain('Delivery to the following recipient has been delayed:');
  });
});
