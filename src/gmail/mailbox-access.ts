import type { Logger } from '../logger.js';
import type { GmailClient, MailboxGmail } from './gmail-client.js';
import { GmailError, isOurOAuthConfigurationError } from './gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from './mailboxes.repo.js';
import { NEEDS_RECONNECT, type MailboxPacer } from './pacer.js';
import { tokenContext, type TokenCipher } from './token-cipher.js';

/*
 * Gmail work for a mailbox under its stored grant: one client per mailbox and grant, its
 * tokens decrypted only to build it, a refreshed access token sealed and stored, and what
 * Google refusing the grant means for the mailbox (needs_reconnect, or `grant_replaced` when the
 * mailbox no longer holds that grant).
 */
export interface MailboxAccessDeps {
  repo: MailboxesRepo;
  gmail: GmailClient;
  cipher: TokenCipher;
  pacer: Pick<MailboxPacer, 'forget'>;
  logger: Logger;
}

export function createMailboxAccess(deps: MailboxAccessDeps) {
  const { repo, gmail, cipher, logger } = deps;

  /** What Google's refusal of this grant means for the mailbox now (repo.markNeedsReconnect). */
  async function markNeedsReconnect(mailbox: MailboxRow, reason: string): Promise<'marked' | 'already' | 'stale'> {
    if (mailbox.status === 'needs_reconnect') return 'already';
    const mark = (grant: string) => repo.markNeedsReconnect(mailbox.id, grant, { statusReason: reason, accessTokenEnc: null, accessTokenExpiresAt: null });
    let outcome = await mark(mailbox.refreshTokenEnc);
    if (outcome === 'stale') {
      // A key rotation (npm run rotate-keys) seals the same grant again under the new key: another
      // ciphertext, the same refresh token. That is the grant Google refused, not a new one.
      const resealed = await resealedGrant(mailbox);
      if (resealed) outcome = await mark(resealed);
    }
    if (outcome !== 'marked') return outcome;
    await deps.pacer.forget(mailbox.id);
    clients.delete(mailbox.id);
    logger.warn({ mailboxId: mailbox.id, reason }, 'mailbox needs reconnecting; its Gmail work is paused');
    return outcome;
  }

  /** The live row's sealed refresh token when it holds the very token `mailbox` held, sealed anew (a key rotation). */
  async function resealedGrant(mailbox: MailboxRow): Promise<string | undefined> {
    const current = await repo.findByIdUnscoped(mailbox.id);
    if (!current || current.refreshTokenEnc === mailbox.refreshTokenEnc) return undefined;
    const context = tokenContext(mailbox.id, 'refresh');
    try {
      return cipher.decrypt(current.refreshTokenEnc, context) === cipher.decrypt(mailbox.refreshTokenEnc, context) ? current.refreshTokenEnc : undefined;
    } catch {
      // A key retired meanwhile: it cannot be told, so it counts as another grant (the call is retried).
      return undefined;
    }
  }

  /**
   * One Gmail client per mailbox and grant, reused across calls: building one (and
   * decrypting its tokens) costs more than a send. A reconnect stores a new refresh token,
   * which changes the key, so a stale client is never used for a new grant.
   */
  const clients = new Map<string, { grant: string; api: MailboxGmail }>();
  function apiFor(mailbox: MailboxRow): MailboxGmail {
    const cached = clients.get(mailbox.id);
    if (cached && cached.grant === mailbox.refreshTokenEnc) return cached.api;
    const api = buildApi(mailbox);
    clients.set(mailbox.id, { grant: mailbox.refreshTokenEnc, api });
    return api;
  }

  function buildApi(mailbox: MailboxRow): MailboxGmail {
    return gmail.forMailbox(
      mailbox.id,
      {
        refreshToken: cipher.decrypt(mailbox.refreshTokenEnc, tokenContext(mailbox.id, 'refresh')),
        accessToken: mailbox.accessTokenEnc ? cipher.decrypt(mailbox.accessTokenEnc, tokenContext(mailbox.id, 'access')) : undefined,
        accessTokenExpiresAt: mailbox.accessTokenExpiresAt ?? undefined,
      },
      (refreshed) => {
        // Kept so that the next process start does not refresh again; losing this write only costs a refresh.
        repo
          .update(mailbox.id, {
            accessTokenEnc: cipher.encrypt(refreshed.accessToken, tokenContext(mailbox.id, 'access')),
            accessTokenExpiresAt: refreshed.expiresAt ?? null,
          })
          .catch((error: unknown) => logger.warn({ mailboxId: mailbox.id, err: error }, 'could not store a refreshed access token'));
      },
    );
  }

  /**
   * Runs Gmail work for a mailbox. A revoked grant (invalid_grant, admin policy…) marks the
   * mailbox needs_reconnect, which pauses its work until the owner connects it again — unless
   * that grant is no longer the mailbox's (reconnected or disconnected meanwhile): then the
   * failure is a `temporary` one, reason `grant_replaced`.
   */
  async function withGmail<T>(mailbox: MailboxRow, work: (api: MailboxGmail) => Promise<T>): Promise<T> {
    try {
      return await work(apiFor(mailbox));
    } catch (error) {
      // The pacer's refusal of a mailbox already marked (NEEDS_RECONNECT) is not Google's answer, and
      // this row may be older than a reconnect that committed since: marking on it could flip a
      // fresh connection back (a reconnect that kept its grant matches the row's).
      const refusedByGoogle = error instanceof GmailError && error.kind === 'auth_revoked' && error.reason !== NEEDS_RECONNECT;
      if (refusedByGoogle && (await markNeedsReconnect(mailbox, error.reason ?? 'auth_revoked')) === 'stale') {
        // The grant that failed was replaced (a reconnect) or the mailbox disconnected while this
        // call ran: the mailbox is not marked, and its callers retry as after any passing failure
        // (a send is requeued, not its campaign paused), meeting the mailbox as it is now.
        throw new GmailError('temporary', 'the mailbox was reconnected or disconnected while this call ran', { reason: 'grant_replaced', cause: error });
      }
      if (error instanceof GmailError && error.reason === 'invalid_client') {
        logger.error({ alert: 'google_oauth_client_rejected', mailboxId: mailbox.id }, 'Google rejected our OAuth client (invalid_client): check GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET');
      } else if (error instanceof GmailError && isOurOAuthConfigurationError(error.reason)) {
        logger.error({ alert: 'google_oauth_request_rejected', mailboxId: mailbox.id, reason: error.reason }, 'Google rejected our token request as malformed: the work is retried later');
      }
      throw error;
    }
  }

  return {
    withGmail,
    /** A disconnected mailbox's client is dropped (its grant is gone). */
    forget(mailboxId: string): void {
      clients.delete(mailboxId);
    },
  };
}
