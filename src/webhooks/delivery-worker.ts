import type { AccountMailer } from '../auth/account-mail.js';
import type { TokenCipherMethods } from '../gmail/token-cipher.js';
import { errorNameOf, type Logger } from '../logger.js';
import type { WebhookEventBody, WebhookEventType } from './events.js';
import { nextAttemptAt } from './retry-schedule.js';
import type { AttemptResult, WebhookSender } from './sender.js';
import { SIGNATURE_HEADER, signatureHeader } from './signature.js';
import { secretContext, secretsInGrace } from './webhooks.service.js';
import type { ClaimedDelivery, WebhooksRepo } from './webhooks.repo.js';

/*
 * The delivery worker (every worker process runs one). A tick claims due deliveries of
 * enabled endpoints under a lease (FOR UPDATE SKIP LOCKED: processes never share a row),
 * POSTs each signed body, then — in one transaction, fenced by the lease — logs the attempt,
 * schedules the retry or closes the delivery, and updates the endpoint's health. A process
 * killed mid-request leaves a lease that expires; the next claim sends again: at-least-once.
 */

/** Events one retention statement deletes (short statements, short locks). */
const PURGE_BATCH = 5_000;
/** Deliveries one tick claims; they are sent concurrently. */
const CLAIM_BATCH = 20;
/**
 * The running loop (pump): requests one process has open at once, and at most this many of them
 * for one workspace, so a workspace whose receiver answers slowly holds a share of the slots,
 * never all of them, and everyone else's events go on flowing past its backlog.
 */
export const DELIVERY_SLOTS = 32;
export const WORKSPACE_SLOTS = 8;
/**
 * A claim lasts twice the request's own timeout plus 10 s for the bookkeeping around it (a busy
 * database): only a dead worker's lease expires. Too short a lease is not unsafe — the late
 * worker's result is fenced off — but it sends the event twice.
 */
const leaseMsFor = (timeoutMs: number) => 2 * timeoutMs + 10_000;

export interface DeliveryWorkerOptions {
  repo: WebhooksRepo;
  cipher: TokenCipherMethods;
  send: WebhookSender;
  logger: Logger;
  workerId: string;
  timeoutMs: number;
  retryBaseMs: number;
  retryWindowMs: number;
  disableAfterFailures: number;
  disableAfterMs: number;
  /** Deliveries go only to https URLs (production): the disable notice says so for an http:// endpoint. */
  requireHttps?: boolean;
  /** Tells the workspace's owners and admins when an endpoint is disabled (account mail). */
  mailer?: AccountMailer;
  now?: () => Date;
}

/** The bytes every attempt of one event sends (signatures cover exactly these). */
export function deliveryBody(claim: Pick<ClaimedDelivery, 'eventId' | 'eventType' | 'occurredAt' | 'workspaceId' | 'data'>): string {
  const body: WebhookEventBody = {
    id: claim.eventId,
    type: claim.eventType as WebhookEventType,
    occurredAt: claim.occurredAt.toISOString(),
    workspaceId: claim.workspaceId,
    data: claim.data,
  };
  return JSON.stringify(body);
}

