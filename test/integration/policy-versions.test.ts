import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/connect.js';
import { LIMITED_USE_DISCLOSURE } from '../../src/gmail/disclosure.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-db.js';

/* P-18: policy versions are published once, shown from the database, and recorded with each connection. */

let database: Database;
let first: TestApp;
const run = async <T>(statement: ReturnType<typeof sql>) => ((await database.db.execute(statement)) as unknown as { rows: T[] }).rows;

beforeAll(async () => {
  database = await createTestDatabase();
  first = await startTestApp({ database });
});
afterAll(async () => {
  await first?.close();
  await database?.close();
});

describe('P-18 policy versions', () => {
  it('P-18 the configured version and its disclosure are published (recorded) the first time they are needed, and shown from the database', async () => {
    await first.services.policyVersions.currentDisclosure();
    const rows = await run<{ version: string; published_by: string; disclosure: { title: string; points: string[] }; published_at: Date }>(sql`select * from policy_versions`);
    expect(rows).toEqual([expect.objectContaining({ version: first.config.policyVersion, published_by: 'system:boot', disclosure: { title: LIMITED_USE_DISCLOSURE.title, points: [...LIMITED_USE_DISCLOSURE.points] } })]);
    expect(rows[0]!.published_at).toBeTruthy();

    const owner = await signUp(first);
    const start = await first.api('GET', '/api/gmail/connect', { token: owner.token, headers: { accept: 'application/json' } });
    expect(start.body.disclosure).toEqual({ version: first.config.policyVersion, title: LIMITED_USE_DISCLOSURE.title, points: [...LIMITED_USE_DISCLOSURE.points] });
  });

  it('P-18 a published version never changes and is never removed; publishing it again is refused', async () => {
    const version = first.config.policyVersion;
    await expect(database.db.execute(sql`update policy_versions set disclosure = '{}'::jsonb where version = ${version}`)).rejects.toThrow();
    await expect(database.db.execute(sql`delete from policy_versions where version = ${version}`)).rejects.toThrow();
    expect(await first.services.policyVersions.publish(version, { title: 'Other', points: ['other'] }, 'operator:test')).toBe(false);
    expect((await run<{ title: string }>(sql`select disclosure->>'title' as title from policy_versions where version = ${version}`))[0]!.title).toBe(LIMITED_USE_DISCLOSURE.title);
  });

  it('P-18 a new version, once in force, is the disclosure shown; the connection records it, and /api/mailboxes and /api/me show which version the user accepted', async () => {
    const text = { title: 'How inboxtrail uses your Gmail (2027)', points: ['NEW-POLICY-POINT: we read only what you ask us to.'] };
    expect(await first.services.policyVersions.publish('2027-01-01', text, 'operator:test')).toBe(true);
    const second = await startTestApp({ database, env: { POLICY_VERSION: '2027-01-01' } });
    try {
      const owner = await signUp(second);
      const before = await second.api('GET', '/api/me', { token: owner.token });
      expect(before.body.policy).toMatchObject({ currentVersion: '2027-01-01', acceptedVersion: null });

      const start = await second.api('GET', '/api/gmail/connect', { token: owner.token, headers: { accept: 'application/json' } });
      expect(start.body.disclosure).toEqual({ version: '2027-01-01', ...text });
      const page = await second.api('GET', '/api/gmail/connect', { token: owner.token });
      expect(page.text).toContain('NEW-POLICY-POINT');

      const mailbox = await connectedMailbox(second, owner.token, 'newpolicy@acme.test');
      const listed = (await second.api('GET', '/api/mailboxes', { token: owner.token })).body.mailboxes.find((m: { id: string }) => m.id === mailbox.id);
      expect(listed).toMatchObject({ policyVersion: '2027-01-01', disclosureVersion: '2027-01-01' });
      const me = await second.api('GET', '/api/me', { token: owner.token });
      expect(me.body.policy).toMatchObject({ currentVersion: '2027-01-01', acceptedVersion: '2027-01-01', mailboxes: [expect.objectContaining({ mailboxId: mailbox.id, version: '2027-01-01' })] });

      const [connected] = await run<{ detail: Record<string, unknown> }>(sql`select detail from audit_log where action = 'mailbox.connected' and subject_id = ${mailbox.id}`);
      expect(connected!.detail).toMatchObject({ policyVersion: '2027-01-01', scopes: expect.arrayContaining(['https://www.googleapis.com/auth/gmail.send']) });
    } finally {
      await second.close();
    }
  });
});
