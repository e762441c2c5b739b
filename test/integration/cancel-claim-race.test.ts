import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuthContext } from '../../src/auth/auth.service.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { claimWhileRowHeld, firstSendClaim } from '../helpers/claim-race.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let auth: AuthContext;
let mailbox: { id: string; email: string };
const db = () => app.database.db;
const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app);
  auth = { userId: owner.userId, workspaceId: owner.workspaceId, role: 'owner' };
  mailbox = await connectedMailbox(app, owner.token, `race-${Date.now()}@acme.test`);
});
afterAll(async () => {
  await app?.close();
});

/*
 * A cancel commits the campaign's state alone; the queued sends are skipped after it, without
 * waiting for rows a worker holds (cancelled-sends.ts). A gate statement that began before the
 * cancel and then waited for a send's row lock (another worker's reservation, here a plain
 * `for update`) read the campaign's state from its snapshot — `sending` — and claimed after the
 * cancel had answered (a reviewer's repro). The gate now reads the state under a share lock on
 * the campaign's row: either the claim is decided before the cancel can commit, or it sees the
 * cancel. Server only: on PGlite every statement runs alone, so the two cannot interleave.
 */
it.runIf(process.env.TEST_DATABASE_URL)('no claim goes out after the cancel has answered, even one whose statement began before it', async () => {
  const [c] = rowsOf<{ id: string }>(
    await db().execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience, mailbox_id, created_by, launched_at)
      values (${owner.workspaceId}::uuid, 'Race', 'transactional', 'Race', 'x', 'sending', '{"contactIds":[]}', ${mailbox.id}::uuid, ${owner.userId}::uuid, now())
      returning id`),
  );
  const campaignId = c!.id;
  await db().execute(sql`
    with r as (insert into recipients (workspace_id, email) select ${owner.workspaceId}::uuid, 'race-' || g || '-' || ${Date.now()} || '@contoso.test' from generate_series(1, 3) g returning id, email)
    insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, due_at)
    select ${owner.workspaceId}::uuid, ${campaignId}::uuid, 0, r.id, r.email, gen_random_uuid()::text || '@acme.test', 'queued', now() - interval '1 minute' from r`);
  const [contact] = await fixtures.audience(1, { prefix: 'race' });
  await db().execute(sql`update campaign_sends set contact_id = ${contact!.id}::uuid, email = ${contact!.email} where id = (select id from campaign_sends where campaign_id = ${campaignId}::uuid order by id limit 1)`);
  const { verdict, decidedFirst, answer } = await claimWhileRowHeld(
    app,
    await firstSendClaim(app, owner.workspaceId, campaignId, mailbox, contact!.id),
    () => app.services.campaigns.cancel(auth, campaignId),
  );
  expect(answer.status).toBe('cancelled');
  // Either the claim saw the cancel, or it was decided (committed) before the cancel answered.
  if (verdict.kind === 'go') expect(decidedFirst).toBe(true);
  else expect(verdict.kind).toBe('halted');
});
