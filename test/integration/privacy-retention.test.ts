import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { tablesMentioning } from '../helpers/all-tables.js';
import { acceptInvitation, signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * Retention windows on the app's clock: consent history kept for its legal period
 * (CONSENT_HISTORY_RETENTION_DAYS), and P-15 inactive accounts — warned by mail, a login
 * cancels it, otherwise closed and purged after INACTIVE_ACCOUNT_PURGE_YEARS.
 */

const DAY = 86_400_000;
const YEAR = 365.25 * DAY;
const start = Date.now();
let clock = start;
let app: TestApp;
const db = () => app.database.db;

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
});
afterAll(async () => {
  await app?.close();
});

const mailsTo = (email: string) => app.services.accountMailer.outbox!.filter((m) => m.to === email && m.subject.includes('inactivity'));

describe('retention', () => {
  it('P-15 superseded consent records are deleted after the legal period; the latest record always stays', async () => {
    const owner = await signUp(app);
    const changed = await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'changed@example.test' } });
    const steady = await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'steady@example.test' } });
    for (const status of ['opted_in', 'opted_out']) {
      await app.api('POST', `/api/contacts/${changed.body.id}/consents`, { token: owner.token, json: { status, source: 'form' } });
    }
    await app.api('POST', `/api/contacts/${steady.body.id}/consents`, { token: owner.token, json: { status: 'opted_in', source: 'form' } });

    clock = start + 6 * YEAR;
    expect((await app.services.retention.runOnce()).consentsDeleted).toBe(0);
    clock = start + 7 * YEAR + 2 * DAY;
    expect((await app.services.retention.runOnce()).consentsDeleted).toBeGreaterThanOrEqual(1);
    clock = start;
    const history = (await app.api('GET', `/api/contacts/${changed.body.id}/consents`, { token: owner.token })).body.consents;
    expect(history.map((c: { status: string }) => c.status)).toEqual(['opted_out']);
    expect((await app.api('GET', `/api/contacts/${steady.body.id}`, { token: owner.token })).body.consent).toMatchObject({ status: 'opted_in' });
  });

  it('P-15 an inactive account is warned, a login cancels it, and one left unused is closed and purged', async () => {
    const returning = await signUp(app, { email: `returning-${Date.now()}@example.com` });
    const gone = await signUp(app, { email: `gone-${Date.now()}@example.com` });
    const contact = await app.api('POST', '/api/contacts', { token: gone.token, json: { email: 'contact-of-gone@example.test' } });
    expect(contact.status).toBe(201);

    // Six years on: nothing yet.
    clock = start + 6 * YEAR;
    await app.services.retention.runOnce();
    expect(mailsTo(gone.email)).toEqual([]);

    // 29 days before the 7-year horizon both owners are warned (INACTIVE_ACCOUNT_WARNING_DAYS = 30).
    clock = start + 7 * YEAR - 29 * DAY;
    await app.services.retention.runOnce();
    for (const who of [returning, gone]) {
      expect(mailsTo(who.email)).toMatchObject([{ subject: 'Your inboxtrail account will be deleted for inactivity' }]);
    }
    // Warned once only.
    await app.services.retention.runOnce();
    expect(mailsTo(gone.email)).toHaveLength(1);

    // One of them logs in: that cancels it.
    expect((await app.api('POST', '/api/auth/login', { json: { email: returning.email, password: returning.password } })).status).toBe(200);

    clock = start + 7 * YEAR + 2 * DAY;
    const result = await app.services.retention.runOnce();
    expect(result.closed).toBeGreaterThanOrEqual(1);
    const [state] = rowsOf<{ returning_open: boolean; gone_closed: boolean }>(
      await db().execute(sql`select
        (select deleted_at is null from users where id = ${returning.userId}::uuid) as returning_open,
        (select deleted_at is not null from users where id = ${gone.userId}::uuid) as gone_closed`),
    );
    expect(state).toEqual({ returning_open: true, gone_closed: true });
    expect((await app.services.purge.runOnce()).user).toBeGreaterThanOrEqual(1);
    for (const needle of [gone.email, 'contact-of-gone@example.test']) expect(await tablesMentioning(db(), needle), needle).toEqual({});
    // The audit trail (ids only) records the closure and the purge.
    expect(Object.keys(await tablesMentioning(db(), gone.userId))).toEqual(['audit_log']);
    expect(Object.keys(await tablesMentioning(db(), returning.email))).toEqual(['users']);
    clock = start;
  });

  it("P-15 an inactive sole owner's workspace that a teammate still uses is handed to them, not closed under them", async () => {
    const owner = await signUp(app, { email: `absent-owner-${Date.now()}@example.com` });
    const invite = await app.api('POST', '/api/invitations', { token: owner.token, json: { email: `still-here-${Date.now()}@example.com`, role: 'admin' } });
    expect(invite.status, invite.text).toBe(201);
    const joined = await acceptInvitation(app, { token: invite.body.token, password: 'teammate password long' });
    expect(joined.status, joined.text).toBe(201);
    const contact = await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'kept-by-teammate@example.test' } });
    expect(contact.status).toBe(201);
    try {
      // The owner is warned and never comes back; the teammate signs in shortly before the horizon.
      clock = start + 7 * YEAR - 29 * DAY;
      await app.services.retention.runOnce();
      clock = start + 7 * YEAR - 10 * DAY;
      const teammate = await app.api('POST', '/api/auth/login', { json: { email: joined.body.user.email, password: 'teammate password long', workspaceId: owner.workspaceId } });
      expect(teammate.status, teammate.text).toBe(200);
      clock = start + 7 * YEAR + 2 * DAY;
      await app.services.retention.runOnce();
      const [state] = rowsOf<{ owner_closed: boolean; workspace_open: boolean; teammate_role: string }>(
        await db().execute(sql`select
          (select deleted_at is not null from users where id = ${owner.userId}::uuid) as owner_closed,
          (select deleted_at is null from workspaces where id = ${owner.workspaceId}::uuid) as workspace_open,
          (select role::text from memberships where workspace_id = ${owner.workspaceId}::uuid and user_id = ${joined.body.user.id}::uuid) as teammate_role`),
      );
      expect(state).toEqual({ owner_closed: true, workspace_open: true, teammate_role: 'owner' });
      const audit = rowsOf<{ actor: string; detail: Record<string, unknown> }>(
        await db().execute(sql`select actor, detail from audit_log where workspace_id = ${owner.workspaceId}::uuid and action = 'member.role_changed'`),
      );
      expect(audit).toEqual([{ actor: 'system:inactivity', detail: { from: 'admin', to: 'owner', reason: 'sole_owner_closed' } }]);
      const stillThere = await app.api('GET', `/api/contacts/${contact.body.id}`, { token: teammate.body.token });
      expect(stillThere.status).toBe(200);
    } finally {
      clock = start;
    }
  });
});
