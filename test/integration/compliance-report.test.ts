import { parse } from 'csv-parse/sync';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { recipients } from '../../src/db/schema.js';
import { recordAudit } from '../../src/privacy/audit.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, signUp, useAppWithOwner } from '../helpers/test-app.js';

/* The compliance evidence report (POLICY.md "Evidence"): every kind of entry, built from the audit log; JSON and CSV. */

const ctx = useAppWithOwner();
let admin: { token: string; userId: string };
let member: { token: string; userId: string };
let mailboxId: string;
let messageId: string;
let requestedAt: Date;

async function join(email: string, role: 'member' | 'admin') {
  const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email, role } });
  const accepted = await acceptInvitation(ctx.app, { token: invite.body.token, password: 'a long enough password' });
  return { token: accepted.body.token as string, userId: accepted.body.user.id as string };
}
const report = (query = '', token = ctx.owner.token, headers: Record<string, string> = {}) => ctx.app.api('GET', `/api/compliance/report${query}`, { token, headers });

beforeAll(async () => {
  const { app, owner } = ctx;
  admin = await join('auditor@acme.test', 'admin');
  member = await join('rep@acme.test', 'member');
  const mailbox = await connectedMailbox(app, owner.token, 'boss@acme.test', { sync: true });
  mailboxId = mailbox.id;
  app.sandbox.control.createMailbox({ email: 'client@contoso.test' });
  messageId = (await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId, to: 'client@contoso.test', subject: 'Contract', text: 'REPORT-SECRET-BODY' } })).body.id;

  // Non-owner Gmail access: a grant and a read under it, a security read, a refusal.
  const grant = await app.api('POST', '/api/grants', { token: owner.token, json: { messageId, granteeUserId: member.userId, expiresAt: new Date(Date.now() + 86_400_000).toISOString() } });
  expect((await app.api('GET', `/api/messages/${messageId}/content?basis=grant`, { token: member.token })).status).toBe(200);
  expect((await app.api('DELETE', `/api/grants/${grant.body.id}`, { token: owner.token })).status).toBe(204);
  expect((await app.api('GET', `/api/messages/${messageId}/content?basis=security&caseReference=INC-9`, { token: admin.token })).status).toBe(200);
  expect((await app.api('GET', `/api/messages/${messageId}/content`, { token: admin.token })).status).toBe(403);

  // A consent change and suppression changes through the API.
  const contact = (await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'erin@contoso.test' } })).body;
  expect((await app.api('POST', `/api/contacts/${contact.id}/consents`, { token: owner.token, json: { status: 'opted_in', source: '=HYPERLINK("x")' } })).status).toBe(201);
  const suppression = await app.api('POST', '/api/suppressions', { token: owner.token, json: { email: 'frank@contoso.test', reason: 'manual' } });
  expect(suppression.status).toBe(201);
  expect((await app.api('DELETE', `/api/suppressions/${suppression.body.id}`, { token: owner.token, json: { note: 'asked by phone' } })).status).toBe(204);

  // What the deletion, export and key-rotation code writes through the same recordAudit.
  const workspaceId = owner.workspaceId;
  await recordAudit(app.database.db, { workspaceId, actor: `user:${owner.userId}`, action: 'deletion.requested', subjectType: 'contact', subjectId: contact.id, detail: { purgeAfter: '2027-01-01' } });
  requestedAt = new Date();
  await recordAudit(app.database.db, { workspaceId, actor: 'system:purge', action: 'deletion.completed', subjectType: 'contact', subjectId: contact.id });
  await recordAudit(app.database.db, { workspaceId, actor: `user:${owner.userId}`, action: 'deletion.requested', subjectType: 'campaign', subjectId: '00000000-0000-4000-8000-000000000001' });
  await recordAudit(app.database.db, { workspaceId, actor: `user:${admin.userId}`, action: 'legal.disclosed', subjectType: 'legal_request', subjectId: 'lr-1', detail: { authority: 'Court', reference: 'CASE-42' } });
  await recordAudit(app.database.db, { workspaceId, actor: 'system:rotate-keys', action: 'keys.rotated', subjectType: 'token_keys', detail: { toVersion: 'v2', rewritten: 1 } });
  // Another workspace's evidence never shows here.
  const other = await signUp(app);
  await recordAudit(app.database.db, { workspaceId: other.workspaceId, actor: `user:${other.userId}`, action: 'legal.disclosed', subjectType: 'legal_request', subjectId: 'OTHER-WORKSPACE' });
});

