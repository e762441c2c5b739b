import { Readable } from 'node:stream';
import { and, eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { consents, contacts } from '../../src/db/schema.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();
const importCsv = (csv: string, token = ctx.owner.token) =>
  ctx.app.api('POST', '/api/contacts/import', { token, body: csv, headers: { 'content-type': 'text/csv' } });
const db = () => ctx.app.database.db;

async function historyOf(email: string) {
  const [contact] = await db().select().from(contacts).where(and(eq(contacts.workspaceId, ctx.owner.workspaceId), eq(contacts.email, email)));
  if (!contact) return { contact: undefined, history: [] };
  const history = await db().select().from(consents).where(eq(consents.contactId, contact.id)).orderBy(consents.at);
  return { contact, history };
}

describe('CSV import with a consent column', () => {
  it('P-10 opted_in rows are recorded as consent records (source, time, policy version) and make those contacts eligible for marketing mail', async () => {
    const csv = [
      'email,first_name,consent,consent_source,consent_at',
      'ada@example.com,Ada,opted_in,webinar signup,2026-03-01T09:30:00Z',
      'bob@example.com,Bob,opted_in,,',
      'cy@example.com,Cy,,,',
      'dee@example.com,Dee,opted_out,unsubscribed by phone,2026-04-02',
    ].join('\n');
    const res = await importCsv(csv);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ rows: 4, created: 4, consents: 3, failed: 0 });

    const ada = await historyOf('ada@example.com');
    expect(ada.contact!.attributes).toEqual({});
    expect(ada.history).toMatchObject([
      { status: 'opted_in', source: 'webinar signup', policyVersion: ctx.app.config.policyVersion, actor: `import:user:${ctx.owner.userId}`, at: new Date('2026-03-01T09:30:00Z') },
    ]);
    expect((await historyOf('bob@example.com')).history).toMatchObject([{ status: 'opted_in', source: 'csv import' }]);
    expect((await historyOf('cy@example.com')).history).toEqual([]);
    expect((await historyOf('dee@example.com')).history).toMatchObject([{ status: 'opted_out', at: new Date('2026-04-02T00:00:00Z') }]);

    // A marketing campaign to all four: only the two opt-ins are eligible.
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'importer@acme.test');
    const ids = await Promise.all(['ada', 'bob', 'cy', 'dee'].map(async (n) => (await historyOf(`${n}@example.com`)).contact!.id));
    const campaign = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'News', kind: 'marketing', mailboxId: mailbox.id, subject: 'News', text: 'Hi', contactIds: ids },
    });
    expect(campaign.status, campaign.text).toBe(201);
    const preflight = await ctx.app.api('POST', `/api/campaigns/${campaign.body.id}/preflight`, { token: ctx.owner.token });
    expect(preflight.body).toMatchObject({ total: 4, eligible: 2, missingConsent: 2 });
  });

  it('P-11 a later file withdraws consent by appending; the same file again appends nothing', async () => {
    await importCsv('email,consent\neve@example.com,opted_in\n');
    const withdrawn = await importCsv('email,consent,consent_source\neve@example.com,opted_out,crm sync\n');
    expect(withdrawn.body).toMatchObject({ consents: 1, failed: 0 });
    const again = await importCsv('email,consent,consent_source\neve@example.com,opted_out,crm sync\n');
    expect(again.body).toMatchObject({ consents: 0, unchanged: 1 });
    const { contact, history } = await historyOf('eve@example.com');
    expect(history.map((h) => h.status)).toEqual(['opted_in', 'opted_out']);
    const shown = await ctx.app.api('GET', `/api/contacts/${contact!.id}`, { token: ctx.owner.token });
    expect(shown.body.consent).toMatchObject({ status: 'opted_out', source: 'crm sync' });
  });

  it('P-11 of two records at the same time, the one written later wins: a later file withdrawing consent at the same date always does', async () => {
    const people = Array.from({ length: 12 }, (_, i) => `tie${i}@example.com`);
    const file = (status: string) => ['email,consent,consent_at', ...people.map((email) => `${email},${status},2026-12-01`)].join('\n');
    expect((await importCsv(file('opted_in'))).body).toMatchObject({ consents: 12, failed: 0 });
    expect((await importCsv(file('opted_out'))).body).toMatchObject({ consents: 12, failed: 0 });
    const ids = await Promise.all(people.map(async (email) => (await historyOf(email)).contact!.id));
    const shown = await Promise.all(ids.map(async (id) => (await ctx.app.api('GET', `/api/contacts/${id}`, { token: ctx.owner.token })).body.consent.status));
    expect(shown).toEqual(Array(12).fill('opted_out'));

    // And what a campaign decides by (campaigns/eligibility-sql.ts): nobody is eligible.
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'ties@acme.test');
    const campaign = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'Ties', kind: 'marketing', mailboxId: mailbox.id, subject: 'News', text: 'Hi', contactIds: ids },
    });
    const preflight = await ctx.app.api('POST', `/api/campaigns/${campaign.body.id}/preflight`, { token: ctx.owner.token });
    expect(preflight.body).toMatchObject({ total: 12, eligible: 0, missingConsent: 12 });
  });

  it('P-11 a consent time a few minutes ahead (clock skew) is stored as now: a withdrawal right after it still wins', async () => {
    const ahead = new Date(Date.now() + 4 * 60_000).toISOString();
    const before = Date.now();
    expect((await importCsv(`email,consent,consent_at\nfut@example.com,opted_in,${ahead}\n`)).body).toMatchObject({ consents: 1, failed: 0 });
    const { contact, history } = await historyOf('fut@example.com');
    expect(history[0]!.at.getTime()).toBeLessThanOrEqual(Date.now());
    expect(history[0]!.at.getTime()).toBeGreaterThanOrEqual(before - 1000);
    const withdrawn = await ctx.app.api('POST', `/api/contacts/${contact!.id}/consents`, { token: ctx.owner.token, json: { status: 'opted_out', source: 'phone call' } });
    expect(withdrawn.status).toBe(201);
    expect((await ctx.app.api('GET', `/api/contacts/${contact!.id}`, { token: ctx.owner.token })).body.consent.status).toBe('opted_out');
  });

  it('bad consent values are row errors, and those rows change nothing', async () => {
    const csv = [
      'email,consent,consent_at',
      'fay@example.com,yes,',
      'gus@example.com,opted_in,next tuesday',
      'hal@example.com,opted_in,2999-01-01',
      'ivy@example.com,,2026-01-01',
      'jo@example.com,OPTED_IN,2026-01-01',
      // Days that do not exist: refused, never rolled over to another day (Date makes 2026-02-30 the 2nd of March).
      'max@example.com,opted_in,2026-02-30',
      'ned@example.com,opted_in,2026-02-29T10:00:00Z',
      'oli@example.com,opted_in,2024-02-29',
    ].join('\n');
    const res = await importCsv(csv);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ rows: 8, created: 2, consents: 2, failed: 6 });
    expect(res.body.errors).toEqual([
      { line: 2, code: 'invalid_consent', message: 'consent must be opted_in or opted_out' },
      { line: 3, code: 'invalid_consent_at', message: expect.stringContaining('consent_at') },
      { line: 4, code: 'invalid_consent_at', message: expect.stringContaining('consent_at') },
      { line: 5, code: 'invalid_consent', message: expect.stringContaining('without consent') },
      { line: 7, code: 'invalid_consent_at', message: expect.stringContaining('consent_at') },
      { line: 8, code: 'invalid_consent_at', message: expect.stringContaining('consent_at') },
    ]);
    for (const n of ['fay', 'gus', 'hal', 'ivy', 'max', 'ned']) expect((await historyOf(`${n}@example.com`)).contact).toBeUndefined();
    expect((await historyOf('oli@example.com')).history).toMatchObject([{ status: 'opted_in', at: new Date('2024-02-29T00:00:00Z') }]);
    expect((await historyOf('jo@example.com')).history).toMatchObject([{ status: 'opted_in' }]);

    // A row is named by the line it starts on, also after a value holding line breaks and an empty line.
    const multiline = await importCsv('email,consent_source,consent\nlen@example.com,"a\r\nsource over\nthree lines",maybe\n\nbad-address,x,opted_in\r\nmia@example.com,,never\n');
    expect(multiline.body.errors.map((e: { line: number; code: string }) => [e.line, e.code])).toEqual([
      [2, 'invalid_consent'],
      [6, 'invalid_email'],
      [7, 'invalid_consent'],
    ]);

    const headerless = await importCsv('email,consent_source\nkim@example.com,form\n');
    expect([headerless.status, headerless.body.error.code]).toEqual([400, 'validation_failed']);
  });

  it('an import UI may map columns itself: header → field, consent, attribute or ignore', async () => {
    const auth = { userId: ctx.owner.userId, workspaceId: ctx.owner.workspaceId, role: 'owner' as const };
    const csv = 'Courriel,Prénom,Accord,Origine,Entreprise,Notes\nlou@example.com,Lou,opted_in,salon,Acme,do not keep\n';
    const report = await ctx.app.services.contacts.importCsv(auth, Readable.from([csv]), {
      mapping: { Courriel: 'email', Prénom: 'firstName', Accord: 'consent', Origine: 'consentSource', Entreprise: 'attribute:company', Notes: 'ignore' },
    });
    expect(report).toMatchObject({ created: 1, consents: 1, failed: 0 });
    const { contact, history } = await historyOf('lou@example.com');
    expect(contact).toMatchObject({ firstName: 'Lou', attributes: { company: 'Acme' } });
    expect(history).toMatchObject([{ status: 'opted_in', source: 'salon' }]);
    await expect(ctx.app.services.contacts.importCsv(auth, Readable.from([csv]), { mapping: { Courriel: 'email', Notes: 'attribute:1bad' } })).rejects.toMatchObject({
      code: 'validation_failed',
    });
  });
});
