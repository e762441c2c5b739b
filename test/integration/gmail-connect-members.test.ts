import { sql } from 'drizzle-orm';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { approveConnection, connectedMailbox, cookiesFrom } from '../helpers/gmail.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { acceptInvitation, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A Gmail connection takes up to 10 minutes between "connect" and Google's answer, and it stores
 * a mailbox for whoever started it. An attacker's findings: a member removed (or an account
 * closed) in those minutes still got a live mailbox in the workspace, and a member who could pass
 * Google's consent as a teammate's address took over the teammate's connection — their sending,
 * their grants and their mail's subjects (P-03).
 */

const ctx = useAppWithOwner();
const PASSWORD = 'a long enough password';

async function join(email: string) {
  const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email, role: 'member' } });
  expect(invite.status, invite.text).toBe(201);
  const accepted = await acceptInvitation(ctx.app, { token: invite.body.token, password: PASSWORD });
  expect(accepted.status, accepted.text).toBe(201);
  return { token: accepted.body.token as string, userId: accepted.body.user.id as string };
}

const liveMailboxesAt = async (email: string) =>
  (
    (await ctx.app.database.db.execute(sql`select user_id from mailboxes where lower(email) = ${email} and deleted_at is null`)) as unknown as {
      rows: { user_id: string }[];
    }
  ).rows;

