import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { connect, type Database } from '../../src/db/connect.js';
import { recordMailSignal } from '../../src/webhooks/facts.js';
import { captureBuilt } from '../helpers/explain.js';

/*
 * The webhook facts that name a send's contact (webhooks/facts.ts) look it up by its key and
 * check "live, of this workspace" on the row found. With the workspace and `deleted_at` in the
 * lookup's condition, a generic plan made on small tables (PGlite keeps one: plan-hints.ts)
 * read it through the workspace's live-address index — every live contact of the workspace,
 * for each message recorded sent and each reply or bounce. Planned on empty tables here, the
 * worst case (EXPLAIN (GENERIC_PLAN): PGlite's PostgreSQL 18).
 */
let database: Database;
beforeAll(async () => {
  database = await connect({ kind: 'pglite', dir: 'memory://' });
  await database.migrate();
});
afterAll(() => database?.close());

async function genericPlan(call: Parameters<typeof captureBuilt>[0]): Promise<string> {
  const { sql: text } = await captureBuilt(call);
  const client = (database.db as unknown as { $client: { exec(query: string): Promise<{ rows: { 'QUERY PLAN': string }[] }[]> } }).$client;
  const [plan] = await client.exec(`explain (generic_plan) ${text}`);
  return plan!.rows.map((r) => r['QUERY PLAN']).join('\n');
}

/** Each lookup of contacts in the plan, with its index and condition. */
const contactLookups = (plan: string) => [...plan.matchAll(/Index Scan using (\S+) on contacts\b.*\n\s+Index Cond: (.*)/g)].map(([, index, cond]) => `${index}: ${cond}`);

describe('webhook facts read a send’s contact by its key (generic plans, PGlite)', () => {
  it('message.sent of a recorded send', async () => {
    const plan = await genericPlan((capture) =>
      createSendLedgerRepo(capture, { serializedEngine: true }).markSentMany([
        { lease: { id: randomUUID(), owner: 'plan', attempt: 1, messageRowId: randomUUID() }, gmail: { id: 'g', threadId: 't' }, at: new Date(), subject: 's' },
      ]),
    );
    expect(contactLookups(plan), plan).toEqual([expect.stringMatching(/^contacts_pkey: \(id = \S+\.contact_id\)$/)]);
  });

  it('reply and bounce', async () => {
    const plan = await genericPlan((capture) => recordMailSignal(capture, randomUUID()));
    expect(contactLookups(plan).sort(), plan).toEqual([
      expect.stringMatching(/^contacts_pkey: \(id = \S+\.contact_id\)$/),
      // The address lookup is by workspace and address, as it should be.
      expect.stringMatching(/^contacts_workspace_email_unique: \(\(workspace_id = me\.workspace_id\) AND \(lower\(email\) = lower\(me\.recipient\)\)\)$/),
    ]);
  });
});

describe('the delivery claim (generic plan, PGlite)', () => {
  it("reads each enabled endpoint's due deliveries through its own index, not every due row", async () => {
    const { createWebhooksRepo } = await import('../../src/webhooks/webhooks.repo.js');
    const plan = await genericPlan((capture) => createWebhooksRepo(capture).claimDue('plan', new Date(), new Date(), 32, { perWorkspace: 8, open: new Map([[randomUUID(), 8], [randomUUID(), 3]]), openByEndpoint: new Map([[randomUUID(), 3]]) }));
    expect(plan).toMatch(/Index Scan using webhook_deliveries_endpoint_due_idx on webhook_deliveries/);
    expect(plan).not.toMatch(/webhook_deliveries_due_idx/);
  });
});