/** Adds `by` to a key's count, dropping the key at zero (the claim is sent only keys with requests open). */
function count(counts: Map<string, number>, key: string, by: number) {
  const n = (counts.get(key) ?? 0) + by;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

export function createDeliveryWorker(options: DeliveryWorkerOptions) {
  const { repo, cipher, logger, workerId } = options;
  const now = options.now ?? (() => new Date());
  const inFlight = new Set<Promise<unknown>>();
  /** The running loop's open requests, by workspace. */
  const open = new Map<string, number>();
  const openByEndpoint = new Map<string, number>();
  let openTotal = 0;
  let pumping: Promise<void> | undefined;
  let pumpAgain = false;
  let stopped = false;

  /** The secrets that sign now: the current one, and the previous one during its grace period. */
  function signingSecrets(claim: ClaimedDelivery, at: Date): string[] {
    const secrets = [cipher.decrypt(claim.secretCiphertext, secretContext(claim.endpointId, 'secret'))];
    for (const retired of secretsInGrace(claim.retiredSecrets, at)) secrets.push(cipher.decrypt(retired.ciphertext, secretContext(claim.endpointId, 'previous')));
    return secrets;
  }

  async function attempt(claim: ClaimedDelivery): Promise<AttemptResult> {
    const body = deliveryBody(claim);
    const startedAt = now();
    return options.send(claim.url, body, {
      [SIGNATURE_HEADER]: signatureHeader(signingSecrets(claim, startedAt), Math.floor(startedAt.getTime() / 1000), body),
      'Inboxtrail-Event-Id': claim.eventId,
      'Inboxtrail-Event-Type': claim.eventType,
      'Inboxtrail-Delivery-Id': claim.id,
      'Inboxtrail-Delivery-Attempt': String(claim.attempt),
    });
  }

  async function settle(claim: ClaimedDelivery, result: AttemptResult) {
    const at = now();
    const delivered = result.outcome === 'delivered';
    const scheduled = delivered
      ? undefined
      : nextAttemptAt({ attempt: claim.attempt, createdAt: claim.createdAt, now: at, baseMs: options.retryBaseMs, windowMs: options.retryWindowMs });
    const disabled = await repo.transaction(async (tx) => {
      // The URL changed while this attempt was at the old one (the endpoint's row first, after
      // its workspace's key: ordered with the change, which makes the deliveries no worker holds
      // due, and with a workspace's purge). Its failure says nothing
      // of the new URL: the delivery is due now, within its window, and the endpoint's health and
      // its automatic disable are left alone — counted, the failure of the URL just replaced
      // could disable the endpoint its owner had fixed, and the delivery waited out its backoff.
      const url = await tx.lockEndpointUrl(claim.workspaceId, claim.endpointId);
      const moved = url !== undefined && url !== claim.url;
      const next = moved && scheduled ? at : scheduled;
      if (!(await tx.recordAttempt(claim, workerId, result, at, next))) return undefined;
      if (moved) return undefined;
      await tx.markEndpointHealth(claim.endpointId, delivered, at);
      if (delivered) return undefined;
      const row = await tx.disableIfFailedTooLong(claim.endpointId, options.disableAfterFailures, new Date(at.getTime() - options.disableAfterMs), at);
      if (row) {
        await tx.insertAudit({
          workspaceId: row.workspaceId,
          actor: 'system:webhooks',
          action: 'webhook.endpoint_disabled',
          subjectType: 'webhook_endpoint',
          subjectId: row.id,
          detail: { consecutiveFailures: row.consecutiveFailures, failingSince: row.failingSince?.toISOString() ?? null },
        });
      }
      return row;
    });
    if (disabled) {
      logger.warn({ endpointId: disabled.id, workspaceId: disabled.workspaceId, consecutiveFailures: disabled.consecutiveFailures }, 'webhook endpoint disabled after sustained failure');
      await notifyDisabled(disabled).catch((error: unknown) =>
        logger.error({ endpointId: disabled.id, errorName: errorNameOf(error) }, 'webhook disable notice could not be sent'),
      );
    }
  }

  /** The notice names the endpoint by id and host only: a URL's path or query may hold the customer's own token. */
  async function notifyDisabled(endpoint: { id: string; workspaceId: string; url: string; consecutiveFailures: number; failingSince: Date | null }) {
    if (!options.mailer) return;
    const url = new URL(endpoint.url);
    const host = url.host;
    // Its failures were ours to refuse, not the receiver's: say what fixes it.
    const needsHttps = options.requireHttps && url.protocol !== 'https:';
    for (const to of await repo.adminEmails(endpoint.workspaceId)) {
      await options.mailer.send({
        to,
        subject: `inboxtrail: webhook endpoint at ${host} was disabled`,
        text: [
          `The webhook endpoint ${endpoint.id} (${host}) kept failing — ${endpoint.consecutiveFailures} attempts in a row`,
          `since ${endpoint.failingSince?.toISOString() ?? 'recently'} — so it was disabled. Nothing is sent to it until it is enabled again.`,
          ...(needsHttps ? ['', 'Its URL is http://: events are delivered to https URLs only. Change its URL to https (PATCH /api/webhooks/<id> {"url": "https://…"}).'] : []),
          '',
          'Its delivery log (GET /api/webhooks/<id>/deliveries) shows each attempt. Once the receiver works again,',
          'enable it with PATCH /api/webhooks/<id> {"enabled": true}: deliveries still within their retry window resume.',
        ].join('\n'),
      });
    }
  }

  async function deliver(claim: ClaimedDelivery) {
    let result: AttemptResult;
    try {
      result = await attempt(claim);
    } catch (error) {
      // A secret that no longer decrypts, a URL that no longer parses: a failed attempt like any other.
      logger.error({ deliveryId: claim.id, errorName: errorNameOf(error) }, 'webhook delivery could not be attempted');
      result = { outcome: 'network_error', responseStatus: null, latencyMs: 0 };
    }
    await settle(claim, result);
  }

  /** One request of the running loop: holds its workspace's slot until settled, then refills. */
  function launch(claim: ClaimedDelivery) {
    count(open, claim.workspaceId, 1);
    count(openByEndpoint, claim.endpointId, 1);
    openTotal += 1;
    const work = deliver(claim)
      .catch((error: unknown) => logger.error({ errorName: errorNameOf(error) }, 'webhook delivery bookkeeping failed'))
      .finally(() => {
        count(open, claim.workspaceId, -1);
        count(openByEndpoint, claim.endpointId, -1);
        openTotal -= 1;
        inFlight.delete(work);
        if (!stopped) void refill();
      });
    inFlight.add(work);
  }

  /** Claims into free slots until nothing more is due or the slots are full; one claim at a time. */
  async function claimIntoSlots() {
    do {
      pumpAgain = false;
      const free = DELIVERY_SLOTS - openTotal;
      if (free <= 0 || stopped) return;
      const at = now();
      const claims = await repo.claimDue(workerId, at, new Date(at.getTime() + leaseMsFor(options.timeoutMs)), free, { perWorkspace: WORKSPACE_SLOTS, open, openByEndpoint });
      // Stopped while the claim ran (SIGTERM): no request starts now — it would outlast the
      // stop's grace, be abandoned with its lease held, and be sent again by another worker.
      if (stopped) return repo.releaseClaims(claims, workerId);
      for (const claim of claims) launch(claim);
      if (claims.length === free) pumpAgain = true;
    } while (pumpAgain);
  }

  /**
   * The worker's running loop (jobs.ts, every second, and again as each request settles):
   * claims into free slots and returns without waiting for the requests. Unlike `tick`, a slow
   * receiver holds only its own slots: a batch waited for its slowest request, and a workspace
   * whose receiver took the whole timeout made every other workspace's events wait with it.
   */
  function refill(): Promise<void> {
    if (pumping) {
      pumpAgain = true;
      return pumping;
    }
    pumping = claimIntoSlots()
      .catch((error: unknown) => logger.error({ errorName: errorNameOf(error) }, 'webhook deliveries could not be claimed'))
      .finally(() => {
        pumping = undefined;
      });
    return pumping;
  }

  return {
    pump(): Promise<void> {
      stopped = false;
      return refill();
    },

    /** Stops the running loop from claiming more; resolves when its requests are settled. */
    async stop(): Promise<void> {
      stopped = true;
      await pumping;
      await Promise.allSettled([...inFlight]);
    },

    /** Claims what is due and delivers it; resolves when this batch is settled. Returns how many were claimed. */
    async tick(): Promise<number> {
      const at = now();
      const claims = await repo.claimDue(workerId, at, new Date(at.getTime() + leaseMsFor(options.timeoutMs)), CLAIM_BATCH);
      const work = Promise.allSettled(claims.map((claim) => deliver(claim)));
      inFlight.add(work);
      try {
        const results = await work;
        for (const r of results) {
          if (r.status === 'rejected') logger.error({ errorName: errorNameOf(r.reason) }, 'webhook delivery bookkeeping failed');
        }
      } finally {
        inFlight.delete(work);
      }
      return claims.length;
    },

    /**
     * Deletes events older than the retention window that nothing still owes (their payloads
     * name contacts' addresses: they are not kept forever). Returns how many.
     */
    async purgeExpired(retentionMs: number): Promise<number> {
      const cutoff = new Date(now().getTime() - retentionMs);
      let total = 0;
      for (;;) {
        const purged = await repo.purgeEventsBefore(cutoff, PURGE_BATCH);
        total += purged;
        if (purged < PURGE_BATCH) return total;
      }
    },
  };
}

export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;
