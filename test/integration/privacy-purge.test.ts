import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { tablesMentioning } from '../helpers/all-tables.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';

/*
 * P-13 for campaigns and mailboxes, the purge job itself (bounded runs resume, repeated runs
 * change nothing), and a purged contact's address where it is a value in another record
 * (campaign segments, legal request scopes).
 */

const DAY = 86_400_000;
const start = Date.now();
let clock = start;
let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
let mailbox: { id: string; email: string };
const db = () => app.database.db;
const fixtures = campaignFixtures(() => ({ app, token: owner.token, workspaceId: owner.workspaceId }));
const api = (method: string, path: string, json?: unknown) => app.api(method, path, { token: owner.token, json });
const count = async (query: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await db().execute(query))[0]!.n);

beforeAll(async () => {
  app = await startTestApp({ now: () => new Date(clock) });
  owner = await signUp(app);
  mailbox = await connectedMailbox(app, owner.token, `purge-sender-${Date.now()}@acme.test`);
  await api('PATCH', '/api/workspace', { postalAddress: '1 Main St' });
});
afterAll(async () => {
  await app?.close();
});

describe('P-13 purge', () => {
  it('P-13 the purge is resumable and idempotent: a bounded run leaves whole items, the next finishes, a third changes nothing', async () => {
    const ids: string[] = [];
    for (const n of [1, 2, 3]) {
      const contact = await api('POST', '/api/contacts', { email: `resume${n}@example.test` });
      await api('POST', `/api/contacts/${contact.body.id}/consents`, { status: 'opted_in', source: 'form' });
      expect((await api('DELETE', `/api/contacts/${contact.body.id}`)).status).toBe(204);
      ids.push(contact.body.id);
    }
    clock = start + 30 * DAY + 1000;
    try {
      expect(await app.services.purge.runOnce({ maxItems: 1 })).toMatchObject({ contact: 1 });
      const left = rowsOf<{ id: string; consents: number }>(
        await db().execute(sql`
          select c.id, (select count(*)::int from consents s where s.contact_id = c.id) as consents
          from contacts c where c.id = any(${`{${ids.join(',')}}`}::uuid[])`),
      );
      // Two are still whole (each with its consent), one is entirely gone.
      expect(left.map((r) => Number(r.consents))).toEqual([1, 1]);
      expect(await app.services.purge.runOnce()).toMatchObject({ contact: 2 });
      expect(await app.services.purge.runOnce()).toEqual({ mailbox: 0, contact: 0, campaign: 0, workspace: 0, user: 0 });
      expect(await count(sql`select count(*)::int as n from contacts where id = any(${`{${ids.join(',')}}`}::uuid[])`)).toBe(0);
      const completed = await count(sql`select count(*)::int as n from audit_log where action = 'deletion.completed' and subject_id = any(${`{${ids.join(',')}}`}::text[])`);
      expect(completed).toBe(3);
    } finally {
      clock = start;
    }
  });

  it('P-13 deleting a running campaign cancels it first; it vanishes from every API at once and is purged with its ledger and tracking', async () => {
    const audience = await fixtures.audience(2, { prefix: 'campaign-purge' });
    const sent = await fixtures.launched(mailbox.id, 'Sent then deleted', audience.map((c) => c.id));
    await fixtures.drain(sent);
    const scheduled = await api('POST', '/api/campaigns', { name: 'Later', kind: 'marketing', mailboxId: mailbox.id, subject: 'Later', html: '<p>x</p>', contactIds: audience.map((c) => c.id) });
    expect((await api('POST', `/api/campaigns/${scheduled.body.id}/launch`, { startAt: new Date(clock + DAY).toISOString() })).status).toBe(200);

    for (const id of [sent, scheduled.body.id as string]) {
      expect((await api('DELETE', `/api/campaigns/${id}`)).status).toBe(204);
      for (const path of [`/api/campaigns/${id}`, `/api/campaigns/${id}/stats`]) expect((await api('GET', path)).status).toBe(404);
      expect((await api('POST', `/api/campaigns/${id}/preflight`)).status).toBe(404);
      expect((await api('POST', `/api/campaigns/${id}/resume`)).status).toBe(404);
      expect((await api('DELETE', `/api/campaigns/${id}`)).status).toBe(404);
    }
    expect((await api('GET', '/api/campaigns')).body.campaigns.map((c: { id: string }) => c.id)).not.toEqual(expect.arrayContaining([sent]));
    // The scheduled one was cancelled before it was marked: none of its sends can go out.
    const [state] = rowsOf<{ status: string; queued: number }>(
      await db().execute(sql`select status::text, (select count(*)::int from campaign_sends where campaign_id = c.id and status = 'queued') as queued from campaigns c where id = ${scheduled.body.id}::uuid`),
    );
    expect(state).toEqual({ status: 'cancelled', queued: 0 });

    clock = start + 30 * DAY + 1000;
    try {
      expect((await app.services.purge.runOnce()).campaign).toBe(2);
      for (const table of ['campaigns', 'campaign_sends', 'campaign_links', 'tracking_events', 'tracking_rollups']) {
        const column = table === 'campaigns' ? sql.raw('id') : sql.raw('campaign_id');
        expect(await count(sql`select count(*)::int as n from ${sql.identifier(table)} where ${column} = ${sent}::uuid`), table).toBe(0);
      }
      expect(await count(sql`select count(*)::int as n from messages where workspace_id = ${owner.workspaceId}::uuid and subject = 'Sent then deleted'`)).toBe(0);
      // Recipient rows stay: other campaigns and unsubscribe links name them.
      expect(await count(sql`select count(*)::int as n from recipients where lower(email) = ${audience[0]!.email.toLowerCase()}`)).toBe(1);
    } finally {
      clock = start;
    }
  });

  it('P-13 a disconnected mailbox vanishes at once, can be connected again, and its old row is purged', async () => {
    const address = `reconnect-${Date.now()}@acme.test`;
    const first = await connectedMailbox(app, owner.token, address);
    expect((await api('DELETE', `/api/mailboxes/${first.id}`)).status).toBe(204);
    expect((await api('GET', '/api/mailboxes')).body.mailboxes.map((m: { id: string }) => m.id)).not.toContain(first.id);
    expect((await api('PATCH', `/api/mailboxes/${first.id}`, { dailyBudget: 5 })).status).toBe(404);
    const again = await connectedMailbox(app, owner.token, address);
    expect(again.id).not.toBe(first.id);

    clock = start + 30 * DAY + 1000;
    try {
      expect((await app.services.purge.runOnce()).mailbox).toBe(1);
      expect(await count(sql`select count(*)::int as n from mailboxes where id = ${first.id}::uuid`)).toBe(0);
      expect((await api('GET', '/api/mailboxes')).body.mailboxes.map((m: { id: string }) => m.id)).toContain(again.id);
    } finally {
      clock = start;
    }
  });

  it('P-13 a purged contact\'s address leaves every campaign segment and legal request scope; no draft\'s audience widens', async () => {
    const batch = `b${Date.now().toString(36)}`;
    const contact = async (email: string, inSandbox = true) => {
      if (inSandbox) app.sandbox.control.createMailbox({ email });
      const created = await api('POST', '/api/contacts', { email, attributes: { batch } });
      expect(created.status, created.text).toBe(201);
      await api('POST', `/api/contacts/${created.body.id}/consents`, { status: 'opted_in', source: 'form' });
      return created.body as { id: string; email: string };
    };
    const target = await contact(`erase-${batch}@contoso.test`);
    const address = target.email.toLowerCase();
    const [b1, b2] = [await contact(`keep1-${batch}@contoso.test`), await contact(`keep2-${batch}@contoso.test`)];
    const inBatch = { field: 'attributes.batch', op: 'eq', value: batch };
    const draft = async (name: string, segment: unknown) => {
      const res = await api('POST', '/api/campaigns', { name, kind: 'marketing', mailboxId: mailbox.id, subject: name, html: '<p>Hi</p>', segment });
      expect(res.status, res.text).toBe(201);
      return res.body.id as string;
    };
    const total = async (id: string) => (await api('POST', `/api/campaigns/${id}/preflight`)).body.total as number;
    const drafts = {
      only: await draft('Only her', { all: [{ field: 'email', op: 'eq', value: target.email.toUpperCase() }] }),
      listed: await draft('Listed', { all: [inBatch, { field: 'email', op: 'in', value: [b1!.email, target.email] }] }),
      notHer: await draft('All but her', { all: [inBatch, { field: 'email', op: 'neq', value: target.email }] }),
      either: await draft('Either', { any: [{ field: 'attributes.batch', op: 'eq', value: 'none' }, { field: 'email', op: 'contains', value: `<${target.email}>` }, { field: 'email', op: 'eq', value: b2!.email }] }),
    };
    const sent = await draft('Sent to her', { all: [{ field: 'email', op: 'eq', value: target.email }] });
    expect((await api('POST', `/api/campaigns/${sent}/launch`, {})).status).toBe(200);
    await fixtures.drain(sent);
    const recorded = await app.api('POST', '/api/privacy/legal-requests', {
      token: owner.token,
      json: {
        authority: 'Court',
        legalBasis: 'Order',
        reference: 'AZ 1/26',
        scope: { addresses: [target.email.toUpperCase(), b1!.email], contactIds: [target.id], from: '2020-01-01T00:00:00Z', to: '2030-01-01T00:00:00Z', kinds: ['messages'] },
      },
    });
    expect(recorded.status, recorded.text).toBe(201);
    const before = { only: 1, listed: 2, notHer: 2, either: 1 };
    for (const [key, id] of Object.entries(drafts)) expect(await total(id), key).toBe(before[key as keyof typeof before]);
    expect(Object.keys(await tablesMentioning(db(), address))).toEqual(expect.arrayContaining(['campaigns', 'legal_requests']));

    expect((await api('DELETE', `/api/contacts/${target.id}`)).status).toBe(204);
    // A webhook event about her written after the delete (an open on a send that still exists): it goes with the purge too.
    await db().execute(sql`insert into webhook_events (workspace_id, type, occurred_at, data)
      values (${owner.workspaceId}::uuid, 'email.opened', now(), ${JSON.stringify({ contactId: target.id, email: target.email })}::jsonb),
             -- One naming only her address (in another case), one only her contact id (an older address): each branch of the purge's delete.
             (${owner.workspaceId}::uuid, 'suppression.created', now(), ${JSON.stringify({ suppressionId: null, email: target.email.toUpperCase() })}::jsonb),
             (${owner.workspaceId}::uuid, 'consent.recorded', now(), ${JSON.stringify({ contactId: target.id, email: 'her-old-address@example.net' })}::jsonb)`);
    clock = start + 30 * DAY + 1000;
    try {
      expect((await app.services.purge.runOnce()).contact).toBe(1);
      expect(await tablesMentioning(db(), address)).toEqual({});

      // Each draft matches what it matched without her, or fewer: never more. A condition
      // naming only her matches nobody (not everyone), even when she is added again.
      const segmentOf = async (id: string) => (await api('GET', `/api/campaigns/${id}`)).body.audience.segment;
      expect(await segmentOf(drafts.only)).toEqual({ all: [{ field: 'email', op: 'erased' }] });
      expect(await segmentOf(drafts.listed)).toEqual({ all: [inBatch, { field: 'email', op: 'in', value: [b1!.email] }] });
      expect(await segmentOf(drafts.notHer)).toEqual({ all: [inBatch, { field: 'email', op: 'erased' }] });
      expect((await segmentOf(drafts.either)).any[1]).toEqual({ field: 'email', op: 'erased' });
      expect(await segmentOf(sent)).toEqual({ all: [{ field: 'email', op: 'erased' }] });
      await contact(target.email, false);
      const after = { only: 0, listed: 1, notHer: 0, either: 1 };
      for (const [key, id] of Object.entries(drafts)) expect(await total(id), key).toBe(after[key as keyof typeof after]);
      // The scrubbed draft is still one the API takes back as it is.
      const read = (await api('GET', `/api/campaigns/${drafts.notHer}`)).body;
      const saved = await api('PATCH', `/api/campaigns/${drafts.notHer}`, { name: read.name, kind: read.kind, mailboxId: read.mailboxId, subject: read.subject, html: read.html, segment: read.audience.segment });
      expect(saved.status, saved.text).toBe(200);

      // The legal request keeps its scope as evidence: the other address, the contact id, and her keyed hash.
      const request = (await api('GET', `/api/privacy/legal-requests/${recorded.body.id}`)).body;
      expect(request.scope).toMatchObject({ addresses: [b1!.email], erasedAddresses: 1, contactIds: [target.id] });
      const keyed = createAddressHasher(app.config.privacy.suppressionHashKey)(address);
      const [row] = rowsOf<{ erased_address_hashes: string[] }>(await db().execute(sql`select erased_address_hashes from legal_requests where id = ${recorded.body.id}::uuid`));
      expect(row!.erased_address_hashes).toEqual([keyed]);

      const [completed] = rowsOf<{ detail: { removed: Record<string, number> } }>(
        await db().execute(sql`select detail from audit_log where action = 'deletion.completed' and subject_id = ${target.id}`),
      );
      expect(completed!.detail.removed).toMatchObject({ campaignSegmentsScrubbed: 5, legalRequestAddressesHashed: 1, webhookEvents: 3 });
    } finally {
      clock = start;
    }
  });

  it('P-13 a segment naming an address that a live contact has again keeps it: it names that contact now', async () => {
    const email = `twin-${Date.now().toString(36)}@contoso.test`;
    const first = await api('POST', '/api/contacts', { email });
    expect((await api('DELETE', `/api/contacts/${first.body.id}`)).status).toBe(204);
    const twin = await api('POST', '/api/contacts', { email });
    expect(twin.status).toBe(201);
    const segment = { all: [{ field: 'email', op: 'eq', value: email }] };
    const campaign = await api('POST', '/api/campaigns', { name: 'Twin', kind: 'transactional', mailboxId: mailbox.id, subject: 'Twin', html: '<p>Hi</p>', segment });
    clock = start + 30 * DAY + 1000;
    try {
      expect((await app.services.purge.runOnce()).contact).toBe(1);
      expect((await api('GET', `/api/campaigns/${campaign.body.id}`)).body.audience.segment).toEqual(segment);
      expect((await api('POST', `/api/campaigns/${campaign.body.id}/preflight`)).body.total).toBe(1);
    } finally {
      clock = start;
    }
  });
});
