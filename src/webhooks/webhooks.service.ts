import { randomUUID } from 'node:crypto';
import { actorOf } from '../auth/actor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { RetiredSecret } from '../db/schema.js';
import { ConflictError, ForbiddenError, NotFoundError, UnprocessableError } from '../errors.js';
import type { TokenCipherMethods } from '../gmail/token-cipher.js';
import { encodeCursor, type PageCursor } from '../http/cursor.js';
import type { WebhookEventType } from './events.js';
import { webhookResolver, type DnsOptions } from './host-resolver.js';
import { newWebhookSecret } from './signature.js';
import { assertAllowedTarget, TargetRefusedError, type TargetRefusal } from './target-guard.js';
import type { DeliveryStatus, WebhookEndpointRow, WebhooksRepo } from './webhooks.repo.js';

/*
 * Endpoints of a workspace (owners and admins) and their delivery log. A secret is shown
 * once — on creation and on rotation — and kept sealed by the token cipher, because
 * signing needs it back. A URL is checked by the SSRF guard when saved, and again by the
 * sender at every connection.
 */

/** The sealed secret is bound to its endpoint: copied into another row it no longer decrypts. */
export const secretContext = (endpointId: string, which: 'secret' | 'previous') => `webhook:${endpointId}:${which}`;

/**
 * At most this many replaced secrets sign beside the current one. Each rotation keeps the one it
 * replaces for the grace period, and the earlier ones keep theirs (a receiver may still hold any
 * of them); past this many in one grace period, the oldest stops signing first.
 */
export const MAX_SECRETS_IN_GRACE = 5;

/** The replaced secrets that still sign at `at`. */
export const secretsInGrace = (retired: RetiredSecret[], at: Date) => retired.filter((r) => new Date(r.expiresAt).getTime() > at.getTime());

/**
 * A refused target's 422, by why: only an address we never reach names the private networks; a
 * host that did not resolve says so (it was told "may not reach private networks", which sent
 * people hunting for a private address their public name never had).
 */
const REFUSAL_DETAIL: Record<TargetRefusal, string> = {
  blocked: 'must reach a public address',
  unresolved: 'host must resolve in DNS',
  dns_timeout: "host's DNS must answer",
  dns_failed: 'DNS lookup failed; try again',
};
const refusalMessage = (error: TargetRefusedError) =>
  error.reason === 'blocked' ? `${error.message}: webhooks may not reach loopback, link-local or private networks` : error.message;

/** `requireHttps`: deliveries go only to https URLs (production); an http:// endpoint saved before shows it needs one. */
export function presentEndpoint(row: WebhookEndpointRow, requireHttps = false) {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    eventTypes: row.eventTypes,
    enabled: row.enabled,
    status: row.status,
    consecutiveFailures: row.consecutiveFailures,
    failingSince: row.failingSince,
    lastSuccessAt: row.lastSuccessAt,
    disabledAt: row.disabledAt,
    vouchedBy: row.vouchedBy,
    // When the last replaced secret stops signing (null: none was ever replaced).
    previousSecretExpiresAt: row.retiredSecrets.length ? new Date(Math.max(...row.retiredSecrets.map((r) => new Date(r.expiresAt).getTime()))) : null,
    needsHttpsUrl: requireHttps && new URL(row.url).protocol !== 'https:',
    createdAt: row.createdAt,
  };
}

export interface EndpointInput {
  url: string;
  eventTypes: WebhookEventType[];
  description?: string | null;
  enabled?: boolean;
}

