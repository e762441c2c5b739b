import pg from 'pg';
import { sql } from 'drizzle-orm';
import { beforeAll, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * stop() gives back the reservation of a send whose claim is running (SEND-LEDGER.md, "Shutdown"):
 * here the claim waits for the recipient's address lock (an opt-out's, held by the test) when the
 * stop comes. The claim is then decided by its own statement: another worker that reserved the row
 * meanwhile holds it (the stopped worker's claim has lost), and with no other worker the stopped
 * one claims the row nobody holds and hands it back at once (the gate's stopping check). Either
 * way the recipient is mailed once, by the worker still running. Lock waits need a server
 * (PGlite runs one transaction at a time).
 */
const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const serverUrl = () => (ctx.app.database as unknown as { url?: string }).url;

beforeAll(async () => {
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

async function oneRecipient(name: string) {
  const email = `${name}-${Date.now().toString(36)}@acme.test`;
  const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, email, { sync: false });
  const [person] = await fx.audience(1, { prefix: name });
  const subject = `Stop race ${name} ${Date.now()}`;
  const campaignId = await fx.launched(mailbox.id, subject, [person!.id]);
  return { email, campaignId, person: person!, subject };
}

async function holdAddress(address: string) {
  const holder = new pg.Client({ connectionString: serverUrl() });
  await holder.connect();
  await holder.query('begin');
  await holder.query(`select pg_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || lower($2), 0))`, [ctx.owner.workspaceId, address]);
  return holder;
}

const ledgerRows = async (campaignId: string) =>
  rowsOf<{ status: string; lease_owner: string | null; attempts: number; error_code: string | null }>(
    await ctx.app.database.db.execute(sql`select status, lease_owner, attempts, error_code from campaign_sends where campaign_id = ${campaignId}::uuid`),
  );

it.skipIf(!onServer)('stop() while the claim waits at the address lock, another worker reserving the row meanwhile: mailed once', { timeout: 30_000 }, async () => {
  for (const withB of [true, false]) {
    const { email, campaignId, person, subject } = await oneRecipient(withB ? 'stop-b' : 'stop-alone');
    const holder = await holdAddress(person.email);
    const watcher = new pg.Client({ connectionString: serverUrl() });
    await watcher.connect();
    const a = separateWorker(ctx.app, { workerId: `A-${withB}`, concurrency: 1, batchSize: 1 });
    const b = separateWorker(ctx.app, { workerId: `B-${withB}`, concurrency: 1, batchSize: 1 });
    const aTick = a.tick();
    await waitForLockWaiters(watcher, 1);
    await a.stop(200);
    // Given back while the claim waits: nobody holds the row.
    const afterStop = await ledgerRows(campaignId);
    expect(afterStop).toMatchObject([{ status: 'queued', lease_owner: null }]);
    let bTick: Promise<number> | undefined;
    if (withB) {
      bTick = b.tick();
      await waitForLockWaiters(watcher, 2);
    }
    await holder.query('commit');
    await holder.end();
    const aSent = await aTick;
    const bSent = bTick ? await bTick : await b.tick();
    await watcher.end();
    const rows = await ledgerRows(campaignId);
    expect({ withB, afterStop, aSent, bSent, rows }).toMatchObject({ withB, aSent: 0, bSent: 1, rows: [{ status: 'sent' }] });
    expect(fx.sentTo(email, subject).get(person.email)).toBe(1);
    expect(ctx.app.sandbox.control.calls({ endpoint: 'send', mailbox: email })).toHaveLength(1);
  }
});
