import { z } from 'zod';
import { AppError, UnauthorizedError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { GmailClient } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxesRepo } from './mailboxes.repo.js';
import type { SyncService } from './sync.service.js';

/** Pub/Sub's push envelope; `data` is base64 of Gmail's JSON notification. */
const pushEnvelope = z.object({
  message: z.object({ data: z.string().min(1).max(10_000) }),
});

/** Gmail's notification. historyId is a JSON number in practice, a string in Google's docs: take both. */
const gmailNotification = z.object({
  emailAddress: z.email(),
  historyId: z.union([z.string().regex(/^\d{1,20}$/), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).transform(String)]),
});

export interface PushServiceDeps {
  gmail: GmailClient;
  /** The `aud` the push subscription puts in its token (GMAIL_PUSH_AUDIENCE, default PUBLIC_BASE_URL/webhooks/gmail). */
  audience: string;
  /** When set, the token must name this service account (GMAIL_PUSH_SERVICE_ACCOUNT). */
  serviceAccount?: string;
  /** Production: without a service account every push is refused (any Google-signed account would pass otherwise). */
  requireServiceAccount?: boolean;
  mailboxesRepo: MailboxesRepo;
  sync: SyncService;
  logger: Logger;
}

const invalidToken = () => new UnauthorizedError('invalid_push_token', 'The push token is missing or invalid');

/**
 * Gmail push (watch → Pub/Sub → POST /webhooks/gmail). Only a token Google signed for our
 * audience is believed, and then it only says "look at this mailbox": the sync reads Gmail
 * itself, so a replayed or stale notification can at worst cause an extra sync.
 */
export function createPushService(deps: PushServiceDeps) {
  const { gmail, mailboxesRepo, sync, logger } = deps;

  return {
    async authenticate(bearerToken: string | undefined): Promise<void> {
      if (!bearerToken) throw invalidToken();
      if (deps.requireServiceAccount && !deps.serviceAccount) {
        logger.warn({ problem: 'no GMAIL_PUSH_SERVICE_ACCOUNT' }, 'refused a Gmail push: set GMAIL_PUSH_SERVICE_ACCOUNT to accept pushes in production');
        throw invalidToken();
      }
      let verdict: Awaited<ReturnType<GmailClient['verifyPushToken']>>;
      try {
        verdict = await gmail.verifyPushToken(bearerToken, deps.audience);
      } catch (error) {
        // Google's certs could not be fetched: not the caller's fault, and Pub/Sub retries a 5xx.
        if (error instanceof GmailError) throw new AppError('push_verification_unavailable', 503, 'The push token cannot be verified right now');
        throw error;
      }
      if (!verdict.valid) {
        logger.warn({ problem: verdict.problem }, 'refused a Gmail push with an invalid token');
        throw invalidToken();
      }
      if (!verdict.emailVerified || (deps.serviceAccount && verdict.email?.toLowerCase() !== deps.serviceAccount.toLowerCase())) {
        logger.warn({ problem: 'wrong service account' }, 'refused a Gmail push with an invalid token');
        throw invalidToken();
      }
    },

    /**
     * Starts an incremental sync of every syncing mailbox with the notified address and
     * returns without waiting for it: Pub/Sub wants a quick 2xx, and redelivers anything else.
     */
    async notify(body: unknown): Promise<{ triggered: number }> {
      const envelope = pushEnvelope.safeParse(body);
      const notification = envelope.success ? decodeNotification(envelope.data.message.data) : undefined;
      if (!notification) throw new AppError('invalid_push_message', 400, 'The body is not a Gmail push notification');

      let triggered = 0;
      for (const mailbox of await mailboxesRepo.findByEmailUnscoped(notification.emailAddress)) {
        if (!mailbox.syncEnabled || mailbox.status !== 'active') continue;
        // Already synced past this change (Pub/Sub redelivers and reorders): nothing new to read.
        if (mailbox.historyId && /^\d+$/.test(mailbox.historyId) && BigInt(notification.historyId) <= BigInt(mailbox.historyId)) continue;
        sync.syncInBackground(mailbox.id);
        triggered += 1;
      }
      return { triggered };
    },
  };
}

function decodeNotification(data: string) {
  try {
    const json: unknown = JSON.parse(Buffer.from(data, 'base64').toString('utf8'));
    const parsed = gmailNotification.safeParse(json);
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export type PushService = ReturnType<typeof createPushService>;
