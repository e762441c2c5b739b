import { generateKeyPairSync } from 'node:crypto';
import { sql } from 'drizzle-orm';
import jwt from 'jsonwebtoken';
import { beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_PUSH_TOPIC } from '../../src/gmail/google-settings.js';
import { startJobs } from '../../src/jobs.js';
import { createLogger } from '../../src/logger.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { ALICE, BOB, useSyncApp } from '../helpers/gmail-sync.js';
import { startTestApp } from '../helpers/test-app.js';

/*
 * What starts a sync: a Pub/Sub push to POST /webhooks/gmail (and the refusal of one that
 * cannot prove where it comes from), the Gmail watches that make Gmail push, and the poller.
 * Same world as gmail-sync.test.ts (test/helpers/gmail-sync.ts); tests run in order.
 */

const ctx = useSyncApp();
const { sync, query, syncedRows, mailboxView } = ctx;

beforeAll(async () => {
  // A first full sync, so that ALICE has a history id for pushes to be newer (or older) than.
  await sync(ctx.alice.id);
});

const pushAudience = () => `${ctx.app.config.publicBaseUrl}/webhooks/gmail`;
const pushBody = (email: string) => ctx.app.sandbox.control.pushNotificationBody(email);
const push = (token: string | undefined, body: unknown) =>
  ctx.app.api('POST', '/webhooks/gmail', { json: body, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

describe('push (POST /webhooks/gmail)', () => {
  const subjects = async () => (await syncedRows(ctx.alice.id)).map((r) => r.subject);
  const gmailReads = () => {
    const counts = ctx.app.sandbox.control.callCounts({ mailbox: ALICE });
    return counts.history + counts.list + counts.get + counts.profile;
  };
  const validToken = () => ctx.app.sandbox.control.signPushToken({ audience: pushAudience(), email: 'gmail-push@inboxtrail-sandbox.iam.gserviceaccount.com' });

  it('a push with a valid Pub/Sub token is answered 204 at once and triggers an incremental sync', async () => {
    await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Pushed', text: 'x' });
    const res = await push(validToken(), pushBody(ALICE));
    expect(res.status).toBe(204);
    await ctx.app.services.sync.idle();
    expect(await subjects()).toContain('Pushed');
  });

  describe('a push that cannot prove it comes from Pub/Sub → 401 and nothing synced', () => {
    beforeAll(async () => {
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Must wait for a real push', text: 'x' });
    });

    const forged = () => {
      // Same kid and claims as a real token, signed with a key the sandbox never published.
      const kid = (jwt.decode(validToken(), { complete: true })!.header as { kid: string }).kid;
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const claims = { aud: pushAudience(), email: 'gmail-push@inboxtrail-sandbox.iam.gserviceaccount.com', email_verified: true, iss: 'https://accounts.google.com' };
      return jwt.sign(claims, privateKey.export({ type: 'pkcs8', format: 'pem' }), { algorithm: 'RS256', keyid: kid, expiresIn: 3600 });
    };
    const cases: [string, () => string | undefined][] = [
      ['no token', () => undefined],
      ['not a JWT', () => 'not-a-jwt'],
      ['forged (another key)', forged],
      ['wrong audience', () => ctx.app.sandbox.control.signPushToken({ audience: 'https://elsewhere.test/webhooks/gmail', email: 'gmail-push@x.iam.gserviceaccount.com' })],
      [
        'expired',
        () => ctx.app.sandbox.control.signPushToken({ audience: pushAudience(), email: 'gmail-push@x.iam.gserviceaccount.com', issuedAt: new Date(Date.now() - 7_200_000), expiresInSeconds: 3600 }),
      ],
      ['wrong issuer', () => ctx.app.sandbox.control.signPushToken({ audience: pushAudience(), email: 'gmail-push@x.iam.gserviceaccount.com', issuer: 'https://issuer.evil.test' })],
    ];

    it.each(cases)('%s', async (_name, token) => {
      const reads = gmailReads();
      const res = await push(token(), pushBody(ALICE));
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_push_token');
      await ctx.app.services.sync.idle();
      expect(gmailReads()).toBe(reads);
      expect(await subjects()).not.toContain('Must wait for a real push');
    });
  });

  it('a malformed body → 400; an unknown or already-synced mailbox → 204 without reading Gmail', async () => {
    const reads = gmailReads();
    const encode = (json: unknown) => ({ message: { data: Buffer.from(JSON.stringify(json)).toString('base64') } });
    const malformed = [{}, { message: { data: 'not base64 json' } }, encode({ emailAddress: 'x' }), encode({ emailAddress: ALICE, historyId: 1e22 }), encode({ emailAddress: ALICE, historyId: 'abc' })];
    for (const body of malformed) {
      const res = await push(validToken(), body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_push_message');
    }
    const unknown = { message: { data: Buffer.from(JSON.stringify({ emailAddress: 'nobody@acme.test', historyId: 99 })).toString('base64') } };
    expect((await push(validToken(), unknown)).status).toBe(204);
    const stale = { message: { data: Buffer.from(JSON.stringify({ emailAddress: ALICE, historyId: '1' })).toString('base64') } };
    expect((await push(validToken(), stale)).status).toBe(204);
    await ctx.app.services.sync.idle();
    expect(gmailReads()).toBe(reads);
    // A real push then syncs what was waiting.
    expect((await push(validToken(), pushBody(ALICE))).status).toBe(204);
    await ctx.app.services.sync.idle();
    expect(await subjects()).toContain('Must wait for a real push');
  });

  it('with GMAIL_PUSH_SERVICE_ACCOUNT set, only a token naming that service account is accepted', async () => {
    const account = 'gmail-push@inboxtrail-prod.iam.gserviceaccount.com';
    const strict = await startTestApp({ env: { GMAIL_PUSH_SERVICE_ACCOUNT: account } });
    try {
      const audience = `${strict.config.publicBaseUrl}/webhooks/gmail`;
      const body = { message: { data: Buffer.from(JSON.stringify({ emailAddress: 'nobody@acme.test', historyId: 5 })).toString('base64') } };
      const as = (email: string) => ({ authorization: `Bearer ${strict.sandbox.control.signPushToken({ audience, email })}` });
      expect((await strict.api('POST', '/webhooks/gmail', { json: body, headers: as('someone@other.iam.gserviceaccount.com') })).status).toBe(401);
      expect((await strict.api('POST', '/webhooks/gmail', { json: body, headers: as(account) })).status).toBe(204);
    } finally {
      await strict.close();
    }
  });
});

describe('watches and background jobs', () => {
  it('a syncing mailbox is watched as soon as it connects; renewWatches renews only when due', async () => {
    await ctx.app.services.sync.idle();
    expect(ctx.app.sandbox.control.getMailbox(ALICE)!.watch).toMatchObject({ topicName: SANDBOX_PUSH_TOPIC, labelIds: ['INBOX'] });
    const expires = new Date((await mailboxView(ctx.alice.id)).sync.watchExpiresAt).getTime();
    expect(expires).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    const watches = ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).watch;
    // Watched at connect: not due.
    await ctx.app.services.sync.renewWatches();
    expect(ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).watch).toBe(watches);
    // A day before expiry it is due again.
    await query(sql`update mailboxes set watch_expires_at = now() + interval '1 day' where id = ${ctx.alice.id}::uuid`);
    expect((await ctx.app.services.sync.renewWatches()).renewed).toBeGreaterThanOrEqual(1);
    expect(ctx.app.sandbox.control.callCounts({ mailbox: ALICE }).watch).toBe(watches + 1);
    expect(new Date((await mailboxView(ctx.alice.id)).sync.watchExpiresAt).getTime()).toBeGreaterThan(Date.now() + 6 * 86_400_000);
  });

  it('a send-only mailbox is never watched', async () => {
    await connectedMailbox(ctx.app, ctx.owner.token, 'quiet@acme.test');
    await ctx.app.services.sync.idle();
    expect(ctx.app.sandbox.control.getMailbox('quiet@acme.test')!.watch).toBeUndefined();
  });

  it('end to end: a watched mailbox\'s new mail is pushed through (sandbox) Pub/Sub to the webhook, which syncs it', async () => {
    ctx.app.sandbox.control.addPushSubscription({ topicName: SANDBOX_PUSH_TOPIC, endpoint: `${ctx.app.baseUrl}/webhooks/gmail`, audience: pushAudience() });
    await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Via Pub/Sub', text: 'x' });
    await ctx.app.sandbox.control.flushPushes();
    await ctx.app.services.sync.idle();
    expect(ctx.app.sandbox.control.pushDeliveries().filter((d) => d.mailbox === ALICE).at(-1)).toMatchObject({ status: 204 });
    expect((await syncedRows(ctx.alice.id)).map((r) => r.subject)).toContain('Via Pub/Sub');
  });

  it('the poller syncs due mailboxes in the background and stops cleanly', async () => {
    await ctx.app.sandbox.control.deliverInbound(ALICE, { from: BOB, subject: 'Polled', text: 'x' });
    const config = { ...ctx.app.config, gmail: { ...ctx.app.config.gmail, syncPollSeconds: 1 } };
    const jobs = startJobs({ services: ctx.app.services, config, logger: createLogger('silent') });
    try {
      for (let i = 0; i < 100 && !(await syncedRows(ctx.alice.id)).some((r) => r.subject === 'Polled'); i += 1) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await jobs.stop();
    }
    expect((await syncedRows(ctx.alice.id)).map((r) => r.subject)).toContain('Polled');
  });
});
