import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { createSendLedgerRepo } from '../../src/campaigns/send-ledger.repo.js';
import { createSendWorker, type SendWorkerDeps } from '../../src/campaigns/send-worker.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createLogger } from '../../src/logger.js';
import type { TestApp } from './test-app.js';

/** A send worker of its own (as another process would have) over the app's database, sandbox and pacer. */
export function separateWorker(app: TestApp, overrides: Partial<SendWorkerDeps> = {}) {
  const db = app.database.db;
  return createSendWorker({
    repo: createCampaignsRepo(db),
    ledger: createSendLedgerRepo(db, { serializedEngine: app.database.kind === 'pglite', autoReplyDelayDays: app.config.signals.autoReplyFollowUpDelayDays }),
    mailboxRepo: createMailboxesRepo(db),
    mailboxes: app.services.mailboxes,
    pacer: app.services.pacer,
    urls: app.services.trackingUrls,
    sentCopies: app.services.sentCopies,
    logger: createLogger('silent'),
    ...overrides,
  });
}

/** A worker that dies right after Gmail accepts each message (before its sent record): its sends stay `sending`, their leases `leaseMs` long. */
export function crashingWorker(app: TestApp, leaseMs: number) {
  return separateWorker(app, {
    leaseMs,
    concurrency: 1,
    afterGmailAccepted: () => {
      throw new Error('process died');
    },
  });
}

/**
 * Campaign set-up the send tests share: contacts that are real sandbox mailboxes (so they
 * really receive mail), a campaign over them, and what the sender's SENT folder holds.
 */
export function campaignFixtures(get: () => { app: TestApp; token: string; workspaceId: string }) {
  let seq = 0;

  async function audience(n: number, options: { optIn?: boolean; prefix?: string } = {}): Promise<{ id: string; email: string }[]> {
    const { app, token } = get();
    seq += 1;
    const contacts: { id: string; email: string }[] = [];
    for (let i = 0; i < n; i += 1) {
      const email = `${options.prefix ?? 'g'}${seq}-${i}-${Date.now().toString(36)}@contoso.test`;
      app.sandbox.control.createMailbox({ email });
      const contact = await app.api('POST', '/api/contacts', { token, json: { email, firstName: `Name${i}` } });
      expect(contact.status, contact.text).toBe(201);
      if (options.optIn ?? true) {
        await app.api('POST', `/api/contacts/${contact.body.id}/consents`, { token, json: { status: 'opted_in', source: 'signup form' } });
      }
      contacts.push({ id: contact.body.id, email });
    }
    return contacts;
  }

  /** A launched marketing campaign to these contacts from this mailbox (`more`: other fields of the draft, e.g. `steps`). */
  async function launched(mailboxId: string, subject: string, contactIds: string[], more: Record<string, unknown> = {}): Promise<string> {
    const { app, token } = get();
    const res = await app.api('POST', '/api/campaigns', {
      token,
      json: { name: subject, kind: 'marketing', mailboxId, subject, html: '<p>Read <a href="https://acme.test/news">the news</a></p>', contactIds, ...more },
    });
    expect(res.status, res.text).toBe(201);
    const launch = await app.api('POST', `/api/campaigns/${res.body.id}/launch`, { token, json: {} });
    expect(launch.status, launch.text).toBe(200);
    return res.body.id as string;
  }

  /** Messages with this subject in the sender's SENT folder, counted per recipient. */
  function sentTo(sender: string, subject: string): Map<string, number> {
    const counts = new Map<string, number>();
    for (const m of get().app.sandbox.control.listMessages(sender, { labelId: 'SENT' })) {
      if (m.subject !== subject) continue;
      for (const to of m.to) counts.set(to, (counts.get(to) ?? 0) + 1);
    }
    return counts;
  }

  async function ledger(campaignId: string) {
    const result = (await get().app.database.db.execute(sql`
      select id, email, status, error_code, skip_reason, gmail_message_id, message_id, claimed_at, attempts, lease_owner
      from campaign_sends where campaign_id = ${campaignId}::uuid order by email`)) as unknown as {
      rows: {
        id: string;
        email: string;
        status: string;
        error_code: string | null;
        skip_reason: string | null;
        gmail_message_id: string | null;
        message_id: string | null;
        claimed_at: Date | string | null;
        attempts: number;
        lease_owner: string | null;
      }[];
    };
    return result.rows;
  }

  async function campaignStatus(campaignId: string): Promise<string> {
    const { app, token } = get();
    return (await app.api('GET', `/api/campaigns/${campaignId}`, { token })).body.status as string;
  }

  /** Ticks the app's worker (and its recovery) until the campaign completes or the deadline passes. */
  async function drain(campaignId: string, deadlineMs = 30_000): Promise<void> {
    const { app } = get();
    const until = Date.now() + deadlineMs;
    while (Date.now() < until) {
      await app.services.sendWorker.recoverStuck();
      await app.services.sendWorker.tick();
      if ((await campaignStatus(campaignId)) === 'completed') return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`campaign ${campaignId} did not complete within ${deadlineMs} ms: ${JSON.stringify(await ledger(campaignId))}`);
  }

  /** A launched campaign of one contact whose worker died right after Gmail accepted its message: `sending`, its lease `leaseMs` long. */
  async function crashedAfterGmail(sender: { id: string; email: string }, subject: string, options: { prefix: string; leaseMs?: number }) {
    const [person] = await audience(1, { prefix: options.prefix });
    const campaignId = await launched(sender.id, subject, [person!.id]);
    await crashingWorker(get().app, options.leaseMs ?? 2_000).tick();
    expect((await ledger(campaignId)).map((r) => r.status)).toEqual(['sending']);
    expect(sentTo(sender.email, subject).get(person!.email)).toBe(1);
    return { campaignId, person: person! };
  }

  return { audience, launched, sentTo, ledger, drain, campaignStatus, crashedAfterGmail };
}

/** A small seeded generator (mulberry32): a failing random schedule can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
