import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Database } from '../../src/db/connect.js';
import { pgArray, rowsOf } from '../../src/db/pg-array.js';
import { createPurgeRepo, type PurgeQueries } from '../../src/privacy/purge.repo.js';
import { eventColumnsOf } from '../../src/tracking/event-columns.js';
import { writeEvents } from '../../src/tracking/events.repo.js';
import { createTrackingRepo } from '../../src/tracking/tracking.repo.js';
import { seededRandom } from '../helpers/campaign-fixtures.js';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { createTestDatabase } from '../helpers/test-db.js';
import { randomTrackingEvents } from '../helpers/tracking-events.js';

/*
 * P-13/P-16: a tracking write (one self-committing statement, events.repo.ts) racing the purge
 * of the person, campaign or workspace its hits are for. Whichever goes first, no event (IP,
 * user agent), webhook row or pending record of a purged send is left. On the server each
 * order is forced, not hoped for: a statement-level trigger added by this test holds the first
 * transaction open just before its commit (it waits for an advisory lock the test holds) while
 * the second one runs; then the test lets it go. PGlite has one connection (no race): the same
 * paths run one after the other.
 */

const server = !!process.env.TEST_DATABASE_URL;
const GATE = 0x7261_6365; // advisory lock key the stalling triggers wait for
let database: Database & { url?: string };
let writer: Database;
let purger: Database;
let gate: Database;
const db = () => database.db;
const count = async (query: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await db().execute(query))[0]!.n);

beforeAll(async () => {
  database = await createTestDatabase();
  // Separate pools on the server: the writer, the purge and the gate never share a connection.
  writer = server ? await connect({ kind: 'postgres', url: database.url!, poolSize: 1 }) : database;
  purger = server ? await connect({ kind: 'postgres', url: database.url!, poolSize: 1 }) : database;
  gate = server ? await connect({ kind: 'postgres', url: database.url!, poolSize: 1 }) : database;
  // Stalls the transaction that fires it until the gate opens (a shared lock: stalls nobody while the gate is open).
  await db().execute(sql.raw(`create function test_stall() returns trigger language plpgsql as $$
    begin perform pg_advisory_xact_lock_shared(${GATE}); return null; end $$`));
});
afterAll(async () => {
  if (server) for (const pool of [writer, purger, gate]) await pool?.close();
  await database?.close();
});

type Kind = 'contact' | 'campaign' | 'workspace';

/** A workspace listening for hits, a seeded campaign, and the purged item (marked deleted) owning `sends`. */
async function seed(kind: Kind) {
  const [{ id: workspaceId }] = rowsOf<{ id: string }>(await db().execute(sql`insert into workspaces (name) values ('race') returning id`)) as [{ id: string }];
  // Webhook rows are written too; not for a workspace purge, where the outbox insert's foreign key
  // on the workspace row would serialize the two anyway and hide the race of the events themselves.
  if (kind !== 'workspace') {
    await db().execute(sql`insert into webhook_endpoints (workspace_id, url, event_types, secret_ciphertext) values (${workspaceId}, 'https://hooks.example.test/x', '{open,click}', 'sealed')`);
  }
  const seeded = await seedSentCampaign(db(), workspaceId, { recipients: 40, steps: 2 });
  const purged = seeded.sends.filter((_, i) => kind !== 'contact' || i < 2); // a contact: the two sends of its first recipient
  const [{ email }] = rowsOf<{ email: string }>(await db().execute(sql`select email from campaign_sends where id = ${purged[0]!.id}`)) as [{ email: string }];
  let itemId = seeded.campaignId;
  if (kind === 'contact') {
    // Live for now: from its deletion on, its hits are only counted (untracked-hits.ts), so it is deleted right before its purge (below).
    [{ id: itemId }] = rowsOf<{ id: string }>(await db().execute(sql`insert into contacts (workspace_id, email) values (${workspaceId}, ${email}) returning id`)) as [{ id: string }];
  } else if (kind === 'campaign') {
    // As its deletion leaves it: cancelled as well (a deleted campaign never sends: migration 0063).
    await db().execute(sql`update campaigns set deleted_at = now(), status = 'cancelled', status_reason = 'deleted' where id = ${itemId}`);
  } else {
    itemId = workspaceId;
    await db().execute(sql`update workspaces set deleted_at = now() where id = ${workspaceId}`);
  }
  return { workspaceId, seeded, itemId, purgedSendIds: purged.map((s) => s.id) };
}

