import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mailboxes, messages } from '../../src/db/schema.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, type TestApp } from '../helpers/test-app.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * A resync killed with SIGKILL part way (a deploy, the host), then done by another process: it
 * goes on after the checkpoint the dead process recorded (gmail/sync.service.ts), reads the rest
 * once and keeps everything. A real worker process (`src/main.ts`, tsx) syncs through the sandbox
 * that runs here, over the same PostgreSQL server database; its reads are paced (quota) so that
 * the kill lands mid-resync. Needs the server: two processes cannot share an in-process PGlite.
 */
const server = process.env.TEST_DATABASE_URL;
const MAILBOX = 'resync-killed@acme.test';
const CONTACT = 'kim@contoso.test';
const MESSAGES = 1_500;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(!server)('kill -9 of a process in the middle of a resync (PostgreSQL server)', () => {
  let app: TestApp;
  let databaseUrl: string;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-resync-kill-'));

  beforeAll(async () => {
    const database = await createTestDatabase();
    databaseUrl = database.url!;
    app = await startTestApp({ database });
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await app?.database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('the next process goes on after the dead one\'s checkpoint, and everything is kept', { timeout: 180_000 }, async () => {
    const owner = await signUp(app);
    expect((await app.api('POST', '/api/contacts', { token: owner.token, json: { email: CONTACT } })).status).toBe(201);
    const mailbox = await connectedMailbox(app, owner.token, MAILBOX, { sync: true });
    expect(await app.services.sync.syncMailbox(mailbox.id)).toMatchObject({ status: 'synced' });
    for (let i = 0; i < MESSAGES; i += 1) {
      await app.sandbox.control.deliverInbound(MAILBOX, { from: i % 10 === 0 ? CONTACT : `stranger-${i}@elsewhere.test`, subject: `away ${i}`, text: 'x' });
    }
    app.sandbox.control.truncateHistory(MAILBOX);
    const reads = () => app.sandbox.control.calls({ mailbox: MAILBOX, endpoint: 'get' }).length;
    const checkpoint = async () => (await app.database.db.select({ at: mailboxes.resyncCheckpoint }).from(mailboxes).where(eq(mailboxes.id, mailbox.id)))[0]!.at;

    const { child, exited, output } = startWorkerProcess(app, {
      databaseUrl,
      dataDir,
      // It polls the mailbox at once and resyncs it: 5 quota units a read, ~200 reads a second.
      env: { GMAIL_SYNC_POLL_SECONDS: '1', GMAIL_QUOTA_UNITS_PER_MINUTE: '60000' },
    });

    // Killed once it recorded its second checkpoint (400 messages read, oldest first).
    const deadline = Date.now() + 90_000;
    let first: string | undefined;
    for (;;) {
      const at = await checkpoint();
      if (at && first && at.throughId !== first) break;
      if (at) first ??= at.throughId;
      if (Date.now() > deadline) throw new Error(`no second checkpoint: ${output()}`);
      await sleep(20);
    }
    child.kill('SIGKILL');
    await exited;
    const readByTheDead = reads();
    const left = await checkpoint();
    expect(left).not.toBeNull();

    // Its sync lease would expire in two minutes: now.
    await app.database.db.execute(sql`update mailbox_limits set sync_lease_until = now() - interval '1 second' where mailbox_id = ${mailbox.id}::uuid`);
    expect(await app.services.sync.syncMailbox(mailbox.id)).toMatchObject({ status: 'synced', resynced: true });
    const readAfter = reads() - readByTheDead;
    // The 400 (or more) the checkpoint covers are not read again: at most the 1,100 after them.
    // From the start it read 1,460 (all but what the dead process had stored).
    expect(readAfter).toBeLessThanOrEqual(MESSAGES - 400);
    const kept = await app.database.db.select({ subject: messages.subject }).from(messages).where(eq(messages.mailboxId, mailbox.id));
    const subjects = new Set(kept.map((m) => m.subject));
    for (let i = 0; i < MESSAGES; i += 10) expect(subjects.has(`away ${i}`), `away ${i}`).toBe(true);
    expect(await checkpoint()).toBeNull();
  });
});
