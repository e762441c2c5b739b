import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { claimWhileRowHeld, firstSendClaim } from '../helpers/claim-race.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let mailbox: { id: string; email: string };
const db = () => app.database.db;
const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app);
  mailbox = await connectedMailbox(app, owner.token, `del-${Date.now()}@acme.test`);
  await app.api('PATCH', '/api/workspace', { token: owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});
afterAll(async () => {
  await app?.close();
});

/*
 * A contact deleted through the API is never mailed after the delete answered: the delete takes the
 * contact's address locks, as an opt-out does (contacts.repo.ts markDeleted). Before, a gate
 * statement that began before the delete and waited for the send's row (another worker's
 * reservation) claimed after the delete had answered 204 — 10 of 10 times (an attacker's finding).
 */
it.runIf(process.env.TEST_DATABASE_URL).each(Array.from({ length: 4 }, (_, i) => i))('no claim decided after a contact deletion has answered goes out (trial %i)', async () => {
  const [contact] = await fixtures.audience(1, { prefix: 'delrace' });
  const campaignId = await fixtures.launched(mailbox.id, `DelRace ${Date.now()}`, [contact!.id]);
  await db().execute(sql`update campaigns set status = 'sending' where id = ${campaignId}::uuid`);
  const { verdict, decidedFirst, answer } = await claimWhileRowHeld(
    app,
    await firstSendClaim(app, owner.workspaceId, campaignId, mailbox, contact!.id),
    () => app.api('DELETE', `/api/contacts/${contact!.id}`, { token: owner.token }),
  );
  expect(answer.status).toBe(204);
  if (verdict.kind === 'go') expect(decidedFirst, 'claim decided after the delete answered: the deleted contact is mailed').toBe(true);
  else expect(verdict).toEqual({ kind: 'skipped', reason: 'contact_deleted' });
});
