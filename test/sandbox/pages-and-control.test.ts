import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type MessageInfo, type Sandbox } from '../../src/sandbox/index.js';

let sandbox: Sandbox;
let unsubscribeServer: Server;
let unsubscribeUrl: string;
const unsubscribeBodies: string[] = [];

beforeAll(async () => {
  sandbox = await startSandbox();
  unsubscribeServer = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      unsubscribeBodies.push(`${req.method} ${body}`);
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => unsubscribeServer.listen(0, '127.0.0.1', resolve));
  unsubscribeUrl = `http://127.0.0.1:${(unsubscribeServer.address() as AddressInfo).port}/u/tok123`;
});
afterAll(async () => {
  await sandbox.close();
  await new Promise<void>((resolve) => unsubscribeServer.close(() => resolve()));
});
beforeEach(() => {
  sandbox.control.reset();
  unsubscribeBodies.length = 0;
});

async function control<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const response = await fetch(`${sandbox.urls.control}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: (text ? JSON.parse(text) : undefined) as T };
}

describe('control API over HTTP', () => {
  it('creates mailboxes, delivers inbound mail (fields and raw), sends, bounces, truncates, resets', async () => {
    expect((await control('POST', '/mailboxes', { email: 'Alice@Acme.test', kind: 'workspace' })).status).toBe(201);
    expect((await control('POST', '/mailboxes', { email: 'not-an-email' })).status).toBe(400);
    expect((await control('GET', '/mailboxes/nobody@acme.test')).status).toBe(404);

    const sent = await control<MessageInfo>('POST', '/mailboxes/alice@acme.test/send', {
      to: 'contact@elsewhere.test',
      subject: 'Hello',
      text: 'First',
      messageId: '<ctl-1@inboxtrail.test>',
    });
    expect(sent.status).toBe(201);
    expect(sent.json.labelIds).toEqual(['SENT']);

    const reply = await control<MessageInfo>('POST', '/mailboxes/alice@acme.test/inbound', {
      from: 'Contact <contact@elsewhere.test>',
      subject: 'Re: Hello',
      text: 'Got it',
      inReplyTo: '<ctl-1@inboxtrail.test>',
    });
    expect(reply.status).toBe(201);
    expect(reply.json.threadId).toBe(sent.json.threadId);
    expect(reply.json.to).toEqual(['alice@acme.test']);

    const raw = 'From: x@elsewhere.test\r\nTo: alice@acme.test\r\nSubject: Raw one\r\nMessage-ID: <raw-ctl@elsewhere.test>\r\n\r\nBody\r\n';
    const rawDelivered = await control<MessageInfo>('POST', '/mailboxes/alice@acme.test/inbound', { raw });
    expect(rawDelivered.json.messageId).toBe('<raw-ctl@elsewhere.test>');

    const bounce = await control<MessageInfo>('POST', '/mailboxes/alice@acme.test/bounces', { originalId: sent.json.id, kind: 'hard' });
    expect(bounce.status).toBe(201);
    expect(bounce.json.from).toBe('Mail Delivery Subsystem <mailer-daemon@googlemail.com>');
    expect((await control('POST', '/mailboxes/alice@acme.test/bounces', { originalId: 'ffff' })).status).toBe(404);

    const listed = await control<{ messages: MessageInfo[] }>('GET', '/mailboxes/alice@acme.test/messages?labelId=INBOX');
    expect(listed.json.messages.map((m) => m.subject)).toEqual(['Delivery Status Notification (Failure)', 'Raw one', 'Re: Hello']);

    // Dated back (as messages.import can): the listing, newest first, puts it last.
    const dated = await control<MessageInfo>('PUT', `/mailboxes/alice@acme.test/messages/${bounce.json.id}/internal-date`, { at: '2026-01-02T03:04:05.000Z' });
    expect(dated.json.internalDate).toBe('2026-01-02T03:04:05.000Z');
    expect((await control<{ messages: MessageInfo[] }>('GET', '/mailboxes/alice@acme.test/messages?labelId=INBOX')).json.messages.map((m) => m.subject)).toEqual(['Raw one', 'Re: Hello', 'Delivery Status Notification (Failure)']);
    expect((await control('PUT', `/mailboxes/alice@acme.test/messages/${bounce.json.id}/internal-date`, { at: 'yesterday' })).status).toBe(400);
    expect((await control('PUT', '/mailboxes/alice@acme.test/messages/ffff/internal-date', { at: '2026-01-02T03:04:05.000Z' })).status).toBe(404);

    const before = sandbox.control.getMailbox('alice@acme.test')!;
    const truncated = await control<{ oldestHistoryId: string }>('POST', '/mailboxes/alice@acme.test/history/truncate');
    expect(truncated.json.oldestHistoryId).toBe(before.historyId);

    const body = await control<{ message: { data: string } }>('GET', '/mailboxes/alice@acme.test/push-body');
    expect(JSON.parse(Buffer.from(body.json.message.data, 'base64').toString())).toMatchObject({ emailAddress: 'alice@acme.test' });
    const token = await control<{ token: string }>('POST', '/push/token', { audience: 'https://x.test', email: 'p@x.iam.gserviceaccount.com' });
    expect(token.json.token.split('.')).toHaveLength(3);

    expect((await control('POST', '/reset')).status).toBe(204);
    expect((await control<{ mailboxes: unknown[] }>('GET', '/mailboxes')).json.mailboxes).toEqual([]);
  });
});

describe('inbox pages', () => {
  it('lists mailboxes and messages, escaping everything, and shows the HTML body in a sandboxed srcdoc iframe', async () => {
    sandbox.control.createMailbox('bob@contoso.test');
    const message = await sandbox.control.deliverInbound('bob@contoso.test', {
      from: 'Alice <alice@acme.test>',
      subject: 'Deal <script>alert(1)</script>',
      html: '<p>Hi "Bob"</p><img src="https://track.inboxtrail.test/t/o/abc.gif" width="1" height="1"><a href="https://track.inboxtrail.test/t/c/xyz">Read</a>',
      text: 'Hi Bob',
      headers: { 'List-Unsubscribe': `<${unsubscribeUrl}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
    });

    const index = await (await fetch(`${sandbox.url}/`)).text();
    expect(index).toContain('href="/mailboxes/bob%40contoso.test"');

    const listPage = await (await fetch(`${sandbox.url}/mailboxes/bob%40contoso.test`)).text();
    expect(listPage).toContain('Deal &lt;script&gt;alert(1)&lt;/script&gt;');
    expect(listPage).not.toContain('<script>alert');
    expect(listPage).toContain('<span class="label">UNREAD</span>');

    const response = await fetch(`${sandbox.url}/mailboxes/bob%40contoso.test/messages/${message.id}`);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    const page = await response.text();
    expect(page).not.toContain('<script>alert');
    const srcdoc = /<iframe[^>]*sandbox="allow-popups allow-popups-to-escape-sandbox"[^>]*srcdoc="([^"]*)"/.exec(page)?.[1];
    expect(srcdoc).toBeDefined();
    expect(srcdoc).toContain('&lt;img src=&quot;https://track.inboxtrail.test/t/o/abc.gif&quot;');
    expect(srcdoc).toContain('Hi &quot;Bob&quot;');
    expect(page).toContain('<pre>Hi Bob</pre>');
    // Reading it marks it read, as Gmail does.
    expect(sandbox.control.getMessage('bob@contoso.test', message.id).labelIds).not.toContain('UNREAD');

    const unsubscribe = await fetch(`${sandbox.url}/mailboxes/bob%40contoso.test/messages/${message.id}/unsubscribe`, { method: 'POST' });
    expect(await unsubscribe.text()).toContain('answered 200');
    expect(unsubscribeBodies).toEqual(['POST List-Unsubscribe=One-Click']);

    const reply = await fetch(`${sandbox.url}/mailboxes/bob%40contoso.test/messages/${message.id}/reply`, {
      method: 'POST',
      redirect: 'manual',
      body: new URLSearchParams({ text: 'Sounds good' }),
    });
    expect(reply.status).toBe(303);
    const [sentReply] = sandbox.control.listMessages('bob@contoso.test', { labelId: 'SENT' });
    expect(sentReply).toMatchObject({ subject: 'Re: Deal <script>alert(1)</script>', to: ['alice@acme.test'], threadId: message.threadId, inReplyTo: message.messageId });

    expect((await fetch(`${sandbox.url}/mailboxes/nobody%40x.test`)).status).toBe(404);
  });
});
