import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A notice that quotes the bounced message's Message-ID says which message bounced. When that
 * message is not one of this mailbox's sends, the notice is about none of ours: it is counted
 * unmatchedNotice and never pinned on "our latest send to the address" (that fallback is for
 * notices that name no message at all). First found by an attacker: with one Gmail address
 * connected in two workspaces, workspace A's hard bounce was recorded on workspace B's earlier,
 * delivered mail and suppressed the address in B. The same path in one workspace: mail the user
 * wrote in Gmail (never stored by us) bounced and landed on our earlier send.
 */

const ctx = useAppWithOwner();
const SHARED = 'shared-sender@acme.test';
let other: Awaited<ReturnType<typeof signUp>>;
let mailboxA: { id: string };
let mailboxB: { id: string };

async function query<T = Record<string, unknown>>(statement: ReturnType<typeof sql>): Promise<T[]> {
  return ((await ctx.app.database.db.execute(statement)) as unknown as { rows: T[] }).rows;
}

const suppressedIn = async (workspaceId: string, email: string) =>
  (await query(sql`select 1 from suppressions where workspace_id = ${workspaceId}::uuid and lower(email) = ${email}`)).length;
const bouncesIn = async (workspaceId: string, email: string) =>
  (
    await query<{ subject: string }>(
      sql`select m.subject from mail_events e join messages m on m.id = e.message_id where e.workspace_id = ${workspaceId}::uuid and e.type = 'bounce' and lower(e.recipient) = ${email} order by m.subject`,
    )
  ).map((r) => r.subject);
const unmatchedNotices = async (token: string, mailboxId: string) =>
  (await ctx.app.api('GET', '/api/mailboxes', { token })).body.mailboxes.find((m: { id: string }) => m.id === mailboxId).sync.health.skipped.unmatchedNotice as number;
const send = async (token: string, mailboxId: string, to: string, subject: string) => {
  const sent = await ctx.app.api('POST', '/api/messages', { token, json: { mailboxId, to, subject, text: 'hello' } });
  expect(sent.status, sent.text).toBe(201);
};

beforeAll(async () => {
  other = await signUp(ctx.app);
  mailboxA = await connectedMailbox(ctx.app, ctx.owner.token, SHARED, { sync: true });
  mailboxB = await connectedMailbox(ctx.app, other.token, SHARED, { sync: true });
});

describe('a notice quoting a message that is not one of ours is matched to none of our sends', () => {
  it("one Gmail address in two workspaces: A's hard bounce (Google's report, quoting A's Message-ID) counts in A only; B's delivered mail shows no bounce, the address stays mailable in B", async () => {
    const kim = 'kim@contoso.test';
    ctx.app.sandbox.control.createMailbox({ email: kim });
    await send(other.token, mailboxB.id, kim, 'B: hello kim');
    // Then kim's mailbox closes, and A's mail to kim bounces.
    ctx.app.sandbox.control.setBouncingAddress(kim, 'hard', undefined, 'report');
    await send(ctx.owner.token, mailboxA.id, kim, 'A: hello kim');
    ctx.app.sandbox.control.setBouncingAddress(kim, null);
    const unmatchedBefore = await unmatchedNotices(other.token, mailboxB.id);

    await ctx.app.services.sync.syncMailbox(mailboxA.id);
    await ctx.app.services.sync.syncMailbox(mailboxB.id);

    expect(await bouncesIn(ctx.owner.workspaceId, kim)).toEqual(['A: hello kim']);
    expect(await suppressedIn(ctx.owner.workspaceId, kim)).toBe(1);
    expect({ bounces: await bouncesIn(other.workspaceId, kim), suppressed: await suppressedIn(other.workspaceId, kim) }).toEqual({ bounces: [], suppressed: 0 });
    expect((await unmatchedNotices(other.token, mailboxB.id)) - unmatchedBefore).toBe(1);
  });

  it('one workspace: mail the user wrote in Gmail (not stored by us) bounces; our earlier delivered send to the address gets no bounce and the address is not suppressed', async () => {
    const lee = 'lee@contoso.test';
    ctx.app.sandbox.control.createMailbox({ email: lee });
    await send(ctx.owner.token, mailboxA.id, lee, 'ours: hello lee');
    ctx.app.sandbox.control.setBouncingAddress(lee, 'hard', undefined, 'text');
    // Written in Gmail itself: lee is no contact, so sync does not keep it.
    await ctx.app.sandbox.control.sendAs(SHARED, { to: lee, subject: 'from Gmail: hi lee', text: 'hi' });
    ctx.app.sandbox.control.setBouncingAddress(lee, null);
    const unmatchedBefore = await unmatchedNotices(ctx.owner.token, mailboxA.id);

    await ctx.app.services.sync.syncMailbox(mailboxA.id);

    expect({ bounces: await bouncesIn(ctx.owner.workspaceId, lee), suppressed: await suppressedIn(ctx.owner.workspaceId, lee) }).toEqual({ bounces: [], suppressed: 0 });
    expect((await unmatchedNotices(ctx.owner.token, mailboxA.id)) - unmatchedBefore).toBe(1);
  });

  it('a notice that quotes no message at all is still matched to our latest send to the address (the fallback stands)', async () => {
    const max = 'max@contoso.test';
    ctx.app.sandbox.control.createMailbox({ email: max });
    await send(ctx.owner.token, mailboxA.id, max, 'ours: hello max');
    await ctx.app.sandbox.control.deliverInbound(SHARED, {
      from: 'Mail Delivery Subsystem <mailer-daemon@googlemail.com>',
      subject: 'Delivery Status Notification (Failure)',
      text: `Delivery to the following recipient failed permanently:\n\n     ${max}\n\nThe error that the other server returned was: 550 5.1.1 User unknown\n`,
    });

    await ctx.app.services.sync.syncMailbox(mailboxA.id);

    expect(await bouncesIn(ctx.owner.workspaceId, max)).toEqual(['ours: hello max']);
    expect(await suppressedIn(ctx.owner.workspaceId, max)).toBe(1);
  });
});
