import { sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createPurgeRepo, type PurgeRepo } from '../../src/privacy/purge.repo.js';
import { createPurgeService } from '../../src/privacy/purge.service.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { campaignFixtures, separateWorker } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A contact's purge reads the addresses the contact was known by, takes their locks, then the
 * contact's row, and reads them again (purge.repo.ts purgeContact): an address the contact came to
 * be known by between the two reads is not locked — an opt-out or a claim of it could interleave
 * with the purge — so the purge gives the transaction up (ReadChangedBeforeLock, as a 40001) and
 * purge.service.ts runs it again, its locks now taken for every address. Forced: a session holds
 * the old address's lock as the purge reaches it, moves the contact to a new address and lets go.
 * The second run purges what is keyed by both addresses, as POLICY.md P-13 asks (src/privacy
 * README.md "Contact": every address the contact was known by). Server only: PGlite runs one
 * transaction at a time, nothing interleaves.
 */
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const ctx = useAppWithOwner();
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
let mailbox: { id: string; email: string };
const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => rowsOf<T>(await ctx.app.database.db.execute(s));

beforeAll(async () => {
  if (onServer) mailbox = await connectedMailbox(ctx.app, ctx.owner.token, `purge-moved-${Date.now()}@acme.test`, { sync: true });
});

it.runIf(onServer)("an address the contact moved to while its purge waited for the old one's lock: the purge runs again and removes both addresses' data (server)", async () => {
  const [person] = await fx.audience(1, { prefix: 'moved' });
  const old = person!.email.toLowerCase();
  const moved = `moved-to-${Date.now()}@contoso.test`;
  // Campaign mail to the old address (so the contact stays known by it), a 1:1 mail to the new
  // one, and an opt-out of each: what is keyed by each address.
  const campaignId = await fx.launched(mailbox.id, 'Purge moved', [person!.id], { kind: 'transactional' });
  await separateWorker(ctx.app, { concurrency: 1 }).tick();
  expect((await fx.ledger(campaignId)).map((r) => r.status)).toEqual(['sent']);
  const mail = await ctx.app.api('POST', '/api/messages', { token: ctx.owner.token, json: { mailboxId: mailbox.id, to: [moved], subject: 'To the new address', text: 'hi' } });
  expect(mail.status, mail.text).toBe(201);
  for (const email of [old, moved]) expect((await ctx.app.api('POST', '/api/suppressions', { token: ctx.owner.token, json: { email } })).status).toBe(201);
  const ws = sql`workspace_id = ${ctx.owner.workspaceId}::uuid`;
  const both = [old, moved];
  const naming = () =>
    query<{ x: string }>(sql`
      select distinct lower(x) as x from messages, unnest(array[from_address] || to_addresses || cc_addresses || bcc_addresses) a(x)
      where ${ws} and lower(x) = any(${`{${both.join(',')}}`}::text[]) order by 1`);
  expect((await naming()).map((r) => r.x), 'mail naming each address, before').toEqual([...both].sort());
  expect((await ctx.app.api('DELETE', `/api/contacts/${person!.id}`, { token: ctx.owner.token })).status).toBe(204);
  await query(sql`update contacts set purge_after = now() - interval '1 second' where id = ${person!.id}::uuid`);

  const hashAddress = createAddressHasher(ctx.app.config.privacy.suppressionHashKey);
  const repo = createPurgeRepo(ctx.app.database.db);
  let runs = 0;
  const counted: PurgeRepo = { ...repo, transaction: (work) => ((runs += 1), repo.transaction(work)) };
  const url = (ctx.app.database as unknown as { url: string }).url;
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    // The old address's lock is held as the purge reaches it (an opt-out of it, say)…
    await holder.query('begin');
    await holder.query(`select pg_advisory_xact_lock(hashtextextended($1::text || ':' || lower($2), 0))`, [ctx.owner.workspaceId, old]);
    const purged = createPurgeService({ repo: counted, hashAddress }).runOnce();
    purged.catch(() => undefined);
    await waitForLockWaiters(holder, 1);
    // …and meanwhile the contact moves to the new address (written as an address change writes it).
    await holder.query(`update contacts set email = $1, address_hash = $2 where id = $3`, [moved, hashAddress(moved), person!.id]);
    await holder.query('commit');
    expect((await purged).contact).toBe(1);
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await holder.end();
  }
  expect(runs, 'the first run found the new address unlocked and gave up; the second purged').toBe(2);

  expect(await query(sql`select id from contacts where id = ${person!.id}::uuid`)).toEqual([]);
  expect(await query(sql`select id from campaign_sends where campaign_id = ${campaignId}::uuid`)).toEqual([]);
  expect(await query(sql`select email from recipients where ${ws} and lower(email) = any(${`{${both.join(',')}}`}::text[])`)).toEqual([]);
  expect(await naming(), 'no mail naming either address').toEqual([]);
  // The opt-outs stay, as their keyed hashes only.
  const entries = await query<{ email: string | null; address_hash: string }>(
    sql`select email, address_hash from suppressions where ${ws} and address_hash = any(${`{${both.map(hashAddress).join(',')}}`}::text[]) order by address_hash`,
  );
  expect(entries).toEqual(both.map(hashAddress).sort().map((h) => ({ email: null, address_hash: h })));
}, 60_000);
