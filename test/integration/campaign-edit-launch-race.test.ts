import { sql } from 'drizzle-orm';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * A draft edited while it is being launched: the edit must either land before the launch (and
 * the launch then sends what it says) or be refused with 409 — never be written into a campaign
 * already launched, whose ledger holds the audience it had before.
 */

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));
let mailboxId: string;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, `edit-race-${Date.now()}@acme.test`)).id;
});

const inAnHour = () => new Date(Date.now() + 3_600_000).toISOString();
const draftJson = (subject: string, contactId: string) => ({ name: subject, kind: 'transactional', mailboxId, subject, text: 'x', contactIds: [contactId], startAt: inAnHour() });
const createDraft = async (subject: string, contactId: string) => {
  const res = await ctx.app.api('POST', '/api/campaigns', { token: ctx.owner.token, json: draftJson(subject, contactId) });
  expect(res.status, res.text).toBe(201);
  return res.body.id as string;
};
const edit = (id: string, subject: string, contactId: string) => ctx.app.api('PATCH', `/api/campaigns/${id}`, { token: ctx.owner.token, json: draftJson(subject, contactId) });
const launch = (id: string) => ctx.app.api('POST', `/api/campaigns/${id}/launch`, { token: ctx.owner.token, json: {} });

/** Who the launch wrote into the ledger and the subject the campaign keeps. */
async function outcome(id: string) {
  const recipients = rowsOf<{ contact_id: string }>(await ctx.app.database.db.execute(sql`select contact_id from campaign_sends where campaign_id = ${id}::uuid`)).map((r) => r.contact_id);
  const [row] = rowsOf<{ subject: string; status: string }>(await ctx.app.database.db.execute(sql`select subject, status::text as status from campaigns where id = ${id}::uuid`));
  return { recipients, subject: row!.subject, status: row!.status };
}

describe('an edit racing its launch', () => {
  it('an edit either lands before the launch (and the launch takes it) or is refused with 409: never written into a launched campaign', async () => {
    const [before, after] = (await fixtures.audience(2, { prefix: 'editrace' })).map((c) => c.id);
    for (let round = 0; round < 8; round += 1) {
      const id = await createDraft(`Race ${round}`, before!);
      const [edited, launched] = await Promise.all([edit(id, `Race ${round} edited`, after!), launch(id)]);
      expect(launched.status, launched.text).toBe(200);
      expect([200, 409], edited.text).toContain(edited.status);
      // Which order wins is up to the scheduler; the held-row cases below run each on purpose.
      expect({ edit: edited.status, ...(await outcome(id)) }).toEqual(
        edited.status === 200
          ? { edit: 200, recipients: [after], subject: `Race ${round} edited`, status: 'scheduled' }
          : { edit: 409, recipients: [before], subject: `Race ${round}`, status: 'scheduled' },
      );
    }
  });

  // Lock waits need a server (PGlite runs one transaction at a time). The campaign's row is held
  // so that the two writes queue for it in a known order, each past the checks it read before.
  const orders = [
    { first: 'launch', expected: (before: string) => ({ edit: [409, 'campaign_not_editable'], recipients: [before], subject: 'Held' }) },
    { first: 'edit', expected: (_before: string, after: string) => ({ edit: [200, undefined], recipients: [after], subject: 'Held edited' }) },
  ] as const;
  for (const { first, expected } of orders) {
    it.skipIf(!process.env.TEST_DATABASE_URL)(`the ${first} queued first for the draft's row commits first, and the other write sees it`, async () => {
      const [before, after] = (await fixtures.audience(2, { prefix: `held${first}` })).map((c) => c.id);
      const id = await createDraft('Held', before!);
      const url = (ctx.app.database as unknown as { url: string }).url;
      const [holder, watcher] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
      await Promise.all([holder.connect(), watcher.connect()]);
      try {
        await holder.query('begin');
        await holder.query('select 1 from campaigns where id = $1 for update', [id]);
        const requests = first === 'launch' ? [() => launch(id), () => edit(id, 'Held edited', after!)] : [() => edit(id, 'Held edited', after!), () => launch(id)];
        const firstReply = requests[0]!();
        await waitForLockWaiters(watcher, 1);
        const secondReply = requests[1]!();
        await waitForLockWaiters(watcher, 2);
        await holder.query('commit');
        const replies = await Promise.all([firstReply, secondReply]);
        const [edited, launched] = first === 'launch' ? [replies[1], replies[0]] : replies;
        expect(launched.status, launched.text).toBe(200);
        const { status: _status, ...rest } = await outcome(id);
        expect({ edit: [edited.status, edited.body?.error?.code], ...rest }).toEqual(expected(before!, after!));
      } finally {
        await Promise.all([holder.end(), watcher.end()]);
      }
    });
  }

  it('a launch writes only the draft it checked: a kind or mailbox changed since its checks leaves it a draft', async () => {
    const [contact] = await fixtures.audience(1, { prefix: 'checked' });
    const id = await createDraft('Checked', contact!.id);
    const repo = createCampaignsRepo(ctx.app.database.db);
    const launching = { status: 'sending' as const, startAt: new Date(), launchedAt: new Date(), statusReason: null };
    // The launch checked a marketing campaign (postal address) or another mailbox; the draft is neither now.
    expect(await repo.transition(id, ['draft'], launching, { kind: 'marketing', mailboxId })).toBeUndefined();
    expect(await repo.transition(id, ['draft'], launching, { kind: 'transactional', mailboxId: null })).toBeUndefined();
    expect((await outcome(id)).status).toBe('draft');
    expect(await repo.transition(id, ['draft'], launching, { kind: 'transactional', mailboxId })).toMatchObject({ status: 'sending' });
    await ctx.app.api('POST', `/api/campaigns/${id}/cancel`, { token: ctx.owner.token });
  });
});
