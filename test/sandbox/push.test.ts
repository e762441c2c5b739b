import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OAuth2Client } from 'google-auth-library';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type PushBody, type Sandbox } from '../../src/sandbox/index.js';
import { signJwtWith } from '../../src/sandbox/signing.js';
import { CLIENT_ID, SCOPES, base64url, composeRaw, connect } from './helpers.js';

const AUDIENCE = 'https://inboxtrail.test/webhooks/gmail';
const PUSH_ACCOUNT = 'gmail-push@inboxtrail-prod.iam.gserviceaccount.com';

let sandbox: Sandbox;

interface Received {
  authorization?: string;
  body: PushBody;
}
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

beforeAll(async () => {
  sandbox = await startSandbox({ autoApprove: true, clientId: CLIENT_ID });
  receiver = createServer((req, res) => {
    void readJson(req).then((body) => {
      received.push({ authorization: req.headers.authorization, body: body as PushBody });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/gmail`;
});
afterAll(async () => {
  await sandbox.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});
beforeEach(() => {
  sandbox.control.reset();
  received.length = 0;
});

/** The service's side: verify with the real library, certs fetched from the sandbox. */
async function verify(token: string, audience = AUDIENCE) {
  const verifier = new OAuth2Client({ endpoints: { oauth2FederatedSignonPemCertsUrl: sandbox.urls.certs } });
  const { certs } = await verifier.getFederatedSignonCertsAsync();
  return verifier.verifySignedJwtWithCertsAsync(token, certs, audience, ['https://accounts.google.com', 'accounts.google.com']);
}

describe('Pub/Sub push tokens', () => {
  it('serves its public key in Google certs shape (PEM by kid, and JWK)', async () => {
    const pem = (await (await fetch(sandbox.urls.certs)).json()) as Record<string, string>;
    const [kid] = Object.keys(pem);
    expect(kid).toMatch(/^[0-9a-f]{40}$/);
    expect(pem[kid!]).toContain('-----BEGIN PUBLIC KEY-----');
    const jwks = (await (await fetch(sandbox.urls.jwks)).json()) as { keys: { kid: string; alg: string; kty: string }[] };
    expect(jwks.keys[0]).toMatchObject({ kid, alg: 'RS256', kty: 'RSA' });
  });

  it('a token the sandbox signs verifies with verifySignedJwtWithCertsAsync; other keys and audiences fail', async () => {
    const token = sandbox.control.signPushToken({ audience: AUDIENCE, email: PUSH_ACCOUNT });
    const ticket = await verify(token);
    expect(ticket.getPayload()).toMatchObject({ aud: AUDIENCE, email: PUSH_ACCOUNT, email_verified: true, iss: 'https://accounts.google.com' });
    // LoginTicket.getEnvelope() is typed as a string but returns the decoded JWT header object.
    const envelope = ticket.getEnvelope() as unknown as { alg: string; kid: string };
    expect(envelope.alg).toBe('RS256');

    await expect(verify(token, 'https://someone-else.test/push')).rejects.toThrow(/Wrong recipient/);

    // Same kid, same claims, a key the sandbox never published: the signature must not verify.
    const kid = envelope.kid;
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const now = Math.floor(Date.now() / 1000);
    const forged = signJwtWith(privateKey, kid, { aud: AUDIENCE, email: PUSH_ACCOUNT, email_verified: true, iss: 'https://accounts.google.com', iat: now, exp: now + 3600 });
    await expect(verify(forged)).rejects.toThrow(/Invalid token signature/);

    const unknownKid = signJwtWith(privateKey, 'not-a-sandbox-kid', { aud: AUDIENCE, iat: now, exp: now + 3600 });
    await expect(verify(unknownKid)).rejects.toThrow(/No pem found/);

    const expired = sandbox.control.signPushToken({ audience: AUDIENCE, email: PUSH_ACCOUNT, issuedAt: new Date(Date.now() - 7200_000), expiresInSeconds: 600 });
    await expect(verify(expired)).rejects.toThrow(/Token used too late/);

    const wrongIssuer = sandbox.control.signPushToken({ audience: AUDIENCE, email: PUSH_ACCOUNT, issuer: 'https://evil.test' });
    await expect(verify(wrongIssuer)).rejects.toThrow(/Invalid issuer/);
  });

  it('builds the Pub/Sub push body for a mailbox', async () => {
    sandbox.control.createMailbox('alice@acme.test');
    const body = sandbox.control.pushNotificationBody('alice@acme.test');
    expect(body.subscription).toMatch(/^projects\/.+\/subscriptions\/.+$/);
    expect(body.message.messageId).toMatch(/^\d+$/);
    expect(Date.parse(body.message.publishTime)).not.toBeNaN();
    const data = JSON.parse(Buffer.from(body.message.data, 'base64').toString('utf8')) as { emailAddress: string; historyId: number };
    expect(data).toEqual({ emailAddress: 'alice@acme.test', historyId: Number(sandbox.control.getMailbox('alice@acme.test')!.historyId) });
  });

  it('pushes to a subscription endpoint after mail arrives in a watched mailbox', async () => {
    const alice = await connect(sandbox, 'alice@acme.test', [SCOPES.send, SCOPES.modify]);
    sandbox.control.addPushSubscription({ topicName: 'projects/inboxtrail/topics/gmail', endpoint: receiverUrl, audience: AUDIENCE, serviceAccountEmail: PUSH_ACCOUNT });
    await alice.api.users.watch({ userId: 'me', requestBody: { topicName: 'projects/inboxtrail/topics/gmail', labelIds: ['INBOX'], labelFilterBehavior: 'include' } });

    // SENT only: filtered out by the INBOX label filter.
    const raw = await composeRaw({ from: 'alice@acme.test', to: 'x@elsewhere.test', subject: 'out', text: 'out' });
    await alice.api.users.messages.send({ userId: 'me', requestBody: { raw: base64url(raw) } });
    const reply = await sandbox.control.deliverInbound('alice@acme.test', { from: 'x@elsewhere.test', subject: 'in', text: 'in' });
    await sandbox.control.flushPushes();

    expect(received).toHaveLength(1);
    const [push] = received;
    const ticket = await verify(push!.authorization!.replace(/^Bearer /, ''));
    expect(ticket.getPayload()?.email).toBe(PUSH_ACCOUNT);
    const data = JSON.parse(Buffer.from(push!.body.message.data, 'base64').toString('utf8')) as { emailAddress: string; historyId: number };
    expect(data).toEqual({ emailAddress: 'alice@acme.test', historyId: Number(reply.historyId) });
    expect(sandbox.control.pushDeliveries()).toEqual([expect.objectContaining({ status: 204, mailbox: 'alice@acme.test' })]);

    await alice.api.users.stop({ userId: 'me' });
    await sandbox.control.deliverInbound('alice@acme.test', { from: 'x@elsewhere.test', subject: 'again', text: 'again' });
    await sandbox.control.flushPushes();
    expect(received).toHaveLength(1);
  });
});
