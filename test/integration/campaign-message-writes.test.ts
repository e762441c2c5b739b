import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { isUniqueViolation } from '../../src/db/pg-errors.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * What a campaign send writes besides its ledger row, kept small because every claim pays it
 * (migration 0035; BENCHMARKS.md, twelfth pass): a `messages` row, but no `message_contacts`
 * row — the ledger row already links the message to its contact, and the timeline and the
 * purge read that link — and no entry in the lease index of `messages` (partial: the ledger
 * holds a campaign send's lease) nor, since migration 0036, in its Gmail-id unique index while
 * Gmail has not answered (partial on a Gmail id).
 */
// Purged as soon as deleted: the test reads what the contact's purge leaves.
const ctx = useAppWithOwner({ env: { PURGE_AFTER_DAYS: '0' } });
const fx = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
const SENDER = 'writes-sender@acme.test';
let mailbox: { id: string };

beforeAll(async () => {
  mailbox = await connectedMailbox(ctx.app, ctx.owner.token, SENDER, { sync: true });
  await ctx.app.api('PATCH', '/api/workspace', { token: ctx.owner.token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
});

async function query<T>(statement: ReturnType<typeof sql>): Promise<T[]> {
  return rowsOf<T>(await ctx.app.database.db.execute(statement));
}

describe('a campaign send’s writes beside its ledger row', { timeout: 60_000 }, () => {
  it('links its message to the contact through the ledger alone; the timeline shows it and the contact’s purge removes it', async () => {
    const people = await fx.audience(2);
    const campaignId = await fx.launched(mailbox.id, 'W1 ledger link', people.map((p) => p.id));
    await fx.drain(campaignId);

    const sends = await query<{ contact_id: string; message_id: string | null; status: string }>(
      sql`select contact_id, message_id, status from campaign_sends where campaign_id = ${campaignId}::uuid`,
    );
    expect(sends.map((s) => s.status)).toEqual(['sent', 'sent']);
    const messageIds = sends.map((s) => s.message_id!);
    expect(await query(sql`select 1 from messages where id = any(${`{${messageIds.join(',')}}`}::uuid[])`)).toHaveLength(2);
    expect(await query(sql`select 1 from message_contacts where message_id = any(${`{${messageIds.join(',')}}`}::uuid[])`)).toHaveLength(0);

    const [first] = people;
    const contact = await ctx.app.api('GET', `/api/contacts/${first!.id}`, { token: ctx.owner.token });
    const messages = contact.body.timeline.filter((e: { type: string }) => e.type === 'message');
    expect(messages.map((e: { subject: string; status: string }) => `${e.subject}:${e.status}`)).toEqual(['W1 ledger link:sent']);

    const mine = sends.find((s) => s.contact_id === first!.id)!;
    expect((await ctx.app.api('DELETE', `/api/contacts/${first!.id}`, { token: ctx.owner.token })).status).toBe(204);
    expect((await ctx.app.services.purge.runOnce()).contact).toBe(1);
    const left = await query(sql`select 1 from messages where id = ${mine.message_id}::uuid`);
    expect(left).toHaveLength(0);
  });

  it('keeps a claimed message (no lease, no Gmail id yet) out of the lease and Gmail-id indexes of `messages`; a Gmail id is still unique per mailbox', async () => {
    const definitions = await query<{ name: string; definition: string }>(sql`
      select indexname as name, indexdef as definition from pg_indexes
      where tablename = 'messages' and indexname in ('messages_mailbox_gmail_id_unique', 'messages_lease_idx') order by 1`);
    expect(definitions.map((d) => d.name)).toEqual(['messages_lease_idx', 'messages_mailbox_gmail_id_unique']);
    expect(definitions[0]!.definition).toMatch(/WHERE \(\(status = 'sending'::message_status\) AND \(lease_expires_at IS NOT NULL\)\)/);
    // Partial since migration 0036: the sync's conflict target has named the predicate since the release before.
    expect(definitions[1]!.definition).toMatch(/^CREATE UNIQUE INDEX .* WHERE \(gmail_message_id IS NOT NULL\)$/);
    const [sent] = await query<{ mailbox_id: string; workspace_id: string; gmail_message_id: string }>(sql`
      select mailbox_id, workspace_id, gmail_message_id from messages where gmail_message_id is not null limit 1`);
    const again = sql`
      insert into messages (workspace_id, mailbox_id, direction, status, subject, from_address, to_addresses, gmail_message_id)
      values (${sent!.workspace_id}::uuid, ${sent!.mailbox_id}::uuid, 'inbound', 'received', 'copy', 'a@b.test', '{}', ${sent!.gmail_message_id})`;
    const refused = await query(again).then(() => undefined, (error: unknown) => error);
    expect(isUniqueViolation(refused)).toBe(true);
  });

  it('a deleted contact whose address lives on in another contact: its purge finds its campaign mail by the ledger, the other keeps theirs', async () => {
    const [first] = await fx.audience(1, { prefix: 'shared' });
    const campaignA = await fx.launched(mailbox.id, 'W2 first owner', [first!.id]);
    await fx.drain(campaignA);
    const [mineA] = await query<{ message_id: string }>(sql`select message_id from campaign_sends where campaign_id = ${campaignA}::uuid`);
    expect((await ctx.app.api('DELETE', `/api/contacts/${first!.id}`, { token: ctx.owner.token })).status).toBe(204);
    // The same address again, as a new contact who gets mail of their own.
    const again = await ctx.app.api('POST', '/api/contacts', { token: ctx.owner.token, json: { email: first!.email, firstName: 'Again' } });
    expect(again.status, again.text).toBe(201);
    await ctx.app.api('POST', `/api/contacts/${again.body.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_in', source: 'signup form' } });
    const campaignB = await fx.launched(mailbox.id, 'W2 second owner', [again.body.id]);
    await fx.drain(campaignB);
    const [mineB] = await query<{ message_id: string }>(sql`select message_id from campaign_sends where campaign_id = ${campaignB}::uuid`);

    expect((await ctx.app.services.purge.runOnce()).contact).toBe(1);
    expect(await query(sql`select 1 from messages where id = ${mineA!.message_id}::uuid`)).toHaveLength(0);
    expect(await query(sql`select 1 from messages where id = ${mineB!.message_id}::uuid`)).toHaveLength(1);
    const timeline = (await ctx.app.api('GET', `/api/contacts/${again.body.id}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.filter((e: { type: string }) => e.type === 'message').map((e: { subject: string }) => e.subject)).toEqual(['W2 second owner']);
  });

  it('a campaign message claimed before this release has both links: the timeline lists it once', async () => {
    const [person] = await fx.audience(1, { prefix: 'both' });
    const campaignId = await fx.launched(mailbox.id, 'W3 both links', [person!.id]);
    await fx.drain(campaignId);
    // The link an earlier release wrote at the claim.
    await ctx.app.database.db.execute(sql`
      insert into message_contacts (message_id, contact_id, workspace_id)
      select message_id, contact_id, workspace_id from campaign_sends where campaign_id = ${campaignId}::uuid`);
    const timeline = (await ctx.app.api('GET', `/api/contacts/${person!.id}`, { token: ctx.owner.token })).body.timeline;
    expect(timeline.filter((e: { type: string }) => e.type === 'message').map((e: { subject: string }) => e.subject)).toEqual(['W3 both links']);
  });
});
