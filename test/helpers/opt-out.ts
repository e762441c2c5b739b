import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect } from 'vitest';
import { auditLog, campaigns, consents, recipients, suppressions } from '../../src/db/schema.js';
import { RESUBSCRIBE_MAIL_SUBJECT, TRACKING_MAIL_SUBJECT } from '../../src/suppression/resubscribe.service.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { signUp, startTestApp, type TestApp } from './test-app.js';

/*
 * What the recipient-side opt-out tests (opt-out-one-click, opt-out-preference-center) share.
 * Campaign rows are seeded with Drizzle: a token only needs a recipient row and, optionally,
 * a campaign.
 */

export const ONE_CLICK = 'List-Unsubscribe=One-Click';
export const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

export function expectNoRedirectNoCookie(res: { status: number; headers: Headers }) {
  expect(res.headers.get('location')).toBeNull();
  expect(res.headers.get('set-cookie')).toBeNull();
  expect(res.headers.get('cache-control')).toBe('no-store');
}

type Workspace = Awaited<ReturnType<typeof signUp>>;

/**
 * One app for the file and two workspaces, "Acme Outdoor" (`owner`) and "Other Co" (`other`),
 * with helpers over them (read `ctx` inside tests or hooks).
 */
export function useOptOutApp() {
  const ctx = {} as { app: TestApp; owner: Workspace; other: Workspace };
  beforeAll(async () => {
    ctx.app = await startTestApp();
    ctx.owner = await signUp(ctx.app, { workspaceName: 'Acme Outdoor' });
    ctx.other = await signUp(ctx.app, { workspaceName: 'Other Co' });
  });
  afterAll(async () => {
    await ctx.app.close();
  });

  const db = () => ctx.app.database.db;
  const codec = () => createTokenCodec(ctx.app.config.trackingSecrets);
  const urls = () => createTrackingUrls(codec(), '');

  async function seedCampaign(workspaceId: string, topic: string | null = 'newsletter', options: { status?: 'draft' | 'completed' } = {}) {
    const [row] = await db()
      .insert(campaigns)
      .values({ workspaceId, name: `Campaign ${topic}`, kind: 'marketing', subject: 'Hello', audience: { contactIds: [] }, topic, status: options.status ?? 'completed' })
      .returning({ id: campaigns.id });
    return row!.id;
  }

  async function seedRecipient(workspaceId: string, email: string) {
    const [row] = await db().insert(recipients).values({ workspaceId, email }).returning({ id: recipients.id });
    return row!.id;
  }

  async function seedContact(token: string, email: string) {
    const contact = await ctx.app.api('POST', '/api/contacts', { token, json: { email } });
    expect(contact.status).toBe(201);
    const consent = await ctx.app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token, json: { status: 'opted_in', source: 'signup-form' } });
    expect(consent.status).toBe(201);
    return contact.body.id as string;
  }

  /** A contact, a campaign and the recipient row the campaign's mail went to, with that mail's unsubscribe path. */
  async function seedMailedAddress(email: string, options: { workspace?: Workspace; topic?: string | null; contact?: boolean } = {}) {
    const workspace = options.workspace ?? ctx.owner;
    const contactId = options.contact === false ? undefined : await seedContact(workspace.token, email);
    const campaignId = await seedCampaign(workspace.workspaceId, options.topic === undefined ? 'newsletter' : options.topic);
    const recipientId = await seedRecipient(workspace.workspaceId, email);
    return { contactId, campaignId, recipientId, path: urls().unsubscribe(recipientId, campaignId), prefs: urls().preferences(recipientId, campaignId) };
  }

  const oneClick = (path: string, body: RequestInit['body'] = ONE_CLICK, headers: Record<string, string> = FORM) => ctx.app.api('POST', path, { body, headers });

  async function entriesOf(workspaceId: string, email: string) {
    return db()
      .select()
      .from(suppressions)
      .where(and(eq(suppressions.workspaceId, workspaceId), eq(sql`lower(${suppressions.email})`, email.toLowerCase())));
  }

  async function auditOf(workspaceId: string) {
    return db().select().from(auditLog).where(eq(auditLog.workspaceId, workspaceId));
  }

  async function consentsOf(contactId: string) {
    return db().select().from(consents).where(eq(consents.contactId, contactId)).orderBy(consents.at);
  }

  /** The mails to `email` that ask to confirm undoing an opt-out or allowing tracking again (resubscribe.service.ts), oldest first. */
  const confirmationMails = (email: string) =>
    (ctx.app.services.accountMailer.outbox ?? []).filter((m) => m.to === email && (m.subject === RESUBSCRIBE_MAIL_SUBJECT || m.subject === TRACKING_MAIL_SUBJECT));

  /** The path of the newest confirmation link mailed to `email`. */
  function confirmationPath(email: string): string {
    const mail = confirmationMails(email).at(-1);
    expect(mail, `a confirmation mail to ${email}`).toBeDefined();
    return new URL(/^(https?:\/\/\S+\/p\/confirm\/\S+)$/m.exec(mail!.text)![1]!).pathname;
  }

  /** The mailed link's button. */
  const confirm = (path: string, body = 'confirm=yes') => ctx.app.api('POST', path, { body, headers: FORM });

  return Object.assign(ctx, { db, codec, urls, seedCampaign, seedRecipient, seedMailedAddress, oneClick, entriesOf, auditOf, consentsOf, confirmationMails, confirmationPath, confirm });
}
