import { sql } from 'drizzle-orm';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CampaignInput } from '../../src/campaigns/campaign-input.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { scheduledReceipt } from '../helpers/seed-campaign.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/*
 * Preflight's set-based counts against a brute-force recount in JavaScript, over a seeded
 * random workspace full of the cases that are easy to get wrong: mixed-case addresses on
 * either side, topic and workspace-wide suppressions, suppressions of another workspace,
 * consent records tied on time (the one written later wins), contacts never asked, invalid
 * addresses. Then audiences of contact ids beyond the 65,535 bind parameters a statement
 * may carry: preflight and launch must still count and write every one.
 */

const ctx = useAppWithOwner();
let mailboxId: string;

beforeAll(async () => {
  mailboxId = (await connectedMailbox(ctx.app, ctx.owner.token, 'scale-sender@acme.test')).id;
});

/** A small deterministic PRNG (mulberry32): the same dataset on every run. */
function random(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rows<T> = { rows: T[] };
const rows = async <T>(query: ReturnType<typeof sql>) => ((await ctx.app.database.db.execute(query)) as unknown as Rows<T>).rows;

interface Contact {
  id: string;
  email: string;
  plan: string;
}
interface Consent {
  contactId: string;
  /** The order it was written in (consents.seq): on a tie of `at`, the later written wins. */
  seq: number;
  at: number;
  status: 'opted_in' | 'opted_out';
}

const VALID = /^[^@\s]+@[^@\s]+[.][^@\s]+$/;

/** What preflight must say, recounted one contact at a time from the generated rows. */
function bruteForce(audience: Contact[], consents: Consent[], suppressed: Map<string, Set<string>>, kind: string, topic: string | null) {
  const counts = { total: audience.length, eligible: 0, suppressed: 0, missingConsent: 0, invalid: 0 };
  for (const contact of audience) {
    const scopes = suppressed.get(contact.email.toLowerCase()) ?? new Set();
    const latest = consents
      .filter((c) => c.contactId === contact.id)
      .sort((x, y) => y.at - x.at || y.seq - x.seq)[0];
    if (!VALID.test(contact.email)) counts.invalid += 1;
    else if (scopes.has('all') || (topic !== null && scopes.has(`topic:${topic}`))) counts.suppressed += 1;
    else if (kind === 'marketing' && latest?.status !== 'opted_in') counts.missingConsent += 1;
    else counts.eligible += 1;
  }
  return counts;
}

describe('preflight at scale', () => {
  const contacts: Contact[] = [];
  const consents: Consent[] = [];
  const suppressed = new Map<string, Set<string>>();

  beforeAll(async () => {
    const rand = random(14);
    const pick = <T>(items: T[]) => items[Math.floor(rand() * items.length)]!;
    const workspaceId = ctx.owner.workspaceId;
    const otherWorkspace = (await rows<{ id: string }>(sql`insert into workspaces (name) values ('Other') returning id`))[0]!.id;

    const emails = new Set<string>();
    for (let i = 0; emails.size < 400; i += 1) {
      const local = `p${i}`;
      const shape = rand();
      let email = `${local}@example.test`;
      if (shape < 0.15) email = `${local.toUpperCase()}@Example.TEST`;
      else if (shape < 0.2) email = pick([`${local}-no-at.example.test`, `${local}@nodot`, `${local} space@example.test`, `@${local}.test`, `${local}@@example.test`]);
      emails.add(email);
    }
    for (const email of emails) {
      const [row] = await rows<{ id: string }>(sql`
        insert into contacts (workspace_id, email, attributes) values (${workspaceId}::uuid, ${email}, ${JSON.stringify({ plan: pick(['pro', 'free']) })}::jsonb)
        returning id`);
      contacts.push({ id: row!.id, email, plan: '' });
    }
    const planOf = await rows<{ id: string; plan: string }>(sql`select id, attributes ->> 'plan' as plan from contacts where workspace_id = ${workspaceId}::uuid`);
    for (const c of contacts) c.plan = planOf.find((p) => p.id === c.id)!.plan;

    // Consents at a handful of instants, so that ties happen and the id must decide.
    const instants = [0, 1, 2].map((d) => Date.UTC(2026, 0, 1 + d));
    for (const contact of contacts) {
      const records = Math.floor(rand() * 4);
      for (let r = 0; r < records; r += 1) {
        const at = pick(instants);
        const status = rand() < 0.6 ? 'opted_in' : 'opted_out';
        const [row] = await rows<{ seq: string }>(sql`
          insert into consents (workspace_id, contact_id, status, source, policy_version, actor, at)
          values (${workspaceId}::uuid, ${contact.id}::uuid, ${status}, 'test', '1', 'test', ${new Date(at).toISOString()}::timestamptz) returning seq::text`);
        consents.push({ contactId: contact.id, seq: Number(row!.seq), at, status });
      }
    }
    for (const contact of contacts) {
      const roll = rand();
      const scopes = roll < 0.1 ? ['all'] : roll < 0.2 ? ['topic:news'] : roll < 0.25 ? ['topic:other', 'topic:news'] : roll < 0.3 ? ['topic:other'] : [];
      for (const scope of scopes) {
        // The suppression list stores addresses as they came: in another case than the contact's.
        const stored = rand() < 0.5 ? contact.email.toUpperCase() : contact.email.toLowerCase();
        await ctx.app.database.db.execute(sql`insert into suppressions (workspace_id, email, scope, reason) values (${workspaceId}::uuid, ${stored}, ${scope}, 'manual')`);
        const key = contact.email.toLowerCase();
        suppressed.set(key, new Set([...(suppressed.get(key) ?? []), scope]));
      }
      // Another workspace's opt-outs never count here.
      if (rand() < 0.3) {
        await ctx.app.database.db.execute(sql`insert into suppressions (workspace_id, email, scope, reason) values (${otherWorkspace}::uuid, ${contact.email}, 'all', 'manual')`);
      }
    }
  }, 120_000);

  const cases: { name: string; kind: 'marketing' | 'transactional'; topic: string | null; audience: 'ids' | 'segment' }[] = [
    { name: 'marketing with a topic, by contact ids', kind: 'marketing', topic: 'news', audience: 'ids' },
    { name: 'marketing without a topic, by segment', kind: 'marketing', topic: null, audience: 'segment' },
    { name: 'marketing of another topic, by segment', kind: 'marketing', topic: 'other', audience: 'segment' },
    { name: 'transactional with a topic, by contact ids', kind: 'transactional', topic: 'news', audience: 'ids' },
  ];
  for (const c of cases) {
    it(`P-10 counts exactly what a brute-force recount says: ${c.name}`, async () => {
      const audience = c.audience === 'ids' ? contacts.filter((_, i) => i % 3 !== 0) : contacts.filter((x) => x.plan === 'pro');
      const input: CampaignInput = {
        name: c.name,
        kind: c.kind,
        mailboxId,
        subject: 'Hello',
        text: 'Hi',
        ...(c.topic ? { topic: c.topic } : {}),
        audience: c.audience === 'ids' ? { contactIds: audience.map((x) => x.id) } : { segment: { all: [{ field: 'attributes.plan', op: 'eq', value: 'pro' }] } },
        steps: [],
      };
      const auth = { userId: ctx.owner.userId, workspaceId: ctx.owner.workspaceId, role: 'owner' as const };
      const campaign = await ctx.app.services.campaigns.create(auth, input);
      // The service, not HTTP: after seconds of PGlite work on this thread, a kept-alive socket
      // can be closed by the server's idle timer just as it is reused (a harness race, not ours).
      const counts = await ctx.app.services.campaigns.preflight(auth, campaign.id);
      const expected = bruteForce(audience, consents, suppressed, c.kind, c.topic);
      expect(expected.total).toBeGreaterThan(100);
      // The dataset must exercise every outcome, or the comparison proves little.
      for (const key of c.kind === 'marketing' ? (['eligible', 'suppressed', 'missingConsent', 'invalid'] as const) : (['eligible', 'suppressed', 'invalid'] as const)) {
        expect(expected[key], key).toBeGreaterThan(0);
      }
      expect({ total: counts.total, eligible: counts.eligible, suppressed: counts.suppressed, missingConsent: counts.missingConsent, invalid: counts.invalid }).toEqual(expected);
    });
  }
});

describe('audiences beyond 65,535 contact ids', () => {
  it('preflight counts and launch writes every contact of a 66,000-id audience', async () => {
    const auth = { userId: ctx.owner.userId, workspaceId: ctx.owner.workspaceId, role: 'owner' as const };
    // Just past the 65,535 bind parameters one statement may carry: each id bound alone would fail.
    const size = 66_000;
    await ctx.app.database.db.execute(sql`
      insert into contacts (workspace_id, email, attributes)
      select ${auth.workspaceId}::uuid, 'big' || g || '@example.test', '{"batch":"big"}'::jsonb from generate_series(1, ${size}) g`);
    const ids = (await rows<{ id: string }>(sql`select id::text from contacts where workspace_id = ${auth.workspaceId}::uuid and attributes ->> 'batch' = 'big'`)).map(
      (r) => r.id,
    );
    expect(ids).toHaveLength(size);
    const campaign = await scheduledReceipt(ctx.app.services.campaigns, auth, { name: 'big', mailboxId, contactIds: ids });
    const preflight = await ctx.app.services.campaigns.preflight(auth, campaign.id);
    expect(preflight).toMatchObject({ total: size, eligible: size, suppressed: 0, invalid: 0 });
    const launched = await ctx.app.services.campaigns.launch(auth, campaign.id, {});
    expect(launched.progress.queued).toBe(size);
  }, 300_000);
});
