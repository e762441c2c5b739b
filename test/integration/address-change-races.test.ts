import pg from 'pg';
import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';
import { until } from '../helpers/until.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';

/** SQL: this database's oid, to read its locks from pg_locks (the whole server's). */
const THIS_DATABASE = '(select oid from pg_database where datname = current_database())';

/*
 * A contact's address changing (PATCH /api/contacts/:id) while an opt-out or a launch runs —
 * an attacker's three findings, each of which mailed or dropped a person:
 *   - the one-click opt-out of mail sent to x, racing the move of its contact C from x to y:
 *     the opt-out read "contacts moved from x" (none yet), the move committed, and then it found
 *     no contact at x either. x was suppressed, but C kept its opt-in and the next campaign
 *     mailed y. Now the move takes the opt-out locks of x and y, and the opt-out reads the moved
 *     contacts only once it holds x's (suppression/address-lock.ts lockAddressChange).
 *   - the same opt-out from mail whose send the ledger could not confirm (failed/outcome_unknown):
 *     only `sent` sends counted as "mail to x for C".
 *   - a launch writes recipients, then sends joined to them by address: a move committing
 *     between the two statements left C with no ledger row at all. Launches now hold the
 *     workspace's address-change lock shared; a move takes it exclusively.
 * The races need a server (PGlite runs one transaction at a time); the rest runs on both.
 */
const ctx = useAppWithOwner({ env: { GMAIL_SEND_TIMEOUT_SECONDS: '1', SEND_LEASE_SECONDS: '2', SEND_RESOLVE_DELAY_SECONDS: '0.15' } });
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = 'moves@acme.test';
const SEND_ONLY = 'moves-send-only@acme.test';
let mailboxId: string;
let sendOnlyId: string;
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const serverUrl = () => (ctx.app.database as unknown as { url?: string }).url;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true })).id;
  sendOnlyId = (await connectedMailbox(ctx.app, ctx.owner.token, SEND_ONLY, { sync: false })).id;
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

const rows = async <T>(q: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(q)) as unknown as { rows: T[] }).rows;
const latestConsent = async (contactId: string) =>
  (await rows<{ status: string }>(sql`select status from consents where contact_id = ${contactId}::uuid order by at desc, seq desc limit 1`))[0]?.status;

/** Contact C at x, opted in, mailed by a campaign from `from`: x has a recipient row, and the mail an unsubscribe link. */
async function mailedContact(tag: string, from = { id: () => mailboxId, email: SENDER }, beforeDrain?: () => void) {
  const [contact] = await fixtures.audience(1, { prefix: tag });
  const subject = `First ${tag} ${Date.now()}`;
  const campaignId = await fixtures.launched(from.id(), subject, [contact!.id]);
  beforeDrain?.();
  await fixtures.drain(campaignId);
  const [recipient] = await rows<{ id: string }>(sql`select id from recipients where workspace_id = ${ctx.owner.workspaceId}::uuid and lower(email) = lower(${contact!.email})`);
  const path = createTrackingUrls(createTokenCodec(ctx.app.config.trackingSecrets), '').unsubscribe(recipient!.id, campaignId);
  return { contact: contact!, campaignId, path, subject };
}

