import { and, desc, eq, getTableColumns, inArray, sql } from 'drizzle-orm';
import { inTransaction, type Db } from '../db/connect.js';
import { pgArray, rowsOf } from '../db/pg-array.js';
import { webhookDeliveries, webhookDeliveryAttempts, webhookEndpoints, webhookEvents, workspaces, type RetiredSecret } from '../db/schema.js';
import { cursorTimestamp, olderThanCursor, type PageCursor } from '../http/cursor.js';
import { recordAudit, type AuditEntry } from '../privacy/audit.js';
import type { AttemptResult } from './sender.js';
import { lockLiveManager } from '../auth/member-lock.js';

export type WebhookEndpointRow = typeof webhookEndpoints.$inferSelect;
export type NewWebhookEndpoint = typeof webhookEndpoints.$inferInsert;
export type WebhookDeliveryRow = typeof webhookDeliveries.$inferSelect;
export type WebhookAttemptRow = typeof webhookDeliveryAttempts.$inferSelect;
export type DeliveryStatus = WebhookDeliveryRow['status'];

const ts = (at: Date) => sql`${at.toISOString()}::timestamptz`;

/** Advisory lock class of a workspace's endpoint count (second key: hashtext(workspace id)); "whep". */
const ENDPOINT_COUNT_LOCK_CLASS = 0x77686570;

/**
 * Shares of one claim (claimDue): no workspace ends up with more than `perWorkspace` requests
 * open, counting those the worker already has `open` (workspace id → how many).
 */
export interface ClaimFairness {
  perWorkspace?: number;
  open?: ReadonlyMap<string, number>;
  /** The same requests by endpoint (endpoint id → how many): a workspace's share goes round its endpoints. */
  openByEndpoint?: ReadonlyMap<string, number>;
}

/** A delivery a worker claimed, with what it needs to send it. */
export interface ClaimedDelivery {
  id: string;
  workspaceId: string;
  endpointId: string;
  eventId: string;
  attempt: number;
  createdAt: Date;
  url: string;
  secretCiphertext: string;
  retiredSecrets: RetiredSecret[];
  eventType: string;
  occurredAt: Date;
  data: Record<string, unknown>;
}

/** A jsonb column as a driver returns it: parsed already (node-postgres, PGlite) or as text. */
const jsonOf = <T>(value: unknown): T => (typeof value === 'string' ? JSON.parse(value) : value) as T;

/**
 * A member leaving or removed: the enabled endpoints they vouch for (set the URL of, or last
 * turned on) are turned off, in the caller's transaction (auth.service.ts removeMembership) — they
 * send the workspace's data where that member said. What they are owed waits, as for any disabled
 * endpoint, until an owner or admin turns them on again (and vouches for them). Resolves to their ids.
 */
export async function disableEndpointsVouchedBy(db: Db, workspaceId: string, userId: string, at: Date): Promise<string[]> {
  const rows = await db
    .update(webhookEndpoints)
    .set({ enabled: false, disabledAt: at })
    .where(and(eq(webhookEndpoints.workspaceId, workspaceId), eq(webhookEndpoints.vouchedBy, userId), eq(webhookEndpoints.enabled, true)))
    .returning({ id: webhookEndpoints.id });
  return rows.map((r) => r.id);
}

