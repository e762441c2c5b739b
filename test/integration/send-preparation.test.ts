import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCampaignsRepo, type CampaignRow, type CampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import type { SendCandidate } from '../../src/campaigns/send-ledger.repo.js';
import { createSendPreparation } from '../../src/campaigns/send-preparation.js';
import type { Database, Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import type { MailboxRow } from '../../src/gmail/mailboxes.repo.js';
import { createTokenCodec } from '../../src/tracking/tokens.js';
import { createTrackingUrls } from '../../src/tracking/urls.js';
import { captureBuilt, explainAsRun } from '../helpers/explain.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * A follow-up answers its recipient's earlier step: In-Reply-To and References name that send's
 * Message-ID, and Gmail is asked to put it in that send's thread. The earlier sends of a batch's
 * follow-ups are read once, with the batch's other shared context (send-preparation.ts), not
 * once per message (issue #14): one statement, one probe of the ledger's key per follow-up.
 */
let data: Database;
beforeAll(async () => {
  data = await createTestDatabase();
});
afterAll(() => data?.close());

const urls = createTrackingUrls(createTokenCodec([{ version: 'v1', secret: 'send-preparation-test-secret' }]), 'https://t.acme.test');
const mailbox = { id: '00000000-0000-4000-8000-000000000001', email: 'sender@acme.test' } as MailboxRow;

async function newWorkspace(db: Db): Promise<string> {
  return rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values ('preparation') returning id`))[0]!.id;
}

async function newCampaign(db: Db, workspaceId: string): Promise<CampaignRow> {
  const [row] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, text, status, audience, steps)
      values (${workspaceId}::uuid, 'sequence', 'transactional', 'Hello', 'first', 'sending', '{"contactIds":[]}',
              '[{"afterDays":0,"text":"second"},{"afterDays":0,"text":"third"}]') returning id`),
  );
  return (await createCampaignsRepo(db).findById(workspaceId, row!.id))!;
}

async function newRecipient(db: Db, workspaceId: string, email: string): Promise<string> {
  return rowsOf<{ id: string }>(await db.execute(sql`insert into recipients (workspace_id, email) values (${workspaceId}::uuid, ${email}) returning id`))[0]!.id;
}