export function createWebhooksService(deps: {
  repo: WebhooksRepo;
  cipher: TokenCipherMethods;
  allowPrivateTargets: boolean;
  /** Refuse http:// endpoints (production): see config.webhooks.requireHttps. */
  requireHttps?: boolean;
  /** At most this many endpoints a workspace (config.webhooks.maxEndpointsPerWorkspace). */
  maxEndpointsPerWorkspace: number;
  /** How names are resolved when private targets are refused (host-resolver.ts); tests name their own DNS server. */
  dns?: DnsOptions;
  secretGraceMs: number;
  now?: () => Date;
}) {
  const { repo, cipher } = deps;
  const now = deps.now ?? (() => new Date());
  const notFound = () => new NotFoundError('Webhook endpoint', 'webhook_not_found');
  /** Checked again under the membership's lock: a removal that committed since the request began. */
  const noLongerManager = () => new ForbiddenError('Only owners and admins of this workspace manage webhooks');
  const resolveHost = webhookResolver(deps.allowPrivateTargets, deps.dns);
  const present = (row: WebhookEndpointRow) => presentEndpoint(row, deps.requireHttps ?? false);

  async function checkedUrl(raw: string): Promise<string> {
    const url = new URL(raw);
    if (deps.requireHttps && url.protocol !== 'https:') {
      throw new UnprocessableError('webhook_target_not_allowed', 'Webhook endpoints must use https: events carry recipients\' addresses', [
        { field: 'url', message: 'must be an https URL' },
      ]);
    }
    try {
      await assertAllowedTarget(url, deps.allowPrivateTargets, resolveHost);
    } catch (error) {
      // One code for every refused target (clients and tests key on it, and an unresolvable host is
      // not a target we send to either); the message and the field's detail say which fix is needed.
      if (error instanceof TargetRefusedError) throw new UnprocessableError('webhook_target_not_allowed', refusalMessage(error), [{ field: 'url', message: REFUSAL_DETAIL[error.reason] }]);
      throw error;
    }
    return url.toString();
  }

  async function requireEndpoint(auth: AuthContext, id: string) {
    const row = await repo.findEndpoint(auth.workspaceId, id);
    if (!row) throw notFound();
    return row;
  }

  const audit = (auth: AuthContext, action: string, endpointId: string, detail: Record<string, unknown> = {}) => ({
    workspaceId: auth.workspaceId,
    actor: actorOf(auth),
    action,
    subjectType: 'webhook_endpoint',
    subjectId: endpointId,
    detail,
    requestId: auth.requestId,
  });

  return {
    async create(auth: AuthContext, input: EndpointInput) {
      const url = await checkedUrl(input.url);
      const id = randomUUID();
      const secret = newWebhookSecret();
      const row = await repo.transaction(async (tx) => {
        if (!(await tx.lockVoucher(auth.workspaceId, auth.userId))) throw noLongerManager();
        // Each endpoint is a fan-out target of every event and a share of the delivery slots:
        // counted under the workspace's lock, so two creates at the limit cannot both pass.
        if ((await tx.lockEndpointCount(auth.workspaceId)) >= deps.maxEndpointsPerWorkspace) {
          throw new ConflictError(
            'webhook_endpoint_limit',
            `A workspace has at most ${deps.maxEndpointsPerWorkspace} webhook endpoints: delete one (or subscribe an existing one to more event types) first`,
          );
        }
        const inserted = await tx.insertEndpoint({
          id,
          workspaceId: auth.workspaceId,
          url,
          description: input.description ?? null,
          eventTypes: [...new Set(input.eventTypes)],
          secretCiphertext: cipher.encrypt(secret, secretContext(id, 'secret')),
          enabled: input.enabled ?? true,
          createdBy: auth.userId,
          vouchedBy: auth.userId,
        });
        await tx.insertAudit(audit(auth, 'webhook.endpoint_created', id, { eventTypes: inserted.eventTypes }));
        return inserted;
      });
      // The only time the secret is shown (besides a rotation).
      return { ...present(row), secret };
    },

    async list(auth: AuthContext) {
      return { endpoints: (await repo.listEndpoints(auth.workspaceId)).map(present) };
    },

    async get(auth: AuthContext, id: string) {
      return present(await requireEndpoint(auth, id));
    },

    async update(auth: AuthContext, id: string, patch: Partial<EndpointInput>) {
      await requireEndpoint(auth, id);
      const url = patch.url === undefined ? undefined : await checkedUrl(patch.url);
      // Where it sends, or that it sends (again), is now this member's word (removeMembership turns
      // it off with them), checked under their membership's lock — whatever the endpoint's state:
      // a removal committing meanwhile turns it off, and an `enabled: true` judged "already on"
      // from an earlier read turned it back on for the removed member (a reviewer's finding).
      const vouches = url !== undefined || patch.enabled === true;
      const row = await repo.transaction(async (tx) => {
        if (vouches && !(await tx.lockVoucher(auth.workspaceId, auth.userId))) throw noLongerManager();
        // Read locked (after the membership, the order a removal takes them in): turning an
        // endpoint back on starts it healthy, its past failures judged already — decided from what
        // it is now, not from a read a removal or an automatic disable may have overtaken.
        const current = await tx.findEndpoint(auth.workspaceId, id, { lock: true });
        if (!current) throw notFound();
        const reenabled = patch.enabled === true && !current.enabled;
        const updated = await tx.updateEndpoint(auth.workspaceId, id, {
          ...(vouches ? { vouchedBy: auth.userId } : {}),
          ...(url === undefined ? {} : { url }),
          ...(patch.eventTypes === undefined ? {} : { eventTypes: [...new Set(patch.eventTypes)] }),
          ...(patch.description === undefined ? {} : { description: patch.description }),
          ...(patch.enabled === undefined ? {} : { enabled: patch.enabled }),
          ...(reenabled ? { status: 'healthy' as const, consecutiveFailures: 0, failingSince: null, disabledAt: null } : {}),
        });
        if (!updated) throw notFound();
        // A changed URL is how a receiver is fixed (e.g. http:// → https:// once https is required):
        // what it is still owed goes out now, not at a retry hours away.
        if (url !== undefined && url !== current.url) await tx.makePendingDue(auth.workspaceId, id, now());
        await tx.insertAudit(audit(auth, 'webhook.endpoint_updated', id, { fields: Object.keys(patch).sort() }));
        return updated;
      });
      return present(row);
    },

    async remove(auth: AuthContext, id: string) {
      await repo.transaction(async (tx) => {
        if (!(await tx.deleteEndpoint(auth.workspaceId, id))) throw notFound();
        await tx.insertAudit(audit(auth, 'webhook.endpoint_deleted', id));
      });
    },

    /** A new secret, shown once; the old one keeps signing (a second `v1=`) for the grace period. */
    /**
     * A new secret signs from now on; the one it replaces keeps signing for the grace period, and
     * so do secrets replaced earlier whose grace has not ended (at most MAX_SECRETS_IN_GRACE).
     * Under the endpoint's lock: two rotations at once take turns, and neither's secret is lost.
     */
    async rotateSecret(auth: AuthContext, id: string) {
      const secret = newWebhookSecret();
      const row = await repo.transaction(async (tx) => {
        const current = await tx.findEndpoint(auth.workspaceId, id, { lock: true });
        if (!current) throw notFound();
        const at = now();
        const replaced = {
          ciphertext: cipher.encrypt(cipher.decrypt(current.secretCiphertext, secretContext(id, 'secret')), secretContext(id, 'previous')),
          expiresAt: new Date(at.getTime() + deps.secretGraceMs).toISOString(),
        };
        const retiredSecrets = [...secretsInGrace(current.retiredSecrets, at), replaced].slice(-MAX_SECRETS_IN_GRACE);
        const updated = await tx.updateEndpoint(auth.workspaceId, id, {
          secretCiphertext: cipher.encrypt(secret, secretContext(id, 'secret')),
          retiredSecrets,
          // For the release before migration 0043, still running during a rolling deploy (schema/webhooks.ts).
          previousSecretCiphertext: replaced.ciphertext,
          previousSecretExpiresAt: new Date(replaced.expiresAt),
        });
        if (!updated) throw notFound();
        await tx.insertAudit(audit(auth, 'webhook.secret_rotated', id, { previousSecretExpiresAt: replaced.expiresAt, secretsInGrace: retiredSecrets.length }));
        return updated;
      });
      return { ...present(row), secret };
    },

    /** The delivery log of one endpoint: each delivery with every attempt (status, latency, response code). */
    async deliveries(auth: AuthContext, id: string, query: { limit: number; cursor?: PageCursor; status?: DeliveryStatus }) {
      await requireEndpoint(auth, id);
      const rows = await repo.listDeliveries(auth.workspaceId, id, { limit: query.limit, before: query.cursor, status: query.status });
      const attempts = await repo.attemptsOf(
        auth.workspaceId,
        rows.map((r) => r.id),
      );
      const last = rows.at(-1);
      return {
        deliveries: rows.map((r) => ({
          id: r.id,
          eventId: r.eventId,
          eventType: r.eventType,
          occurredAt: r.occurredAt,
          status: r.status,
          manual: r.manual,
          attempts: r.attempts,
          nextAttemptAt: r.status === 'pending' ? r.nextAttemptAt : null,
          deliveredAt: r.deliveredAt,
          lastResponseStatus: r.lastResponseStatus,
          lastError: r.lastError,
          createdAt: r.createdAt,
          log: attempts
            .filter((a) => a.deliveryId === r.id)
            .map((a) => ({ attempt: a.attempt, outcome: a.outcome, responseStatus: a.responseStatus, latencyMs: a.latencyMs, at: a.at })),
        })),
        nextCursor: rows.length === query.limit && last ? encodeCursor(last) : null,
      };
    },

    /** Sends one event to this endpoint again, as a new delivery (the event keeps its id: receivers deduplicate). */
    async redeliver(auth: AuthContext, id: string, eventId: string) {
      const endpoint = await requireEndpoint(auth, id);
      if (!endpoint.enabled) throw new ConflictError('webhook_endpoint_disabled', 'Enable the endpoint before redelivering to it');
      if (!(await repo.eventWasOwed(auth.workspaceId, id, eventId))) throw new NotFoundError('Event', 'webhook_event_not_found');
      const delivery = await repo.transaction(async (tx) => {
        const row = await tx.insertManualDelivery({ workspaceId: auth.workspaceId, endpointId: id, eventId, at: now() });
        await tx.insertAudit(audit(auth, 'webhook.redelivery_requested', id, { eventId, deliveryId: row.id }));
        return row;
      });
      return { id: delivery.id, eventId, status: delivery.status, manual: true, nextAttemptAt: delivery.nextAttemptAt };
    },
  };
}

export type WebhooksService = ReturnType<typeof createWebhooksService>;