/** Endpoints and their delivery log, scoped by workspace (invariant 7); the worker's claims are not (it serves every workspace). */
function webhookQueries(db: Db) {
  return {
    /** Whether this user may vouch for an endpoint (a live owner or admin), locked until the transaction ends (auth/member-lock.ts). */
    lockVoucher(workspaceId: string, userId: string): Promise<boolean> {
      return lockLiveManager(db, workspaceId, userId);
    },

    /**
     * How many endpoints the workspace has, counted under a transaction-scoped lock of its
     * endpoint count: two creates at the limit take turns, and the second counts the first's
     * row. A lock of its own (no other path takes it), after the voucher's locks: no cycle.
     */
    async lockEndpointCount(workspaceId: string): Promise<number> {
      await db.execute(sql`select pg_advisory_xact_lock(${ENDPOINT_COUNT_LOCK_CLASS}::int, hashtext(${workspaceId}::text))`);
      const [row] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from webhook_endpoints where workspace_id = ${workspaceId}::uuid`));
      return Number(row!.n);
    },

    async insertEndpoint(values: NewWebhookEndpoint & { id: string }): Promise<WebhookEndpointRow> {
      const [row] = await db.insert(webhookEndpoints).values(values).returning();
      return row!;
    },

    /**
     * The endpoint; with `lock`, locked until the transaction ends: two rotations at once take
     * turns (neither's secret is lost).
     */
    async findEndpoint(workspaceId: string, id: string, options: { lock?: boolean } = {}): Promise<WebhookEndpointRow | undefined> {
      const query = db
        .select()
        .from(webhookEndpoints)
        .where(and(eq(webhookEndpoints.workspaceId, workspaceId), eq(webhookEndpoints.id, id)))
        .limit(1);
      const [row] = options.lock ? await query.for('update') : await query;
      return row;
    },

    async listEndpoints(workspaceId: string): Promise<WebhookEndpointRow[]> {
      return db.select().from(webhookEndpoints).where(eq(webhookEndpoints.workspaceId, workspaceId)).orderBy(desc(webhookEndpoints.createdAt));
    },

    async updateEndpoint(workspaceId: string, id: string, values: Partial<NewWebhookEndpoint>): Promise<WebhookEndpointRow | undefined> {
      const [row] = await db
        .update(webhookEndpoints)
        .set(values)
        .where(and(eq(webhookEndpoints.workspaceId, workspaceId), eq(webhookEndpoints.id, id)))
        .returning();
      return row;
    },

    /**
     * Makes the endpoint's pending deliveries due at `at` (a new URL: what failed at the old one is
     * tried at once, not after a backoff of up to 6 h). Rows a worker holds are left to it; the
     * retry window, counted from each delivery's creation, is unchanged.
     */
    async makePendingDue(workspaceId: string, endpointId: string, at: Date): Promise<void> {
      await db
        .update(webhookDeliveries)
        .set({ nextAttemptAt: at })
        .where(
          and(
            eq(webhookDeliveries.workspaceId, workspaceId),
            eq(webhookDeliveries.endpointId, endpointId),
            eq(webhookDeliveries.status, 'pending'),
            sql`${webhookDeliveries.nextAttemptAt} > ${ts(at)}`,
            sql`${webhookDeliveries.leaseExpiresAt} is null`,
          ),
        );
    },

    async deleteEndpoint(workspaceId: string, id: string): Promise<boolean> {
      const rows = await db
        .delete(webhookEndpoints)
        .where(and(eq(webhookEndpoints.workspaceId, workspaceId), eq(webhookEndpoints.id, id)))
        .returning({ id: webhookEndpoints.id });
      return rows.length > 0;
    },

    /** Newest first, keyset-paginated on (created_at, id), with each delivery's event type. */
    async listDeliveries(workspaceId: string, endpointId: string, options: { limit: number; before?: PageCursor; status?: DeliveryStatus }) {
      const conditions = [eq(webhookDeliveries.workspaceId, workspaceId), eq(webhookDeliveries.endpointId, endpointId)];
      if (options.before) conditions.push(olderThanCursor(webhookDeliveries.createdAt, webhookDeliveries.id, options.before));
      if (options.status) conditions.push(eq(webhookDeliveries.status, options.status));
      return db
        .select({
          ...getTableColumns(webhookDeliveries),
          eventType: webhookEvents.type,
          occurredAt: webhookEvents.occurredAt,
          cursorAt: cursorTimestamp(webhookDeliveries.createdAt),
        })
        .from(webhookDeliveries)
        .innerJoin(webhookEvents, eq(webhookEvents.id, webhookDeliveries.eventId))
        .where(and(...conditions))
        .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.id))
        .limit(options.limit);
    },

    async attemptsOf(workspaceId: string, deliveryIds: string[]): Promise<WebhookAttemptRow[]> {
      if (deliveryIds.length === 0) return [];
      return db
        .select()
        .from(webhookDeliveryAttempts)
        .where(and(eq(webhookDeliveryAttempts.workspaceId, workspaceId), inArray(webhookDeliveryAttempts.deliveryId, deliveryIds)))
        .orderBy(webhookDeliveryAttempts.attempt);
    },

    /** Whether this event was ever owed to this endpoint (only such an event can be redelivered to it). */
    async eventWasOwed(workspaceId: string, endpointId: string, eventId: string): Promise<boolean> {
      const [row] = await db
        .select({ id: webhookDeliveries.id })
        .from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.workspaceId, workspaceId), eq(webhookDeliveries.endpointId, endpointId), eq(webhookDeliveries.eventId, eventId)))
        .limit(1);
      return Boolean(row);
    },

    async insertManualDelivery(values: { workspaceId: string; endpointId: string; eventId: string; at: Date }): Promise<WebhookDeliveryRow> {
      const [row] = await db
        .insert(webhookDeliveries)
        .values({ workspaceId: values.workspaceId, endpointId: values.endpointId, eventId: values.eventId, manual: true, nextAttemptAt: values.at })
        .returning();
      return row!;
    },

    async insertAudit(entry: AuditEntry) {
      await recordAudit(db, entry);
    },

    /**
     * Claims up to `limit` due deliveries of enabled endpoints under a lease (one statement,
     * `FOR UPDATE SKIP LOCKED`: processes never claim the same row). A lease that expired —
     * its worker died mid-request — makes the row claimable again: at-least-once.
     */
    async claimDue(owner: string, now: Date, leaseUntil: Date, limit: number, fairness: ClaimFairness = {}): Promise<ClaimedDelivery[]> {
      const perWorkspace = Math.min(limit, fairness.perWorkspace ?? limit);
      const open = [...(fairness.open ?? new Map<string, number>())];
      const full = open.filter(([, n]) => n >= perWorkspace).map(([workspaceId]) => workspaceId);
      const openByEndpoint = [...(fairness.openByEndpoint ?? new Map<string, number>())];
      // Fair shares: the earliest due rows of each enabled endpoint (one probe of
      // webhook_deliveries_endpoint_due_idx each, migration 0060), then of each workspace no more
      // than its share less what it already has open — the workspace with the fewest first — so
      // one workspace's backlog cannot fill a claim while another's event waits behind it. Within a
      // workspace the share goes round its endpoints, those with the fewest open first (`turn`):
      // by due time alone every slot a slow endpoint freed went to the oldest row — its own
      // backlog, due with the same events as its siblings' — and held the workspace's other
      // endpoints to its pace. Ranked before the lock (FOR UPDATE takes no window function); a row
      // another worker claimed meanwhile is skipped.
      const rows = rowsOf<Record<string, unknown>>(
        await db.execute(sql`
          with candidates as (
            select p.id, p.next_attempt_at, e.workspace_id,
                   row_number() over (partition by e.id order by p.next_attempt_at) + coalesce(oe.n, 0) as turn
            from webhook_endpoints e
            cross join lateral (
              select d.id, d.next_attempt_at from webhook_deliveries d
              where d.endpoint_id = e.id and d.status = 'pending' and d.next_attempt_at <= ${ts(now)}
                and (d.lease_expires_at is null or d.lease_expires_at <= ${ts(now)})
              order by d.next_attempt_at
              limit ${perWorkspace}
            ) p
            left join unnest(${pgArray(openByEndpoint.map(([endpointId]) => endpointId))}::uuid[], ${pgArray(openByEndpoint.map(([, n]) => n))}::int[]) as oe(endpoint_id, n)
              on oe.endpoint_id = e.id
            where e.enabled and e.workspace_id <> all(${pgArray(full)}::uuid[])
          ),
          shares as (
            select c.id, c.next_attempt_at, c.workspace_id,
                   row_number() over (partition by c.workspace_id order by c.turn, c.next_attempt_at) as share
            from candidates c
          ),
          ranked as (
            select c.id, c.next_attempt_at, c.share + coalesce(o.n, 0) as slot
            from shares c
            left join unnest(${pgArray(open.map(([workspaceId]) => workspaceId))}::uuid[], ${pgArray(open.map(([, n]) => n))}::int[]) as o(workspace_id, n)
              on o.workspace_id = c.workspace_id
          ),
          due as (
            select d.id from webhook_deliveries d
            join ranked r on r.id = d.id and r.slot <= ${perWorkspace}
            where d.status = 'pending' and (d.lease_expires_at is null or d.lease_expires_at <= ${ts(now)})
            order by r.slot, r.next_attempt_at
            limit ${limit}
            for update of d skip locked
          ),
          claimed as (
            update webhook_deliveries d set lease_owner = ${owner}, lease_expires_at = ${ts(leaseUntil)}, attempts = d.attempts + 1
            from due where d.id = due.id
            returning d.id, d.workspace_id, d.endpoint_id, d.event_id, d.attempts, d.created_at
          )
          select c.id, c.workspace_id, c.endpoint_id, c.event_id, c.attempts, c.created_at,
                 e.url, e.secret_ciphertext, e.retired_secrets,
                 ev.type as event_type, ev.occurred_at, ev.data
          from claimed c
          join webhook_endpoints e on e.id = c.endpoint_id
          join webhook_events ev on ev.id = c.event_id`),
      );
      const date = (value: unknown) => (value === null || value === undefined ? null : new Date(value as string));
      return rows.map((r) => ({
        id: String(r.id),
        workspaceId: String(r.workspace_id),
        endpointId: String(r.endpoint_id),
        eventId: String(r.event_id),
        attempt: Number(r.attempts),
        createdAt: date(r.created_at)!,
        url: String(r.url),
        secretCiphertext: String(r.secret_ciphertext),
        retiredSecrets: jsonOf<RetiredSecret[]>(r.retired_secrets),
        eventType: String(r.event_type),
        occurredAt: date(r.occurred_at)!,
        data: jsonOf<Record<string, unknown>>(r.data),
      }));
    },

    /**
     * Hands back claims never attempted (a stop came while the claim ran): lease cleared and the
     * attempt uncounted, fenced like recordAttempt, so the next claim sends them at once and as
     * the same attempt.
     */
    async releaseClaims(claims: ClaimedDelivery[], owner: string): Promise<void> {
      if (claims.length === 0) return;
      await db.execute(sql`
        update webhook_deliveries d set lease_owner = null, lease_expires_at = null, attempts = d.attempts - 1
        from unnest(${pgArray(claims.map((c) => c.id))}::uuid[], ${pgArray(claims.map((c) => c.attempt))}::int[]) as c(id, attempt)
        where d.id = c.id and d.lease_owner = ${owner} and d.attempts = c.attempt`);
    },

    /**
     * The endpoint's URL now, its row locked for the settling of an attempt (delivery-worker.ts
     * settle), before the delivery's row: a URL change (webhooks.service.ts update, which locks
     * this row and then makes the pending deliveries due) either committed before — and the
     * attempt, made at the old URL, is told so — or waits until the attempt is recorded and then
     * finds its delivery pending. Undefined: the endpoint (or its workspace) is gone.
     *
     * The workspace's key first (`key share`, what the attempt log's foreign key takes anyway):
     * whatever holds the workspace's row and then changes its endpoints — a workspace's purge
     * (its delete cascades to them), a member's removal (the endpoints they vouch for turned
     * off) — locks in that order. Taken last, as the attempt's insert did, each side held what
     * the other waited for (a deadlock, 40P01); now the settle waits before it holds anything.
     */
    async lockEndpointUrl(workspaceId: string, endpointId: string): Promise<string | undefined> {
      await db.select({ id: workspaces.id }).from(workspaces).where(eq(workspaces.id, workspaceId)).for('key share');
      const [row] = await db.select({ url: webhookEndpoints.url }).from(webhookEndpoints).where(eq(webhookEndpoints.id, endpointId)).for('no key update');
      return row?.url;
    },

    /**
     * The attempt's log row and the delivery's new state, only while this worker still holds
     * the lease for this attempt (fencing: a late worker changes nothing). Returns false then.
     * `next`: when to try again; undefined on success, `null` when the retry window is over.
     */
    async recordAttempt(claim: ClaimedDelivery, owner: string, result: AttemptResult, at: Date, next: Date | null | undefined): Promise<boolean> {
      const delivered = result.outcome === 'delivered';
      const [updated] = await db
        .update(webhookDeliveries)
        .set({
          status: delivered ? 'delivered' : next ? 'pending' : 'failed',
          deliveredAt: delivered ? at : null,
          nextAttemptAt: next ?? at,
          leaseOwner: null,
          leaseExpiresAt: null,
          lastResponseStatus: result.responseStatus,
          lastError: delivered ? null : result.outcome,
        })
        .where(and(eq(webhookDeliveries.id, claim.id), eq(webhookDeliveries.leaseOwner, owner), eq(webhookDeliveries.attempts, claim.attempt)))
        .returning({ id: webhookDeliveries.id });
      if (!updated) return false;
      await db.insert(webhookDeliveryAttempts).values({
        workspaceId: claim.workspaceId,
        deliveryId: claim.id,
        endpointId: claim.endpointId,
        eventId: claim.eventId,
        attempt: claim.attempt,
        outcome: result.outcome,
        responseStatus: result.responseStatus,
        latencyMs: result.latencyMs,
        at,
      });
      return true;
    },

    /**
     * Retention: events written before `cutoff` that no delivery of an enabled endpoint still
     * owes, with their deliveries and delivery log (cascade). At most `limit` events a call. A
     * disabled endpoint's pending deliveries are never attempted, so they hold nothing back:
     * payloads name addresses and must not outlive the retention (P-13). The batch's rows are
     * deleted by primary key (`id = any(array(…))`): as `id in (select …)` the server hashed the
     * batch against a scan of every event, once per batch of a sweep.
     */
    async purgeEventsBefore(cutoff: Date, limit: number): Promise<number> {
      const rows = rowsOf<{ id: string }>(
        await db.execute(sql`
          delete from webhook_events where id = any(array(
            select ev.id from webhook_events ev
            where ev.created_at < ${ts(cutoff)}
              and not exists (
                select 1 from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id and e.enabled
                where d.event_id = ev.id and d.status = 'pending')
            limit ${limit}))
          returning id`),
      );
      return rows.length;
    },

    /** Who is told when an endpoint is disabled: the workspace's owners and admins. */
    async adminEmails(workspaceId: string): Promise<string[]> {
      const rows = rowsOf<{ email: string }>(
        await db.execute(sql`
          select u.email from memberships m join users u on u.id = m.user_id
          where m.workspace_id = ${workspaceId}::uuid and m.role in ('owner', 'admin') order by u.email`),
      );
      return rows.map((r) => r.email);
    },

    /** A success heals the endpoint; a failure counts towards auto-disable. */
    async markEndpointHealth(endpointId: string, delivered: boolean, at: Date): Promise<void> {
      if (delivered) {
        await db
          .update(webhookEndpoints)
          .set({ consecutiveFailures: 0, failingSince: null, lastSuccessAt: at, status: sql`case when ${webhookEndpoints.enabled} then 'healthy' else ${webhookEndpoints.status} end` })
          .where(eq(webhookEndpoints.id, endpointId));
        return;
      }
      await db
        .update(webhookEndpoints)
        .set({
          consecutiveFailures: sql`${webhookEndpoints.consecutiveFailures} + 1`,
          failingSince: sql`coalesce(${webhookEndpoints.failingSince}, ${ts(at)})`,
          status: sql`case when ${webhookEndpoints.enabled} then 'failing' else ${webhookEndpoints.status} end`,
        })
        .where(eq(webhookEndpoints.id, endpointId));
    },

    /** Disables the endpoint if its failure has lasted long enough; returns it when this call disabled it. */
    async disableIfFailedTooLong(endpointId: string, minFailures: number, failingBefore: Date, at: Date): Promise<WebhookEndpointRow | undefined> {
      const [row] = await db
        .update(webhookEndpoints)
        .set({ enabled: false, status: 'disabled_after_failures', disabledAt: at })
        .where(
          and(
            eq(webhookEndpoints.id, endpointId),
            eq(webhookEndpoints.enabled, true),
            sql`${webhookEndpoints.consecutiveFailures} >= ${minFailures}`,
            sql`${webhookEndpoints.failingSince} <= ${ts(failingBefore)}`,
          ),
        )
        .returning();
      return row;
    },
  };
}

export type WebhookQueries = ReturnType<typeof webhookQueries>;

export function createWebhooksRepo(db: Db) {
  return { ...webhookQueries(db), transaction: inTransaction(db, webhookQueries) };
}

export type WebhooksRepo = ReturnType<typeof createWebhooksRepo>;