/** One ledger row; `thread`: the Gmail thread a sent one went into. Returns it as the worker's candidate. */
async function send(db: Db, campaign: CampaignRow, recipientId: string, email: string, step: number, thread?: string): Promise<SendCandidate> {
  const rfc822MessageId = `${crypto.randomUUID()}@acme.test`;
  const [row] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, gmail_thread_id, gmail_message_id)
      values (${campaign.workspaceId}::uuid, ${campaign.id}::uuid, ${step}, ${recipientId}::uuid, ${email}, ${rfc822MessageId},
              ${thread ? 'sent' : 'queued'}::send_status, ${thread ?? null}, ${thread ? `m-${thread}` : null}) returning id`),
  );
  return { id: row!.id, campaignId: campaign.id, step, contactId: null, recipientId, email, rfc822MessageId, attempts: 0 };
}

/** The repository, with the name of each method called recorded (the database is the real one). */
function recordingRepo(repo: CampaignsRepo) {
  const calls: string[] = [];
  const recorded = new Proxy(repo, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(name));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { repo: recorded, calls };
}

describe('preparing a batch of follow-ups', () => {
  it('threads each follow-up under its own recipient’s earlier step, in a batch that mixes recipients with and without one', async () => {
    const { db } = data;
    const workspaceId = await newWorkspace(db);
    const campaign = await newCampaign(db, workspaceId);
    const other = await newCampaign(db, workspaceId);
    const r = async (name: string) => ({ id: await newRecipient(db, workspaceId, `${name}@contoso.test`), email: `${name}@contoso.test` });
    const [ann, bob, cid, dee, eve] = [await r('ann'), await r('bob'), await r('cid'), await r('dee'), await r('eve')];

    const annFirst = await send(db, campaign, ann.id, ann.email, 0, 'thread-ann');
    const bobFirst = await send(db, campaign, bob.id, bob.email, 0, 'thread-bob');
    const eveFirst = await send(db, campaign, eve.id, eve.email, 0, 'thread-eve');
    const eveSecond = await send(db, campaign, eve.id, eve.email, 1, 'thread-eve-2');
    // Cid's first step went out in another campaign only: nothing of this one to answer.
    await send(db, other, cid.id, cid.email, 0, 'thread-cid-other');
    const batch = [
      await send(db, campaign, ann.id, ann.email, 1),
      await send(db, campaign, cid.id, cid.email, 1),
      await send(db, campaign, dee.id, dee.email, 0), // a first step beside the follow-ups
      await send(db, campaign, eve.id, eve.email, 2), // answers her second step, not her first
      await send(db, campaign, bob.id, bob.email, 1),
    ];

    const preparation = createSendPreparation(createCampaignsRepo(db), urls);
    const context = await preparation.batchContext(campaign, mailbox, batch);
    const prepared = await Promise.all(batch.map((candidate) => preparation.prepare(context, candidate)));
    const threading = prepared.map(({ candidate, mail, previous }) => ({
      email: candidate.email,
      step: candidate.step,
      inReplyTo: mail.inReplyTo,
      references: mail.references,
      // What the worker hands Gmail as the thread (send-worker.ts).
      threadId: previous?.gmailThreadId ?? undefined,
    }));
    expect(threading).toEqual([
      { email: ann.email, step: 1, inReplyTo: annFirst.rfc822MessageId, references: [annFirst.rfc822MessageId], threadId: 'thread-ann' },
      { email: cid.email, step: 1, inReplyTo: undefined, references: undefined, threadId: undefined },
      { email: dee.email, step: 0, inReplyTo: undefined, references: undefined, threadId: undefined },
      { email: eve.email, step: 2, inReplyTo: eveSecond.rfc822MessageId, references: [eveSecond.rfc822MessageId], threadId: 'thread-eve-2' },
      { email: bob.email, step: 1, inReplyTo: bobFirst.rfc822MessageId, references: [bobFirst.rfc822MessageId], threadId: 'thread-bob' },
    ]);
    expect(eveFirst.rfc822MessageId).not.toBe(eveSecond.rfc822MessageId);
    // The raw message carries the same headers.
    expect(prepared[0]!.raw.toString()).toContain(`In-Reply-To: <${annFirst.rfc822MessageId}>`);
  });

  it('reads the ledger for the batch, not for each message: preparing its sends queries nothing more, however many follow-ups it holds', async () => {
    const { db } = data;
    const workspaceId = await newWorkspace(db);
    const campaign = await newCampaign(db, workspaceId);
    const followUps: SendCandidate[] = [];
    for (let i = 0; i < 8; i += 1) {
      const recipient = await newRecipient(db, workspaceId, `q${i}@contoso.test`);
      await send(db, campaign, recipient, `q${i}@contoso.test`, 0, `thread-q${i}`);
      followUps.push(await send(db, campaign, recipient, `q${i}@contoso.test`, 1));
    }
    const callsOf = async (batch: SendCandidate[]) => {
      const { repo, calls } = recordingRepo(createCampaignsRepo(db));
      const preparation = createSendPreparation(repo, urls);
      const context = await preparation.batchContext(campaign, mailbox, batch);
      const forContext = calls.splice(0);
      const prepared = await Promise.all(batch.map((candidate) => preparation.prepare(context, candidate)));
      expect(prepared.map((p) => p.previous?.gmailThreadId)).toEqual(batch.map((c) => `thread-${c.email.split('@')[0]}`));
      return { forContext, forMessages: calls };
    };
    const one = await callsOf(followUps.slice(0, 1));
    const eight = await callsOf(followUps);
    expect(eight.forMessages).toEqual([]);
    expect(one.forMessages).toEqual([]);
    expect(eight.forContext).toEqual(one.forContext);
  });

  it('finds the earlier sends by one probe of the ledger’s key per follow-up, not a read of the campaign’s ledger', async () => {
    const { db } = data;
    const workspaceId = await newWorkspace(db);
    const campaign = await newCampaign(db, workspaceId);
    await db.execute(sql`insert into recipients (workspace_id, email) select ${workspaceId}::uuid, 'k' || g || '@contoso.test' from generate_series(1, 3000) g`);
    for (const [step, status] of [[0, 'sent'], [1, 'queued']] as const) {
      await db.execute(sql`
        insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, rfc822_message_id, status, gmail_thread_id)
        select workspace_id, ${campaign.id}::uuid, ${step}, id, email, gen_random_uuid()::text || '@acme.test', ${status}::send_status, 't-' || id
        from recipients where workspace_id = ${workspaceId}::uuid`);
    }
    await db.execute(sql`analyze`);
    const batch = rowsOf<{ recipient_id: string }>(
      await db.execute(sql`select recipient_id from campaign_sends where campaign_id = ${campaign.id}::uuid and step = 1 order by email limit 50`),
    ).map((row) => ({ recipientId: row.recipient_id, step: 1 }));
    const query = await captureBuilt((capture) => createCampaignsRepo(capture).earlierSends(campaign.id, batch));
    const plan = (await explainAsRun(data, query)).join('\n');
    expect(plan).not.toMatch(/Seq Scan on campaign_sends|Bitmap Heap Scan on campaign_sends|campaign_sends_campaign_status_due_idx/);
    const [probe] = [...plan.matchAll(/Index (?:Only )?Scan using campaign_sends_recipient_campaign_step_unique on campaign_sends p\s.*rows=([\d.]+) loops=(\d+)\)\n((?:\s{10,}(?!->)\S.*\n?)*)/g)];
    expect(probe, plan).toBeDefined();
    const [, rows, loops, details] = probe!;
    expect([Number(rows), Number(loops)], plan).toEqual([1, 50]);
    expect(details, plan).toMatch(/Index Cond: \(\(recipient_id = f\.recipient_id\) AND \(campaign_id = (?:'[0-9a-f-]+'::uuid|\$\d+)\) AND \(step = \(f\.step - 1\)\)\)/);
    const [, hit, read] = /Buffers: shared hit=(\d+)(?: read=(\d+))?/.exec(details!) ?? [];
    expect((Number(hit ?? 0) + Number(read ?? 0)) / Number(loops), plan).toBeLessThanOrEqual(6);
  });
});
