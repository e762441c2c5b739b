import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { mailboxes } from '../../src/db/schema.js';
import type { ActiveFault } from '../../src/sandbox/faults.js';
import { ALICE, BOB, useSyncApp } from '../helpers/gmail-sync.js';

/*
 * A resync reads every message since the last sync, oldest first (up to 50,000): a pass that
 * fails part way — Gmail failing for a while, the process killed by a deploy — used to start
 * over from the first message, so a large resync could keep failing at the same place and
 * never finish, the mailbox's sequences waiting all along. It now records how far it got
 * (`mailboxes.resync_checkpoint`, every 200 messages read), and the next try of the same
 * window goes on after that.
 */
const ctx = useSyncApp();
const { sync, syncedRows, mailboxView } = ctx;
const MESSAGES = 1_000;
const reads = () => ctx.app.sandbox.control.calls({ mailbox: ALICE, endpoint: 'get' }).length;
const checkpointOf = async () => (await ctx.app.database.db.select({ at: mailboxes.resyncCheckpoint }).from(mailboxes).where(eq(mailboxes.id, ctx.alice.id)))[0]!.at;

describe('a resync that fails part way', () => {
  it('goes on after what it read, reads each message once in all, and keeps everything', { timeout: 120_000 }, async () => {
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: false });
    const before = (await syncedRows(ctx.alice.id)).length;
    // Mostly strangers' mail (read, not kept), every tenth message from a contact (kept).
    for (let i = 0; i < MESSAGES; i += 1) {
      await ctx.app.sandbox.control.deliverInbound(ALICE, { from: i % 10 === 0 ? BOB : `stranger-${i}@elsewhere.test`, subject: `while away ${i}`, text: 'x' });
    }
    ctx.app.sandbox.control.truncateHistory(ALICE);

    // Gmail starts failing every read once the resync has read half of the window.
    const start = reads();
    let fault: ActiveFault | undefined;
    const watch = setInterval(() => {
      if (!fault && reads() - start >= MESSAGES / 2) fault = ctx.app.sandbox.control.injectFault({ kind: 'backendError', endpoint: 'get', mailbox: ALICE, times: 'always' });
    }, 1);
    let failed;
    try {
      failed = await sync(ctx.alice.id);
    } finally {
      clearInterval(watch);
      if (fault) ctx.app.sandbox.control.removeFault(fault.id);
    }
    expect(failed).toMatchObject({ status: 'failed' });
    const firstTry = reads() - start;
    expect(await checkpointOf()).toMatchObject({ throughId: expect.any(String) });

    const secondStart = reads();
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', resynced: true });
    const secondTry = reads() - secondStart;
    // The first try read about half (its reads failing from then on) and recorded two checkpoints
    // (200, 400): the second goes on after the 400th, reading the rest but what the first stored.
    // From the start again, it read 950 (all but the contact's 50, stored by then).
    expect(firstTry).toBeGreaterThanOrEqual(MESSAGES / 2);
    expect(secondTry).toBeLessThanOrEqual(MESSAGES - 400);
    const subjects = (await syncedRows(ctx.alice.id)).map((r) => r.subject);
    expect(subjects.length).toBe(before + MESSAGES / 10);
    for (let i = 0; i < MESSAGES; i += 10) expect(subjects).toContain(`while away ${i}`);
    expect(await checkpointOf()).toBeNull();
    const view = await mailboxView(ctx.alice.id);
    expect(view.sync.lastError).toBeNull();
    expect(view.sync.lastGap).toBeNull();
    // A sync after it reads history again.
    expect(await sync(ctx.alice.id)).toMatchObject({ status: 'synced', mode: 'incremental' });
  });
});
