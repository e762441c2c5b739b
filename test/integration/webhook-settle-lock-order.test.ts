import { sql } from 'drizzle-orm';
import pg from 'pg';
import { expect, it } from 'vitest';
import { rowsOf } from '../../src/db/pg-array.js';
import { createTokenCipher } from '../../src/gmail/token-cipher.js';
import { createLogger } from '../../src/logger.js';
import { createPurgeRepo } from '../../src/privacy/purge.repo.js';
import { createDeliveryWorker } from '../../src/webhooks/delivery-worker.js';
import type { AttemptResult } from '../../src/webhooks/sender.js';
import { secretContext } from '../../src/webhooks/webhooks.service.js';
import { createWebhooksRepo } from '../../src/webhooks/webhooks.repo.js';
import { waitForLockWaiters } from '../helpers/lock-waiters.js';
import { acceptInvitation, signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * Settling a webhook attempt locked the endpoint's row, then (the attempt log's foreign key) the
 * workspace's key; a workspace's purge deletes the workspace's row, then its cascade deletes the
 * endpoint. Met in between — the settle holding the endpoint, the purge the workspace — each
 * waited for the other: a deadlock (40P01), the purge or the attempt's bookkeeping given up. The
 * settle now takes the workspace's key first, the order of every change that holds the
 * workspace's row and then touches its endpoints (the purge; a member's removal, which turns off
 * the endpoints they vouch for: there the removal was the victim, a 409 to the admin).
 *
 * Forced, not hoped for: a third session holds the delivery's row as the settle begins, so the
 * settle stops right after its first lock; the purge then runs as far as it can, and the third
 * session lets go. Server only: PGlite runs one transaction at a time, nothing interleaves.
 */
const onServer = Boolean(process.env.TEST_DATABASE_URL);
const ctx = useAppWithOwner();
const db = () => ctx.app.database.db;
const query = async <T = Record<string, unknown>>(s: ReturnType<typeof sql>) => rowsOf<T>(await db().execute(s));

/** An endpoint of the workspace (vouched for by `vouchedBy`), one event and its delivery, due now. */
async function pendingDelivery(workspaceId: string, vouchedBy: string | null = null) {
  const cipher = createTokenCipher(ctx.app.config.tokenEncryptionKeys);
  const [endpoint] = await query<{ id: string }>(sql`
    insert into webhook_endpoints (workspace_id, url, event_types, secret_ciphertext, vouched_by)
    values (${workspaceId}::uuid, 'https://hooks.example.test/in', '{suppression.added}', 'sealed', ${vouchedBy}::uuid) returning id`);
  await db().execute(sql`update webhook_endpoints set secret_ciphertext = ${cipher.encrypt('whsec_test', secretContext(endpoint!.id, 'secret'))} where id = ${endpoint!.id}::uuid`);
  const [event] = await query<{ id: string }>(sql`
    insert into webhook_events (workspace_id, type, occurred_at, data) values (${workspaceId}::uuid, 'suppression.added', now(), '{}'::jsonb) returning id`);
  const [delivery] = await query<{ id: string }>(sql`
    insert into webhook_deliveries (workspace_id, endpoint_id, event_id, next_attempt_at)
    values (${workspaceId}::uuid, ${endpoint!.id}::uuid, ${event!.id}::uuid, now() - interval '1 second') returning id`);
  return { deliveryId: delivery!.id, endpointId: endpoint!.id };
}

/**
 * A worker's tick settles the delivery while `meanwhile` runs: the settle stops right after its
 * first lock (a third session holds the delivery's row), `meanwhile` starts its change and waits
 * too, and the third session lets go. Resolves to `meanwhile`'s outcome and the worker's error log.
 */
