import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { messages } from '../../src/db/schema.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createSentCopies, type SentCopies, type SentCopyDeps } from '../../src/gmail/sent-copy.js';
import { createSyncRepo } from '../../src/gmail/sync.repo.js';
import { createLogger } from '../../src/logger.js';
import { createMessagesRepo } from '../../src/messages/messages.repo.js';
import { createMessagesService } from '../../src/messages/messages.service.js';
import { createAddressHasher } from '../../src/suppression/address-hash.js';
import { expect } from 'vitest';
import { connectedMailbox } from './gmail.js';
import type { TestApp } from './test-app.js';

/**
 * What the tests of send recovery's sent copies share (gmail/sent-copy.ts): the app's parts
 * wired as app.ts wires them, some replaced, and 1:1 sends whose worker died.
 */
export function sentCopyFixtures(get: () => { app: TestApp; token: string; workspaceId: string }) {
  const db = () => get().app.database.db;
  const hasher = () => createAddressHasher(get().app.config.privacy.suppressionHashKey);

  /** The app's sent copies, with some parts replaced. */
  function sentCopiesWith(overrides: Partial<SentCopyDeps> = {}): SentCopies {
    const { app } = get();
    const syncRepo = createSyncRepo(db(), hasher());
    return createSentCopies({
      withGmail: (mailbox, work) => app.services.mailboxes.withGmail(mailbox, work),
      seenBySync: (messageRowId) => syncRepo.seenSend(messageRowId),
      claimedAt: (messageRowId) => syncRepo.sendClaimedAt(messageRowId),
      heldGmailIds: (mailboxId, gmailIds) => syncRepo.heldGmailIds(mailboxId, gmailIds),
      requestSync: (mailboxId) => app.services.sync.syncInBackground(mailboxId),
      logger: createLogger('silent'),
      ...overrides,
    });
  }

  const messageRow = async (id: string) => (await db().select().from(messages).where(eq(messages.id, id)))[0]!;

  /** A 1:1 send from this mailbox whose worker died: `sending`, its lease expired a minute ago. */
  async function openOneToOne(subject: string, from: { id: string; email: string }) {
    get().app.sandbox.control.createMailbox({ email: 'someone@contoso.test' });
    const [row] = await db()
      .insert(messages)
      .values({
        workspaceId: get().workspaceId,
        mailboxId: from.id,
        direction: 'outbound',
        status: 'sending',
        rfc822MessageId: `${randomUUID()}@acme.test`,
        subject,
        fromAddress: from.email,
        toAddresses: ['someone@contoso.test'],
        leaseOwner: 'dead-worker',
        leaseExpiresAt: new Date(Date.now() - 60_000),
      })
      .returning();
    return { ...row!, rfc822MessageId: row!.rfc822MessageId! };
  }

  /** The 1:1 recovery as the app wires it, its looks a millisecond apart. */
  function oneToOneRecovery(workerId: string, sentCopies: SentCopies = get().app.services.sentCopies) {
    return createMessagesService({
      repo: createMessagesRepo(db(), hasher()),
      mailboxes: get().app.services.mailboxes,
      mailboxRepo: createMailboxesRepo(db()),
      sentCopies,
      logger: createLogger('silent'),
      workerId,
      resolveDelayMs: 1,
    });
  }

  /** A mailbox connected with sync, its first pass (a full listing) done, so that later passes read history; the workspace can send campaigns. */
  async function syncedSender(email: string) {
    const { app, token } = get();
    const mailbox = await connectedMailbox(app, token, email, { sync: true });
    await app.api('PATCH', '/api/workspace', { token, json: { postalAddress: 'Acme Inc., 1 Main St, Springfield' } });
    expect((await app.services.sync.syncMailbox(mailbox.id)).status).toBe('synced');
    return mailbox;
  }

  return { sentCopiesWith, messageRow, openOneToOne, oneToOneRecovery, syncedSender };
}
