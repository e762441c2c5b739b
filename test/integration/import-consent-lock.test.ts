import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
const db = () => app.database.db;

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app);
});
afterAll(async () => {
  await app?.close();
});

/*
 * Invariant 1 for an imported opt-out: it serializes with a send's claim. A campaign's ledger
 * keeps the address of the launch, so after the contact's address changed, a claim of their
 * unsent mail takes the lock of the OLD address and re-checks consent by contact. An import
 * names the new address; it locked only that one, so its opt-out could commit between such a
 * claim's re-check and its commit. It now also takes the contact's locks (address-lock.ts
 * lockAddressesWithTheirContacts). Server only: on PGlite nothing runs beside the import.
 */
it.runIf(process.env.TEST_DATABASE_URL)("an imported opt-out waits for a claim holding the lock of the contact's address at launch", async () => {
  const mailbox = await connectedMailbox(app, owner.token, `lock-${Date.now()}@acme.test`);
  const contact = await app.api('POST', '/api/contacts', { token: owner.token, json: { email: 'old-address@contoso.test' } });
  expect(contact.status).toBe(201);
  const [campaign] = rowsOf<{ id: string }>(
    await db().execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience, mailbox_id, created_by, launched_at)
      values (${owner.workspaceId}::uuid, 'Lock', 'transactional', 'Lock', 'x', 'sending', '{"contactIds":[]}', ${mailbox.id}::uuid, ${owner.userId}::uuid, now())
      returning id`),
  );
  await db().execute(sql`
    with r as (insert into recipients (workspace_id, email) values (${owner.workspaceId}::uuid, 'old-address@contoso.test') returning id, email)
    insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, contact_id, email, rfc822_message_id, status, due_at)
    select ${owner.workspaceId}::uuid, ${campaign!.id}::uuid, 0, r.id, ${contact.body.id}::uuid, r.email, gen_random_uuid()::text || '@acme.test', 'queued', now() + interval '1 day' from r`);
  const moved = await app.api('PATCH', `/api/contacts/${contact.body.id}`, { token: owner.token, json: { email: 'new-address@contoso.test' } });
  expect(moved.status, moved.text).toBe(200);

  // A claim of the unsent mail in progress: it holds the old address's lock, as the send gate does.
  const claim = new pg.Client({ connectionString: (app.database as unknown as { url: string }).url });
  await claim.connect();
  try {
    await claim.query('begin');
    await claim.query(`select pg_advisory_xact_lock(hashtextextended($1::text || ':' || lower($2), 0))`, [owner.workspaceId, 'old-address@contoso.test']);

    let settled = false;
    const imported = app
      .api('POST', '/api/contacts/import', { token: owner.token, body: 'email,consent\nnew-address@contoso.test,opted_out\n', headers: { 'content-type': 'text/csv' } })
      .finally(() => {
        settled = true;
      });
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(settled).toBe(false);
    const latest = async () =>
      rowsOf<{ status: string }>(await db().execute(sql`select status from consents where contact_id = ${contact.body.id}::uuid order by at desc, seq desc limit 1`))[0]?.status;
    expect(await latest()).toBeUndefined();

    await claim.query('commit');
    const res = await imported;
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ consents: 1 });
    expect(await latest()).toBe('opted_out');
  } finally {
    await claim.end();
  }
});