async function settleAgainst<T>(deliveryId: string, meanwhile: () => Promise<T>) {
  const url = (ctx.app.database as unknown as { url: string }).url;
  const holder = new pg.Client({ connectionString: url });
  const watcher = new pg.Client({ connectionString: url });
  await Promise.all([holder.connect(), watcher.connect()]);
  const logged: string[] = [];
  try {
    // The receiver answers once the holder has the delivery's row: the settle then waits for it.
    const send = async (): Promise<AttemptResult> => {
      await holder.query('begin');
      await holder.query('select id from webhook_deliveries where id = $1 for update', [deliveryId]);
      return { outcome: 'delivered', responseStatus: 200, latencyMs: 1 };
    };
    const worker = createDeliveryWorker({
      repo: createWebhooksRepo(db()),
      cipher: createTokenCipher(ctx.app.config.tokenEncryptionKeys),
      send,
      logger: createLogger('error', { write: (line: string) => void logged.push(line) }),
      workerId: 'settle-lock-order',
      timeoutMs: 1_000,
      retryBaseMs: 60_000,
      retryWindowMs: 3_600_000,
      disableAfterFailures: 50,
      disableAfterMs: 3_600_000,
    });
    const ticked = worker.tick();
    await waitForLockWaiters(watcher, 1);
    const change = meanwhile().then((r) => ({ ok: true as const, r }), (error: unknown) => ({ ok: false as const, error }));
    await waitForLockWaiters(watcher, 2);
    await holder.query('commit');
    expect(await ticked).toBe(1);
    const outcome = await change;
    return { outcome, bookkeepingFailures: logged.filter((line) => line.includes('bookkeeping failed')) };
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await Promise.all([holder.end(), watcher.end()]);
  }
}

it.runIf(onServer)("a workspace's purge meeting an attempt being settled waits for it, no deadlock (server)", async () => {
  // A workspace of its own, closed: the purge's candidate.
  const closing = await signUp(ctx.app);
  const { deliveryId } = await pendingDelivery(closing.workspaceId);
  await db().execute(sql`update workspaces set deleted_at = now() where id = ${closing.workspaceId}::uuid`);

  const { outcome, bookkeepingFailures } = await settleAgainst(deliveryId, () => createPurgeRepo(db()).transaction((tx) => tx.purgeWorkspace(closing.workspaceId)));
  expect(outcome.ok ? undefined : outcome.error).toBeUndefined();
  expect(bookkeepingFailures).toEqual([]);
  expect(outcome.ok && outcome.r?.removed.workspaces).toBe(1);
  expect(await query(sql`select id from webhook_deliveries where id = ${deliveryId}::uuid`)).toEqual([]);
  expect(await query(sql`select id from webhook_delivery_attempts where delivery_id = ${deliveryId}::uuid`)).toEqual([]);
}, 30_000);

it.runIf(onServer)("an admin removing the member who vouches for an endpoint while its attempt is settled: 204, no deadlock (server)", async () => {
  const invite = await ctx.app.api('POST', '/api/invitations', { token: ctx.owner.token, json: { email: `voucher-${Date.now()}@acme.test`, role: 'admin' } });
  expect(invite.status, invite.text).toBe(201);
  const accepted = await acceptInvitation(ctx.app, { token: invite.body.token, password: 'a long enough password' });
  expect(accepted.status, accepted.text).toBe(201);
  const memberId = accepted.body.user.id as string;
  const { deliveryId, endpointId } = await pendingDelivery(ctx.owner.workspaceId, memberId);

  const { outcome, bookkeepingFailures } = await settleAgainst(deliveryId, () => ctx.app.api('DELETE', `/api/members/${memberId}`, { token: ctx.owner.token }));
  expect(outcome.ok && outcome.r.status, outcome.ok ? outcome.r.text : String(outcome.error)).toBe(204);
  expect(bookkeepingFailures).toEqual([]);
  // The attempt was recorded first; the removal then turned the endpoint off.
  expect(await query(sql`select status::text as status from webhook_deliveries where id = ${deliveryId}::uuid`)).toEqual([{ status: 'delivered' }]);
  expect(await query(sql`select enabled from webhook_endpoints where id = ${endpointId}::uuid`)).toEqual([{ enabled: false }]);
}, 30_000);