describe('finishing a Gmail connection', () => {
  it('a member removed while Google asked for consent gets no mailbox: the callback is a 400 and stores nothing, and the grant Google issued is revoked', async () => {
    const member = await join('leaver@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'leaver.gmail@acme.test');
    expect((await ctx.app.api('DELETE', `/api/members/${member.userId}`, { token: ctx.owner.token })).status).toBe(204);

    const revokes = ctx.app.sandbox.control.callCounts().revoke;
    const done = await pending.finish();
    expect(done.status, done.text).toBe(400);
    expect(done.body.error.code).toBe('invalid_state');
    expect(await liveMailboxesAt('leaver.gmail@acme.test')).toEqual([]);
    // Not left listed at Google for an app that will never use it.
    expect(ctx.app.sandbox.control.callCounts().revoke).toBe(revokes + 1);
  });

  it('a member removed and invited back while Google asked for consent gets no mailbox from the connection started in the old membership', async () => {
    // Membership and session version both look right again after the invitation back; only the
    // membership the connection was started in tells (a reviewer's note, beside bearer tokens).
    const member = await join('returner@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'returner.gmail@acme.test');
    expect((await ctx.app.api('DELETE', `/api/members/${member.userId}`, { token: ctx.owner.token })).status).toBe(204);
    const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: 'returner@acme.test', role: 'member' } });
    expect(invite.status, invite.text).toBe(201);
    const back = await acceptInvitation(ctx.app, { token: invite.body.token, password: PASSWORD });
    expect(back.status, back.text).toBe(201);

    const done = await pending.finish();
    expect(done.status, done.text).toBe(400);
    expect(done.body.error.code).toBe('invalid_state');
    expect(await liveMailboxesAt('returner.gmail@acme.test')).toEqual([]);
    // A connection started in the new membership goes through.
    const again = await approveConnection(ctx.app, back.body.token as string, 'returner.gmail@acme.test');
    const connected = await again.finish();
    expect(connected.status, connected.text).toBeLessThan(400);
    expect(await liveMailboxesAt('returner.gmail@acme.test')).toEqual([{ user_id: member.userId }]);
  });

  it('a save the database gives up to a concurrent change (40001) stores nothing, revokes the fresh grant, and says to connect again (an attacker\'s finding)', async () => {
    const pending = await approveConnection(ctx.app, ctx.owner.token, 'raced.gmail@acme.test');
    // The database's own serialization failure, raised inside the save's transaction.
    const db = ctx.app.database.db;
    await db.execute(sql`create function lose_the_race() returns trigger language plpgsql as $$ begin raise exception 'could not serialize access' using errcode = '40001'; end $$`);
    await db.execute(sql`create trigger lose_the_race before insert on mailboxes for each row execute function lose_the_race()`);
    const revokes = ctx.app.sandbox.control.callCounts().revoke;
    try {
      const done = await pending.finish();
      expect(done.status, done.text).toBe(409);
      expect(done.body.error.code).toBe('concurrent_change');
      expect(done.body.error.message).toMatch(/connecting Gmail again/);
      expect(done.headers.get('retry-after')).toBeNull();
    } finally {
      await db.execute(sql`drop trigger lose_the_race on mailboxes`);
      await db.execute(sql`drop function lose_the_race()`);
    }
    expect(await liveMailboxesAt('raced.gmail@acme.test')).toEqual([]);
    // Left at Google it would be listed for an app that never stored it, and no job would find it.
    expect(ctx.app.sandbox.control.callCounts().revoke).toBe(revokes + 1);
  });

  it('an account closed while Google asked for consent gets no mailbox', async () => {
    const member = await join('closer@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'closer.gmail@acme.test');
    const closed = await ctx.app.api('POST', '/api/privacy/delete-account', { token: member.token, json: { password: PASSWORD } });
    expect(closed.status, closed.text).toBe(200);

    expect((await pending.finish()).status).toBe(400);
    expect(await liveMailboxesAt('closer.gmail@acme.test')).toEqual([]);
  });

  it('a password change since the connection started refuses it (a stolen session cannot finish one)', async () => {
    const member = await join('rotator@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'rotator.gmail@acme.test');
    const changed = await ctx.app.api('PATCH', '/api/me', { token: member.token, json: { currentPassword: PASSWORD, newPassword: 'another long password' } });
    expect(changed.status, changed.text).toBe(200);

    expect((await pending.finish()).status).toBe(400);
    expect(await liveMailboxesAt('rotator.gmail@acme.test')).toEqual([]);
  });

  it("a teammate's connected address is theirs: connecting it again as someone else is a 409 that changes nothing, and its owner keeps it", async () => {
    const owned = await connectedMailbox(ctx.app, ctx.owner.token, 'owned.gmail@acme.test');
    const member = await join('taker@acme.test');

    const revokes = ctx.app.sandbox.control.callCounts().revoke;
    const taken = await (await approveConnection(ctx.app, member.token, 'owned.gmail@acme.test')).finish();
    expect(taken.status, taken.text).toBe(409);
    // Google's grant is the account's: revoking the refused one would cut the owner's connection.
    expect(ctx.app.sandbox.control.callCounts().revoke).toBe(revokes);
    expect(taken.body.error.code).toBe('mailbox_connected_by_another');
    expect(await liveMailboxesAt('owned.gmail@acme.test')).toEqual([{ user_id: ctx.owner.userId }]);
    const listed = await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token });
    expect(listed.body.mailboxes.find((m: { id: string }) => m.id === owned.id)).toMatchObject({ status: 'active' });

    // Its owner reconnecting it is still a reconnect of the same row.
    const again = await (await approveConnection(ctx.app, ctx.owner.token, 'owned.gmail@acme.test')).finish();
    expect(again.status, again.text).toBe(201);
    expect(again.body.id).toBe(owned.id);

    // Once disconnected, the address is free for anyone who holds it.
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${owned.id}`, { token: ctx.owner.token })).status).toBe(204);
    const fresh = await (await approveConnection(ctx.app, member.token, 'owned.gmail@acme.test')).finish();
    expect(fresh.status, fresh.text).toBe(201);
    expect(fresh.body.id).not.toBe(owned.id);
  });

  it('a browser whose connection is refused that way lands on the mailboxes page with a notice, not on JSON', async () => {
    await connectedMailbox(ctx.app, ctx.owner.token, 'shown.gmail@acme.test');
    const member = await join('browser-taker@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'shown.gmail@acme.test');
    const callback = await fetch(`${ctx.app.baseUrl}/api/gmail/callback${pending.callbackQuery}`, {
      headers: { accept: 'text/html', cookie: cookiesFrom(pending.start) },
      redirect: 'manual',
    });
    expect(callback.status).toBe(303);
    expect(callback.headers.get('location')).toContain('notice=connect_taken');
  });

  // Server only: on PGlite nothing runs beside the callback. A removal holds the workspace and then
  // locks the memberships (auth.repo.ts lockMemberships); the callback took the membership first and
  // the workspace last (its new row's foreign key): a deadlock, one side a 500 (a reviewer's repro).
  it.runIf(process.env.TEST_DATABASE_URL)('a removal under way when the callback stores the mailbox: the callback waits for it, then refuses (400), no deadlock', async () => {
    const member = await join('racer@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'racer.gmail@acme.test');
    const removal = new pg.Client({ connectionString: (ctx.app.database as unknown as { url: string }).url });
    await removal.connect();
    try {
      await removal.query('begin');
      await removal.query('select id from workspaces where id = $1 for update', [ctx.owner.workspaceId]);
      const finished = pending.finish();
      // Until the callback waits on the workspace's lock.
      await waitForLockWaiters(removal, 1);
      await removal.query('select user_id from memberships where workspace_id = $1 for update', [ctx.owner.workspaceId]);
      await removal.query('delete from memberships where workspace_id = $1 and user_id = $2', [ctx.owner.workspaceId, member.userId]);
      await removal.query('commit');
      const done = await finished;
      expect(done.status, done.text).toBe(400);
      expect(done.body.error.code).toBe('invalid_state');
      expect(await liveMailboxesAt('racer.gmail@acme.test')).toEqual([]);
    } finally {
      await removal.end();
    }
  });
});


/*
 * A member reconnecting their mailbox while they leave the workspace (two tabs). The leave marks
 * their mailboxes deleted, then locks the workspace's row (`for update`, the membership lock); the
 * callback locked the workspace's key (lockLiveMembers), then the mailbox's row (`for update`):
 * met in between, each waited for the other — the deadlock a server log showed, one side a 409.
 * The callback now locks the mailbox's row first, the order of the leave, sync and the send claim.
 * Forced: a third session holds the workspace's row (`no key update`: the leave's lock waits for
 * it, the callback's key share does not) until both wait. Server only: nothing interleaves on PGlite.
 */
describe('reconnecting while leaving', () => {
  it.runIf(process.env.TEST_DATABASE_URL)('the callback waits for the leave, then refuses (400); the leave passes; no deadlock', async () => {
    const member = await join('reconnect-leaver@acme.test');
    const mailbox = await connectedMailbox(ctx.app, member.token, 'leaver.gmail@acme.test');
    const pending = await approveConnection(ctx.app, member.token, 'leaver.gmail@acme.test');
    const url = (ctx.app.database as unknown as { url: string }).url;
    const holder = new pg.Client({ connectionString: url });
    const watcher = new pg.Client({ connectionString: url });
    await Promise.all([holder.connect(), watcher.connect()]);
    const waiters = (n: number) => waitForLockWaiters(watcher, n);
    try {
      await holder.query('begin');
      await holder.query('select id from workspaces where id = $1 for no key update', [ctx.owner.workspaceId]);
      // The leave marks the mailbox, then waits here for the workspace's row…
      const leaving = ctx.app.api('DELETE', '/api/members/me', { token: member.token });
      await waiters(1);
      // …and the callback comes in meanwhile.
      const finished = pending.finish();
      await waiters(2);
      await holder.query('commit');
      const [left, done] = await Promise.all([leaving, finished]);
      expect(left.status, left.text).toBe(204);
      expect(done.status, done.text).toBe(400);
      expect(done.body.error.code).toBe('invalid_state');
      expect(await liveMailboxesAt('leaver.gmail@acme.test')).toEqual([]);
      const [row] = rowsOf<{ deleted: boolean }>(await ctx.app.database.db.execute(sql`select deleted_at is not null as deleted from mailboxes where id = ${mailbox.id}::uuid`));
      expect(row?.deleted).toBe(true);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      await Promise.all([holder.end(), watcher.end()]);
    }
  }, 30_000);
});
