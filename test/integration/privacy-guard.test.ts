import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * The Gmail data guard and access grants (P-02, P-03, P-04) over HTTP: who may read a
 * message's content, on what basis, and what the audit log keeps of every read and refusal.
 */

const DAY_MS = 24 * 3600 * 1000;
let clockOffsetMs = 0;
let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let member: { token: string; userId: string };
let admin: { token: string; userId: string };
let messageId: string;
let mailboxId: string;

type AuditRow = { actor: string; action: string; subject_id: string | null; detail: Record<string, unknown>; request_id: string | null };
const auditRows = async (action: string) =>
  ((await app.database.db.execute(sql`select actor, action, subject_id, detail, request_id from audit_log where action = ${action} order by at, id`)) as unknown as { rows: AuditRow[] }).rows;

async function join(email: string, role: 'member' | 'admin') {
  const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email, role } });
  const accepted = await acceptInvitation(app, { token: invite.body.token, password: 'a long enough password' });
  expect(accepted.status).toBe(201);
  return { token: accepted.body.token as string, userId: accepted.body.user.id as string };
}

const readContent = (token: string, query = '', id = messageId) => app.api('GET', `/api/messages/${id}/content${query}`, { token });
const gets = () => app.sandbox.control.callCounts({ mailbox: 'alice@acme.test' }).get;

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(Date.now() + clockOffsetMs) });
  owner = await signUp(app);
  const mailbox = await connectedMailbox(app, owner.token, 'alice@acme.test', { sync: true });
  app.sandbox.control.createMailbox({ email: 'bob@contoso.test' });
  const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId: mailbox.id, to: 'bob@contoso.test', subject: 'Pricing', text: 'GUARDED-BODY for Bob' } });
  expect(sent.status).toBe(201);
  messageId = sent.body.id;
  mailboxId = mailbox.id;
  member = await join('member@acme.test', 'member');
  admin = await join('admin@acme.test', 'admin');
});
afterAll(async () => {
  await app?.close();
});