const oneClick = (path: string) => ctx.app.api('POST', path, { body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
const newAddress = (tag: string) => {
  const y = `${tag}-new-${Date.now()}@contoso.test`;
  ctx.app.sandbox.control.createMailbox({ email: y });
  return y;
};
const move = (contactId: string, y: string) => ctx.app.api('PATCH', `/api/contacts/${contactId}`, { token: ctx.owner.token, json: { email: y } });

/** A second campaign to C: what reached the new address. */
async function mailedAgain(contactId: string, tag: string, from = { id: () => mailboxId, email: SENDER }) {
  const subject = `Second ${tag} ${Date.now()}`;
  const campaignId = await fixtures.launched(from.id(), subject, [contactId]);
  await fixtures.drain(campaignId);
  return fixtures.sentTo(from.email, subject);
}

/** Another connection holding `lockSql` in an open transaction; `release` commits (or rolls back) it. */
async function holding(lockSql: string, params: unknown[]) {
  const holder = new pg.Client({ connectionString: serverUrl() });
  await holder.connect();
  await holder.query('begin');
  await holder.query(lockSql, params);
  const waiters = async (locktype: string) =>
    // This database's waits only (pg_locks is the whole server's, and other test files run beside this one): an
    // advisory lock names its database; a row's transaction id does not, and that wait is for this holder.
    Number((await holder.query(`select count(*)::int as n from pg_locks where locktype = $1 and not granted and (database = ${THIS_DATABASE} or pg_backend_pid() = any(pg_blocking_pids(pid)))`, [locktype])).rows[0].n);
  return {
    /** Until `n` statements wait for a lock of this type (at most 5 s). */
    async waitFor(locktype: string, n: number) {
      for (const deadline = Date.now() + 5_000; (await waiters(locktype)) < n && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    },
    async release(how: 'commit' | 'rollback' = 'commit') {
      await holder.query(how);
      await holder.end();
    },
  };
}
const addressLock = `select pg_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || lower($2), 0))`;

describe('a contact\'s address changing while it opts out or is launched to', () => {
  it('opt-out, then the move; the move, then the opt-out: either way C is opted out and y is not mailed', async () => {
    for (const optOutFirst of [true, false]) {
      const tag = optOutFirst ? 'seq-a' : 'seq-b';
      const { contact, path } = await mailedContact(tag);
      const y = newAddress(tag);
      if (optOutFirst) expect((await oneClick(path)).status).toBe(200);
      expect((await move(contact.id, y)).status).toBe(200);
      if (!optOutFirst) expect((await oneClick(path)).status).toBe(200);
      expect(await latestConsent(contact.id)).toBe('opted_out');
      expect((await mailedAgain(contact.id, tag)).get(y)).toBeUndefined();
    }
  });

  it.runIf(onServer)('the move committing while the opt-out waits for x\'s lock: C is opted out, y is not mailed (server)', async () => {
    const { contact, path } = await mailedContact('held');
    // Someone holds x's opt-out lock for a moment (a send claim to x, an import's consents, another opt-out).
    const holder = await holding(addressLock, [ctx.owner.workspaceId, contact.email]);
    const optOut = oneClick(path);
    await holder.waitFor('advisory', 1);
    const y = newAddress('held');
    const moved = move(contact.id, y);
    await holder.waitFor('advisory', 2);
    await holder.release();
    expect((await optOut).status).toBe(200);
    expect((await moved).status).toBe(200);
    expect(await latestConsent(contact.id)).toBe('opted_out');
    expect((await mailedAgain(contact.id, 'held')).get(y)).toBeUndefined();
  });

  it.runIf(onServer)('the opt-out and the move fired together, 8 rounds: C is opted out every time (server)', async () => {
    for (let round = 0; round < 8; round += 1) {
      const { contact, path } = await mailedContact(`both${round}`);
      const y = newAddress(`both${round}`);
      const [optOut, moved] = await Promise.all([oneClick(path), new Promise((r) => setTimeout(r, round % 4)).then(() => move(contact.id, y))]);
      expect([optOut.status, moved.status]).toEqual([200, 200]);
      expect([round, await latestConsent(contact.id)]).toEqual([round, 'opted_out']);
    }
  });

  it('an opt-out from mail whose send the ledger could not confirm (outcome_unknown) opts out the contact that moved since', { timeout: 60_000 }, async () => {
    const sendOnly = { id: () => sendOnlyId, email: SEND_ONLY };
    // Gmail answers after the send timeout: the mail arrives, the ledger says failed/outcome_unknown (a send-only mailbox cannot be searched).
    const { contact, path, subject, campaignId } = await mailedContact('unknown', sendOnly, () =>
      ctx.app.sandbox.control.injectFault({ kind: 'latency', ms: 1_500, endpoint: 'send', mailbox: SEND_ONLY, times: 1 }),
    );
    // The mail lands when the held answer is let go (1.5 s after the send): waited for, not slept for.
    await until(() => fixtures.sentTo(SEND_ONLY, subject).has(contact.email), 'the mail the ledger could not confirm arrives');
    expect(fixtures.sentTo(SEND_ONLY, subject).get(contact.email)).toBe(1);
    expect((await fixtures.ledger(campaignId)).map((r) => [r.status, r.error_code])).toEqual([['failed', 'outcome_unknown']]);
    const y = newAddress('unknown');
    expect((await move(contact.id, y)).status).toBe(200);
    expect((await oneClick(path)).status).toBe(200);
    expect(await latestConsent(contact.id)).toBe('opted_out');
    expect((await mailedAgain(contact.id, 'unknown', sendOnly)).get(y)).toBeUndefined();
  });

  it.runIf(onServer)('a move while a launch is between its two statements waits for the launch: the contact keeps its ledger row (server)', async () => {
    const [mover, other] = await fixtures.audience(2, { prefix: 'launch-move' });
    const subject = `Launch move ${Date.now()}`;
    const draft = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: subject, kind: 'marketing', mailboxId, subject, html: '<p>Hi</p>', contactIds: [mover!.id, other!.id] },
    });
    expect(draft.status, draft.text).toBe(201);
    // Another transaction writing the other contact's recipient row (a second launch to an overlapping audience) holds the launch's first statement.
    const holder = await holding('insert into recipients (workspace_id, email) values ($1, $2)', [ctx.owner.workspaceId, other!.email]);
    const launch = ctx.app.api('POST', `/api/campaigns/${draft.body.id}/launch`, { token: ctx.owner.token, json: {} });
    await holder.waitFor('transactionid', 1);
    const y = newAddress('launch-move');
    const moved = move(mover!.id, y);
    await holder.waitFor('advisory', 1);
    await holder.release('rollback');
    expect((await launch).status).toBe(200);
    expect((await moved).status).toBe(200);
    await fixtures.drain(draft.body.id);
    // Launched for x before the move: its send is skipped (address_changed), not lost without a trace.
    const ledger = await fixtures.ledger(draft.body.id);
    expect(ledger.map((r) => r.email).sort()).toEqual([mover!.email, other!.email].sort());
    expect(ledger.find((r) => r.email === mover!.email)).toMatchObject({ status: 'skipped', skip_reason: 'address_changed' });
  });

  it.runIf(onServer)('the opt-out of x whose contact moved to y takes x and y in one key order: no deadlock with a locker of both (a reviewer\'s finding; server)', async () => {
    const { contact, path } = await mailedContact('inversion');
    const keyOf = async (email: string) =>
      BigInt((await rows<{ k: string }>(sql`select hashtextextended(${ctx.owner.workspaceId}::uuid::text || ':' || lower(${email}), 0)::text as k`))[0]!.k);
    const xKey = await keyOf(contact.email);
    // A new address whose lock comes before x's in key order.
    let y = newAddress('inversion');
    while ((await keyOf(y)) >= xKey) y = newAddress(`inversion${Math.random().toString(36).slice(2, 6)}`);
    expect((await move(contact.id, y)).status).toBe(200);
    // Another transaction locking [y, x] in key order (a claim batch, 1:1 mail to both, an import's consents) holds y.
    const other = new pg.Client({ connectionString: serverUrl() });
    await other.connect();
    const deadlocks = async () => {
      await other.query('select pg_stat_clear_snapshot()');
      return Number((await other.query('select deadlocks from pg_stat_database where datname = current_database()')).rows[0].deadlocks);
    };
    const before = await deadlocks();
    await other.query('begin');
    await other.query(addressLock, [ctx.owner.workspaceId, y]);
    const optOut = oneClick(path);
    const waiting = async () => Number((await other.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted and database = ${THIS_DATABASE}`)).rows[0].n);
    for (const deadline = Date.now() + 5_000; (await waiting()) < 1 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    // The opt-out waits for y. Holding x already (taken before y), it would deadlock with this next lock.
    let otherError: string | undefined;
    try {
      await other.query(addressLock, [ctx.owner.workspaceId, contact.email]);
    } catch (error) {
      otherError = (error as { code?: string }).code;
    }
    await other.query(otherError ? 'rollback' : 'commit');
    expect((await optOut).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_200)); // the statistics are flushed within a second
    const after = await deadlocks();
    await other.end();
    expect({ otherError, deadlocks: after - before }).toEqual({ otherError: undefined, deadlocks: 0 });
    expect(await latestConsent(contact.id)).toBe('opted_out');
  });

  it.runIf(onServer)('a launch in progress: the same address sent back does not wait; a new one waits 3 s at most, then 409 with Retry-After and nothing changed (a reviewer\'s finding; server)', { timeout: 30_000 }, async () => {
    const [contact] = await fixtures.audience(1, { prefix: 'patch-wait' });
    // A launch in progress holds the workspace's address-change lock shared (one of 100,000: about 5 s on a server).
    const launch = await holding(`select pg_advisory_xact_lock_shared(hashtextextended('contact-address-changes:' || $1::text, 0))`, [ctx.owner.workspaceId]);
    try {
      // A CRM sync sending the whole record back: the same address (another case), a new first name.
      let started = Date.now();
      const same = await ctx.app.api('PATCH', `/api/contacts/${contact!.id}`, { token: ctx.owner.token, json: { email: contact!.email.toUpperCase(), firstName: 'Renamed' } });
      // Fast: well under the 3 s a new address waits (1 s was the bound, tight in the shared pool on 2 cores).
      expect({ status: same.status, fast: Date.now() - started < 2_000 }).toEqual({ status: 200, fast: true });
      started = Date.now();
      const moved = await move(contact!.id, newAddress('patch-wait'));
      const waited = Date.now() - started;
      expect([moved.status, moved.body.error?.code, moved.headers.get('retry-after')]).toEqual([409, 'audience_being_launched', '3']);
      expect(waited).toBeGreaterThanOrEqual(2_900);
      expect(waited).toBeLessThan(6_000);
      const [row] = await rows<{ email: string; first_name: string }>(sql`select email, first_name from contacts where id = ${contact!.id}::uuid`);
      expect({ email: row!.email.toLowerCase(), firstName: row!.first_name }).toEqual({ email: contact!.email.toLowerCase(), firstName: 'Renamed' });
    } finally {
      await launch.release();
    }
  });

  it.runIf(onServer)('a PATCH waiting 4 s for the contact\'s row (no launch) waits and succeeds: the 3 s bound is the launches\' alone (an attacker\'s finding; server)', { timeout: 30_000 }, async () => {
    const [contact] = await fixtures.audience(1, { prefix: 'row-wait' });
    const rowHolder = await holding('select id from contacts where id = $1 for update', [contact!.id]);
    const y = newAddress('row-wait');
    const started = Date.now();
    const moved = move(contact!.id, y);
    await new Promise((r) => setTimeout(r, 4_000));
    await rowHolder.release();
    const res = await moved;
    expect([res.status, res.body.email]).toEqual([200, y]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_900);
  });
});