/**
 * The purge, for a contact right after its deletion: a write already under way (its snapshot
 * older than the deletion) still records the contact's hits, and the purge must not leave them.
 */
async function purge(kind: Kind, id: string) {
  if (kind === 'contact') await purger.db.execute(sql`update contacts set deleted_at = now() where id = ${id} and deleted_at is null`);
  return createPurgeRepo(purger.db).transaction((tx: PurgeQueries) =>
    kind === 'contact' ? tx.purgeContact(id, (a) => `hash:${a.length}`) : kind === 'campaign' ? tx.purgeCampaign(id) : tx.purgeWorkspace(id),
  );
}

/** What is left of the purged sends: events, webhook rows, pending records naming them. */
async function leftOf(sendIds: string[]) {
  const ids = sql`${pgArray(sendIds)}::uuid[]`;
  return {
    events: await count(sql`select count(*)::int as n from tracking_events where send_id = any(${ids})`),
    webhooks: await count(sql`select count(*)::int as n from webhook_events where (data ->> 'sendId')::uuid = any(${ids})`),
    pending: await count(sql`select count(*)::int as n from tracking_rollup_pending where send_ids && ${ids}`),
  };
}

/** Holds the gate (a transaction holding the advisory lock) until `open()`. */
async function closeGate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let held!: () => void;
  const holding = new Promise<void>((resolve) => (held = resolve));
  const done = gate.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${GATE})`);
    held();
    await opened;
  });
  await holding;
  return async () => {
    open();
    await done;
  };
}

/**
 * Resolves when `promise` settles, or a backend running a query like `like` waits for a lock:
 * the gate's advisory lock (`advisory`), or a row lock (anything else). Bounded: 5 s.
 */
async function settledOrWaiting(promise: Promise<unknown>, like: string, on: 'advisory' | 'row') {
  let settled = false;
  void promise.then(() => (settled = true), () => (settled = true));
  for (const start = Date.now(); Date.now() - start < 5_000; ) {
    if (settled) return 'settled';
    const waiting = await count(sql`
      select count(*)::int as n from pg_stat_activity a join pg_locks l on l.pid = a.pid and not l.granted
      where a.datname = current_database() and a.query like ${like} and (l.locktype = 'advisory') = ${on === 'advisory'}`);
    if (waiting > 0) return 'waiting';
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`neither settled nor waiting on a lock: ${like}`);
}

/** The write statement as pg_stat_activity shows it (its first kilobyte). */
const WRITE = '%with batch as%';
/** The last statement of each purge: where a purge that went first is held open. */
const LAST_TABLE: Record<Kind, string> = { contact: 'contacts', campaign: 'campaigns', workspace: 'workspaces' };

describe('P-13 a tracking write racing a purge leaves nothing of the purged', () => {
  for (const kind of ['contact', 'campaign', 'workspace'] as const) {
    it(`${kind} purge: the write commits first (its events are then purged), or the purge does (the write inserts nothing)`, async () => {
      const rand = seededRandom(kind.length * 7919);
      for (const first of ['writer', 'purge'] as const) {
        const { workspaceId, seeded, itemId, purgedSendIds } = await seed(kind);
        // A batch over every send of the campaign (those purged and, for a contact, others).
        const events = randomTrackingEvents(rand, workspaceId, seeded, 400, Date.UTC(2026, 10, 3));
        const ofPurged = events.filter((e) => purgedSendIds.includes(e.sendId)).length;
        expect(ofPurged).toBeGreaterThan(0);
        if (!server) {
          // One connection: the same statements in each order.
          if (first === 'writer') await writeEvents(writer.db, eventColumnsOf(events));
          expect(await purge(kind, itemId)).toBeDefined();
          if (first === 'purge') expect(await writeEvents(writer.db, eventColumnsOf(events))).toBe(kind === 'contact' ? events.length - ofPurged : 0);
        } else {
          const table = first === 'writer' ? 'tracking_rollup_pending' : LAST_TABLE[kind];
          const event = first === 'writer' ? 'insert' : 'delete';
          await db().execute(sql.raw(`create trigger test_stall after ${event} on ${table} for each statement execute function test_stall()`));
          const open = await closeGate();
          try {
            // The first one runs up to its commit and stalls there (the trigger); then the second starts.
            const firstDone = first === 'writer' ? writeEvents(writer.db, eventColumnsOf(events)) : purge(kind, itemId);
            expect(await settledOrWaiting(firstDone, first === 'writer' ? WRITE : `%delete from ${LAST_TABLE[kind]}%`, 'advisory')).toBe('waiting');
            const secondDone = first === 'writer' ? purge(kind, itemId) : writeEvents(writer.db, eventColumnsOf(events));
            // With the locks, the second waits for the first (on a send's row lock); without them it would finish here.
            expect(await settledOrWaiting(secondDone, first === 'writer' ? '%from campaign_sends%' : WRITE, 'row')).toBe('waiting');
            await open();
            await firstDone;
            const written = await secondDone;
            if (first === 'purge') expect(written).toBe(kind === 'contact' ? events.length - ofPurged : 0);
          } finally {
            await open();
            await db().execute(sql.raw(`drop trigger if exists test_stall on ${table}`));
          }
        }
        // A contact's purge leaves pending records to the rollup pass (ids and verdicts: it skips
        // them), a campaign's leaves the webhook outbox to its retention (its people still exist).
        expect({ first, ...(await leftOf(purgedSendIds)) }).toEqual({
          first,
          events: 0,
          webhooks: kind === 'campaign' ? expect.any(Number) : 0,
          pending: kind === 'contact' ? expect.any(Number) : 0,
        });
        // The purged sends are gone; for a contact, the hits of everyone else were written.
        expect(await count(sql`select count(*)::int as n from campaign_sends where id = any(${pgArray(purgedSendIds)}::uuid[])`)).toBe(0);
        if (kind === 'contact') {
          expect(await count(sql`select count(*)::int as n from tracking_events where campaign_id = ${seeded.campaignId}`)).toBe(events.length - ofPurged);
        }
      }
    });
  }
});

describe('P-13 a rollup pass racing a workspace purge leaves no rollup row of the workspace', () => {
  it('the pass has written its rollups but not committed when the purge starts: the purge waits for it, then deletes them', async () => {
    const { workspaceId, seeded, itemId } = await seed('workspace');
    const events = randomTrackingEvents(seededRandom(31), workspaceId, seeded, 300, Date.UTC(2026, 10, 4));
    expect(events.some((e) => e.classification === 'human')).toBe(true);
    await writeEvents(writer.db, eventColumnsOf(events));
    const pass = () => createTrackingRepo(writer.db, { singleConnection: !server }).rollUpPending();
    const rollupRows = async () => ({
      sends: await count(sql`select count(*)::int as n from tracking_send_rollups where workspace_id = ${workspaceId}`),
      recipients: await count(sql`select count(*)::int as n from tracking_recipient_rollups where workspace_id = ${workspaceId}`),
      campaigns: await count(sql`select count(*)::int as n from tracking_rollups where workspace_id = ${workspaceId}`),
    });
    if (!server) {
      await pass();
      expect(await purge('workspace', itemId)).toBeDefined();
    } else {
      // The pass stalls right after its write statement, before its commit.
      await db().execute(sql.raw('create trigger test_stall after insert on tracking_send_rollups for each statement execute function test_stall()'));
      const open = await closeGate();
      try {
        const passDone = pass();
        expect(await settledOrWaiting(passDone, '%with done as%', 'advisory')).toBe('waiting');
        const purgeDone = purge('workspace', itemId);
        // The purge waits for the pass (its workspace lock); without it, it would delete around the pass's uncommitted rows.
        expect(await settledOrWaiting(purgeDone, '%pg_advisory_xact_lock(%', 'advisory')).toBe('waiting');
        await open();
        expect((await passDone).events).toBeGreaterThanOrEqual(events.length); // and what earlier tests left pending
        expect(await purgeDone).toBeDefined();
      } finally {
        await open();
        await db().execute(sql.raw('drop trigger if exists test_stall on tracking_send_rollups'));
      }
    }
    expect(await rollupRows()).toEqual({ sends: 0, recipients: 0, campaigns: 0 });
    expect(await count(sql`select count(*)::int as n from tracking_rollup_pending where workspace_id = ${workspaceId}`)).toBe(0);
  });
});