describe('P-03 the owner and everyone else', () => {
  it('P-03 the owner reads their own mail without a basis, and that read is not audited', async () => {
    const res = await readContent(owner.token);
    expect(res.status).toBe(200);
    expect(res.body.text).toContain('GUARDED-BODY');
    expect(await auditRows('gmail.content_read')).toEqual([]);
  });

  it('P-03 a member cannot read another member\'s mail without a grant; the refusal is audited and Gmail is never asked', async () => {
    const before = gets();
    for (const query of ['', '?basis=grant']) {
      const res = await readContent(member.token, query);
      expect(res.status).toBe(403);
      expect(res.text).not.toContain('GUARDED-BODY');
    }
    expect((await readContent(member.token)).body.error.code).toBe('access_basis_required');
    expect((await readContent(member.token, '?basis=grant')).body.error.code).toBe('no_active_grant');
    expect(gets()).toBe(before);
    const refusals = await auditRows('gmail.content_refused');
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    expect(refusals.at(-1)).toMatchObject({ actor: `user:${member.userId}`, subject_id: messageId, detail: { basis: 'grant', code: 'no_active_grant' } });
    expect(refusals.at(-1)!.request_id).toBeTruthy();
  });

  it('P-03 a support read by an admin without a basis is refused and the refusal audited', async () => {
    const res = await readContent(admin.token);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('access_basis_required');
    expect((await auditRows('gmail.content_refused')).at(-1)).toMatchObject({ actor: `user:${admin.userId}`, detail: { basis: 'none', code: 'access_basis_required' } });
  });

  it('P-03 an admin read with basis security and a case reference works and is audited with its basis', async () => {
    const noCase = await readContent(admin.token, '?basis=security');
    expect(noCase.status).toBe(403);
    expect(noCase.body.error.code).toBe('case_reference_required');

    const res = await readContent(admin.token, '?basis=security&caseReference=SEC-2026-114');
    expect(res.status).toBe(200);
    expect(res.body.text).toContain('GUARDED-BODY');
    const [read] = (await auditRows('gmail.content_read')).filter((r) => r.actor === `user:${admin.userId}`);
    expect(read).toMatchObject({ subject_id: messageId, detail: { basis: 'security', purpose: 'security', caseReference: 'SEC-2026-114', ownerUserId: owner.userId } });
    // Evidence holds ids and bases, never the content it guards.
    expect(JSON.stringify(await auditRows('gmail.content_read'))).not.toContain('GUARDED-BODY');
  });

  it('P-03 security and legal reads are for owners and admins only', async () => {
    const res = await readContent(member.token, '?basis=legal&caseReference=SUBPOENA-7');
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('basis_needs_admin');
  });

  it('P-03 the aggregate basis never returns content', async () => {
    const res = await readContent(admin.token, '?basis=aggregate');
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('aggregate_has_no_content');
  });

  it('P-02 P-04 purposes advertising, ai_training and sale are refused for everyone, the owner too, and each refusal is audited', async () => {
    for (const purpose of ['advertising', 'ai_training', 'sale']) {
      for (const [token, query] of [[owner.token, ''], [admin.token, '&basis=security&caseReference=X-1']] as const) {
        const res = await readContent(token, `?purpose=${purpose}${query}`);
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('purpose_refused');
      }
    }
    const refused = (await auditRows('gmail.content_refused')).filter((r) => r.detail.code === 'purpose_refused');
    expect(refused.map((r) => r.detail.purpose).sort()).toEqual(['advertising', 'advertising', 'ai_training', 'ai_training', 'sale', 'sale']);
  });

  it('bad input is a 400 that records nothing; another workspace gets 404', async () => {
    const before = (await auditRows('gmail.content_refused')).length;
    for (const query of ['?basis=service_operation', '?basis=whim', '?purpose=marketing', '?caseReference=', '?extra=1']) {
      const res = await readContent(admin.token, query);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    const stranger = await signUp(app);
    expect((await readContent(stranger.token, '?basis=security&caseReference=X')).status).toBe(404);
    expect((await auditRows('gmail.content_refused')).length).toBe(before);
  });
});

describe('P-03 access grants', () => {
  const grant = (token: string, json: Record<string, unknown>) => app.api('POST', '/api/grants', { token, json });
  const inDays = (days: number) => new Date(Date.now() + clockOffsetMs + days * DAY_MS).toISOString();

  it('P-03 with the owner\'s grant a member reads that message until the grant expires', async () => {
    const created = await grant(owner.token, { messageId, granteeUserId: member.userId, expiresAt: inDays(2), reason: 'Ticket 4411' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ messageId, granteeUserId: member.userId, status: 'active', direction: 'given' });

    const res = await readContent(member.token, '?basis=grant');
    expect(res.status).toBe(200);
    expect(res.body.text).toContain('GUARDED-BODY');
    const read = (await auditRows('gmail.content_read')).find((r) => r.actor === `user:${member.userId}`)!;
    expect(read.detail).toMatchObject({ basis: 'grant', grantId: created.body.id });

    // Both the grantee and the owner see it.
    const theirs = await app.api('GET', '/api/grants', { token: member.token });
    expect(theirs.body.grants).toEqual([expect.objectContaining({ id: created.body.id, direction: 'received', status: 'active' })]);
    expect((await app.api('GET', '/api/grants', { token: owner.token })).body.grants.map((g: { id: string }) => g.id)).toContain(created.body.id);

    clockOffsetMs += 3 * DAY_MS;
    const late = await readContent(member.token, '?basis=grant');
    expect(late.status).toBe(403);
    expect(late.body.error.code).toBe('no_active_grant');
    expect((await app.api('GET', '/api/grants', { token: member.token })).body.grants[0].status).toBe('expired');
  });

  it('P-03 a revoked grant stops working at once; revoking is the owner\'s alone and audited', async () => {
    const created = await grant(owner.token, { messageId, granteeUserId: member.userId, expiresAt: inDays(30) });
    expect((await readContent(member.token, '?basis=grant')).status).toBe(200);

    expect((await app.api('DELETE', `/api/grants/${created.body.id}`, { token: member.token })).status).toBe(403);
    expect((await app.api('DELETE', `/api/grants/${created.body.id}`, { token: admin.token })).status).toBe(404);
    expect((await app.api('DELETE', `/api/grants/${created.body.id}`, { token: owner.token })).status).toBe(204);
    const again = await app.api('DELETE', `/api/grants/${created.body.id}`, { token: owner.token });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('grant_already_revoked');

    const res = await readContent(member.token, '?basis=grant');
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('no_active_grant');
    expect(await auditRows('grant.created')).toEqual(expect.arrayContaining([expect.objectContaining({ subject_id: created.body.id, actor: `user:${owner.userId}` })]));
    expect(await auditRows('grant.revoked')).toEqual([expect.objectContaining({ subject_id: created.body.id, detail: expect.objectContaining({ granteeUserId: member.userId }) })]);
  });

  it('P-03 only the mailbox owner grants, to a member of the workspace, for a bounded time; bad input changes nothing', async () => {
    const stranger = await signUp(app);
    const cases: [string, Record<string, unknown>, number, string][] = [
      [admin.token, { messageId, granteeUserId: member.userId, expiresAt: inDays(1) }, 403, 'forbidden'],
      [owner.token, { messageId, granteeUserId: owner.userId, expiresAt: inDays(1) }, 422, 'grant_to_self'],
      // The same id in capitals is the same person.
      [owner.token, { messageId, granteeUserId: owner.userId.toUpperCase(), expiresAt: inDays(1) }, 422, 'grant_to_self'],
      [owner.token, { messageId, granteeUserId: stranger.userId, expiresAt: inDays(1) }, 422, 'grantee_not_member'],
      [owner.token, { messageId, granteeUserId: member.userId, expiresAt: inDays(-1) }, 422, 'invalid_grant_expiry'],
      [owner.token, { messageId, granteeUserId: member.userId, expiresAt: inDays(91) }, 422, 'invalid_grant_expiry'],
      [owner.token, { messageId, granteeUserId: member.userId, expiresAt: 'tomorrow' }, 400, 'validation_failed'],
      [owner.token, { messageId: 'nope', granteeUserId: member.userId, expiresAt: inDays(1) }, 400, 'validation_failed'],
      [stranger.token, { messageId, granteeUserId: member.userId, expiresAt: inDays(1) }, 404, 'not_found'],
    ];
    const before = (await auditRows('grant.created')).length;
    for (const [token, json, status, code] of cases) {
      const res = await grant(token, json);
      expect(res.status, JSON.stringify(json)).toBe(status);
      expect(res.body.error.code).toBe(code);
    }
    expect((await auditRows('grant.created')).length).toBe(before);
  });
});

describe('sync reads notices through the guard', () => {
  const metric = async (pattern: RegExp) => Number(pattern.exec((await app.api('GET', '/metrics')).text)?.[1] ?? 0);

  it('P-03 a bounce notice read by sync passes the guard as service_operation: counted, not audited per message', async () => {
    const serviceReads = /inboxtrail_gmail_content_reads_total\{basis="service_operation"\} (\d+)/;
    const before = await metric(serviceReads);
    app.sandbox.control.setBouncingAddress('gone@nowhere.test', 'hard');
    const sent = await app.api('POST', '/api/messages', { token: owner.token, json: { mailboxId, to: 'gone@nowhere.test', subject: 'Hello', text: 'x' } });
    expect(sent.status).toBe(201);
    expect((await app.services.sync.syncMailbox(mailboxId)).status).toBe('synced');

    const bounces = (await app.database.db.execute(sql`select recipient from mail_events where type = 'bounce'`)) as unknown as { rows: { recipient: string }[] };
    expect(bounces.rows.map((r) => r.recipient)).toContain('gone@nowhere.test');
    expect(await metric(serviceReads)).toBeGreaterThan(before);
    const systemRows = (await app.database.db.execute(sql`select count(*)::int as n from audit_log where actor like 'system:%'`)) as unknown as { rows: { n: number }[] };
    expect(Number(systemRows.rows[0]!.n)).toBe(0);
  });
});