describe('compliance report', () => {
  it('P-03 P-16 the JSON report lists each kind of entry from the audit log, with bases and deletion completion times', async () => {
    const res = await report();
    expect(res.status).toBe(200);
    const { sections, mailboxScopes, counts } = res.body;
    expect(sections.gmailAccess.map((e: { action: string; basis: string }) => [e.action, e.basis])).toEqual([
      ['gmail.content_read', 'grant'],
      ['gmail.content_read', 'security'],
      ['gmail.content_refused', 'none'],
    ]);
    expect(sections.gmailAccess[1]).toMatchObject({ actor: `user:${admin.userId}`, caseReference: 'INC-9', subjectId: messageId });
    expect(sections.grants.map((e: { action: string }) => e.action)).toEqual(['grant.created', 'grant.revoked']);
    expect(sections.consentChanges).toEqual([expect.objectContaining({ action: 'consent.recorded', detail: expect.objectContaining({ status: 'opted_in' }) })]);
    expect(sections.suppressionChanges.map((e: { action: string }) => e.action)).toEqual(['suppression.added', 'suppression.removed']);
    const [done, pending] = sections.deletionRequests;
    expect(done.subjectType).toBe('contact');
    expect(new Date(done.completedAt).getTime()).toBeGreaterThanOrEqual(requestedAt.getTime() - 1000);
    expect(pending).toMatchObject({ subjectType: 'campaign', completedAt: null });
    expect(sections.legalDisclosures).toEqual([expect.objectContaining({ subjectId: 'lr-1', detail: { authority: 'Court', reference: 'CASE-42' } })]);
    expect(sections.keyRotations).toHaveLength(1);
    expect(sections.mailboxConnections.map((e: { action: string }) => e.action)).toEqual(['mailbox.connected']);
    expect(mailboxScopes).toEqual([expect.objectContaining({ mailboxId, scopes: expect.arrayContaining(['https://www.googleapis.com/auth/gmail.readonly']), policyVersion: ctx.app.config.policyVersion })]);
    expect(counts.gmailAccess).toBe(3);
    expect(res.text).not.toContain('OTHER-WORKSPACE');
    expect(res.text).not.toContain('REPORT-SECRET-BODY');
    expect(res.text).not.toContain('Contract');
  });

  it('the CSV (format=csv or Accept: text/csv) parses, one row per entry, and matches the JSON', async () => {
    const json = (await report()).body;
    for (const res of [await report('?format=csv'), await report('', ctx.owner.token, { accept: 'text/csv' })]) {
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/csv');
      expect(res.headers.get('content-disposition')).toMatch(/attachment; filename="compliance-report-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv"/);
      const rows: Record<string, string>[] = parse(res.text, { columns: true });
      const auditRows = rows.filter((r) => r.section !== 'mailboxScopes' && r.section !== 'policyVersionsPublished');
      expect(auditRows).toHaveLength(Object.values(json.counts as Record<string, number>).reduce((a, b) => a + b, 0));
      expect(rows.find((r) => r.action === 'gmail.content_read' && r.basis === 'security')).toMatchObject({ section: 'gmailAccess', case_reference: 'INC-9', subject_id: messageId });
      expect(rows.find((r) => r.section === 'deletionRequests' && r.subject_type === 'contact')!.completed_at).toMatch(/^\d{4}-/);
      expect(rows.find((r) => r.section === 'mailboxScopes')!.subject_id).toBe(mailboxId);
      expect(JSON.parse(rows.find((r) => r.action === 'keys.rotated')!.detail!)).toEqual({ toVersion: 'v2', rewritten: 1 });
      // A cell a spreadsheet would run as a formula is defused.
      expect(res.text).not.toMatch(/(^|,)"?=HYPERLINK/m);
      expect(res.text).not.toContain('OTHER-WORKSPACE');
    }
  });

  it('a range excludes what lies outside it; ranges are bounded; bad input is a 400', async () => {
    const future = await report(`?from=${new Date(Date.now() + 3_600_000).toISOString()}&to=${new Date(Date.now() + 7_200_000).toISOString()}`);
    expect(future.status).toBe(200);
    expect(Object.values(future.body.counts as Record<string, number>).every((n) => n === 0)).toBe(true);
    for (const query of ['?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', '?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z', '?from=yesterday', '?format=xml', '?limit=5']) {
      const res = await report(query);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
  });

  it('owners and admins only', async () => {
    expect((await report('', admin.token)).status).toBe(200);
    const refused = await report('?format=csv', member.token);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    expect((await ctx.app.api('GET', '/api/compliance/report')).status).toBe(401);
  });

  it("P-11 consent records from a CSV import and from a recipient's own opt-out are in the report too", async () => {
    const { app, owner } = ctx;
    const imported = await app.api('POST', '/api/contacts/import', { token: owner.token, body: 'email,consent\nevidence@example.com,opted_in\n', headers: { 'content-type': 'text/csv' } });
    expect(imported.body.consents).toBe(1);
    const contactId = (await app.api('GET', '/api/contacts?q=evidence%40example.com', { token: owner.token })).body.contacts[0].id as string;
    const [recipient] = await app.database.db.insert(recipients).values({ workspaceId: owner.workspaceId, email: 'evidence@example.com' }).returning({ id: recipients.id });
    const unsubscribe = createTrackingUrls(createTokenCodec(app.config.trackingSecrets), '').unsubscribe(recipient!.id);
    expect((await app.api('POST', unsubscribe, { body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status).toBe(200);

    const entries = (await report()).body.sections.consentChanges.filter((e: { subjectId: string }) => e.subjectId === contactId);
    expect(entries.map((e: { actor: string; detail: { status: string; source: string } }) => [e.actor, e.detail.status, e.detail.source])).toEqual([
      [`import:user:${owner.userId}`, 'opted_in', 'csv import'],
      [`recipient:${recipient!.id}`, 'opted_out', 'unsubscribe-link'],
    ]);
  });

  it('pages through more rows than one page', async () => {
    const { db } = ctx.app.database;
    await db.execute(sql`insert into audit_log (workspace_id, actor, action, subject_type, subject_id)
      select ${ctx.owner.workspaceId}::uuid, 'system:test', 'consent.recorded', 'contact', 'bulk-' || g from generate_series(1, 2100) g`);
    const rows: Record<string, string>[] = parse((await report('?format=csv')).text, { columns: true });
    const bulk = rows.filter((r) => r.subject_id?.startsWith('bulk-'));
    expect(bulk).toHaveLength(2100);
    expect(new Set(bulk.map((r) => r.subject_id)).size).toBe(2100);
  });
});
