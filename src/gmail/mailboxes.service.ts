import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { AuthContext } from '../auth/auth.service.js';
import { sessionEnded } from '../auth/sessions.js';
import { createSignedTokens } from '../auth/signed-tokens.js';
import type { Config } from '../config.js';
import { AppError, ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../errors.js';
import { GMAIL_DAILY_SEND_LIMITS } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { LIMITED_USE_DISCLOSURE } from './disclosure.js';
import { createMailboxAccess } from './mailbox-access.js';
import { createMailboxRevocation } from './mailbox-revocation.js';
import type { Db } from '../db/connect.js';
import { GMAIL_SCOPES, IDENTITY_SCOPES, type GmailClient } from './gmail-client.js';
import { GmailError } from './gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from './mailboxes.repo.js';
import type { MailboxPacer } from './pacer.js';
import { presentHealth } from './sync-health.js';
import { tokenContext, type TokenCipher } from './token-cipher.js';
import { deletionRequested, requesterOf } from '../privacy/deletion.js';
import { errorNameOf } from '../logger.js';
import { isConcurrencyFailure, onceMoreAfterUniqueViolation } from '../db/pg-errors.js';
import { DAY_MS } from '../time.js';

const CONSUMER_DOMAINS = new Set(['gmail.com', 'googlemail.com']);
/** What a daily budget above Gmail's own limit is told (the route's schema, for any mailbox; `update`, for the mailbox's kind). */
export const OVER_GMAIL_DAILY_LIMIT = `must be at most Gmail's daily sending limit: ${GMAIL_DAILY_SEND_LIMITS.workspace} for a Google Workspace account, ${GMAIL_DAILY_SEND_LIMITS.consumer} for consumer Gmail`;
const OAUTH_STATE_TTL_SECONDS = 600;
/** RFC 7636 S256: base64url(SHA-256(verifier)). */
const challengeOf = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');


export interface MailboxServiceDeps {
  repo: MailboxesRepo;
  gmail: GmailClient;
  pacer: MailboxPacer;
  cipher: TokenCipher;
  config: Pick<Config, 'jwt' | 'gmail' | 'privacy'>;
  logger: Logger;
  now?: () => Date;
  /** The disclosure of the policy version in force, as published in the database (P-05, P-18); default: the text shipped in disclosure.ts. */
  currentDisclosure?: () => Promise<{ version: string; title: string; points: readonly string[] }>;
  /**
   * Called once a mailbox is stored by the OAuth callback: the sync sets its push watch, and on a
   * reconnect (`reconnected`) reads at once what arrived while it could not.
   */
  onConnected?: (mailbox: MailboxRow, how: { reconnected: boolean }) => void;
}

/** A mailbox Google no longer accepts: the senders' one answer (requireSendable, and 1:1 mail's claim). */
/** The one answer for a mailbox Google no longer accepts (or not yet again): 409 `mailbox_needs_reconnect`. */
export const mailboxNeedsReconnect = (message = 'This mailbox must be reconnected before it can send', details?: unknown) =>
  new ConflictError('mailbox_needs_reconnect', message, details);
/** What a refused call says when Google has just refused the mailbox's grant. */
export const GRANT_REFUSED_MESSAGE = 'Google no longer accepts this mailbox’s access; reconnect it';

/**
 * Connected Gmail mailboxes: the OAuth connection (disclosure first, signed single-use
 * state), encrypted token storage, token health, and disconnection.
 */
export function createMailboxService(deps: MailboxServiceDeps) {
  const { repo, gmail, cipher, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const states = createSignedTokens(deps.config.jwt, { audience: 'inboxtrail-gmail-oauth-state', ttlSeconds: OAUTH_STATE_TTL_SECONDS });

  // Gmail work for a mailbox under its stored grant (mailbox-access.ts).
  const access = createMailboxAccess({ repo, gmail, cipher, pacer: deps.pacer, logger });

  // Disconnection: revoking at Google, or later when Google does not answer (mailbox-revocation.ts).
  const revocation = createMailboxRevocation({
    repo,
    gmail,
    cipher,
    logger,
    purgeAfterDays: deps.config.privacy.purgeAfterDays,
    now,
    afterRemoved: async (mailboxId) => {
      await deps.pacer.forget(mailboxId);
      access.forget(mailboxId);
    },
  });
  const revokeAndRemove = revocation.revokeAndRemove;

  /** P-01: only what the enabled features need — sending always, reading only with sync. */
  const scopesFor = (sync: boolean) => [...IDENTITY_SCOPES, GMAIL_SCOPES.send, ...(sync ? [GMAIL_SCOPES.readonly] : [])];

  async function present(mailbox: MailboxRow) {
    const sentToday = await repo.countSentSince(mailbox.id, new Date(now().getTime() - DAY_MS));
    return {
      id: mailbox.id,
      email: mailbox.email,
      kind: mailbox.kind,
      status: mailbox.status,
      statusReason: mailbox.statusReason,
      scopes: mailbox.scopes,
      disclosureVersion: mailbox.disclosureVersion,
      /** P-18: the policy version this mailbox was connected under (the disclosure shown was that version's). */
      policyVersion: mailbox.disclosureVersion,
      // As it is counted: a budget stored above Gmail's limit before it was refused counts at the limit (migration 0059).
      dailyBudget: Math.min(mailbox.dailyBudget, GMAIL_DAILY_SEND_LIMITS[mailbox.kind]),
      sentToday,
      ownerUserId: mailbox.userId,
      connectedAt: mailbox.connectedAt,
      sync: {
        enabled: mailbox.syncEnabled,
        lastSuccessAt: mailbox.lastSyncAt,
        lastError: mailbox.lastSyncError,
        messagesSeen: mailbox.messagesSeen,
        watchExpiresAt: mailbox.watchExpiresAt,
        health: presentHealth(mailbox.syncHealth),
        lastGap: mailbox.lastSyncGap ?? null,
      },
    };
  }

  /**
   * The mailbox can be searched again: the sends recovery parked while it could not are due
   * now, not up to UNSEARCHABLE_RECHECK_MS later (campaigns/parked-sends.ts). Right after the
   * reconnect's transaction committed, not inside it: it locked the mailbox's row, and a
   * purge holding a parked send's row while it counts that mailbox's purged sends (a key-share
   * lock on the mailbox's row) would deadlock with it. A park racing the reconnect reads the
   * mailbox's state under a share lock: it committed before (its mark is seen here) or it sees
   * the mailbox active and parks nothing. If this fails, the sends wait as before.
   */
  async function releaseParked(mailboxId: string) {
    try {
      const released = await repo.releaseParkedSends(mailboxId, now());
      if (released > 0) logger.info({ mailboxId, released }, 'sends parked while the mailbox could not be searched are due for recovery now');
    } catch (error) {
      logger.warn({ mailboxId, errorName: errorNameOf(error) }, 'parked sends were not released; recovery looks at them within minutes');
    }
  }

  return {
    /**
     * The disclosure to show, and the Google consent URL to go to after it (P-05).
     * `browserSecret` is the PKCE verifier: the route puts it in an HttpOnly cookie of the
     * browser that started, the state carries its S256 challenge, and only that browser
     * can finish the connection (an attacker's consent URL approved by a victim cannot).
     */
    async startConnection(auth: AuthContext, options: { sync: boolean; loginHint?: string }) {
      const disclosure = deps.currentDisclosure ? await deps.currentDisclosure() : LIMITED_USE_DISCLOSURE;
      const scopes = scopesFor(options.sync);
      const browserSecret = randomBytes(32).toString('base64url');
      const codeChallenge = challengeOf(browserSecret);
      // `sv`: the session version it was started at — a password change meanwhile refuses the callback.
      const state = states.sign({ wid: auth.workspaceId, sync: options.sync, dv: disclosure.version, pkce: codeChallenge, sv: auth.session?.version, mbr: auth.session?.membership }, auth.userId, randomUUID());
      return {
        disclosure,
        scopes,
        url: gmail.buildAuthorizeUrl({ scopes, state, codeChallenge, loginHint: options.loginHint, forceConsent: true }),
        browserSecret,
        browserSecretTtlSeconds: OAUTH_STATE_TTL_SECONDS,
      };
    },

    /**
     * The OAuth callback: verifies the state and that this browser started it (the cookie's
     * verifier matches the state's challenge), exchanges the code with PKCE, stores the
     * mailbox (encrypted). A refused callback stores nothing.
     */
    async completeConnection(input: { code?: string; state?: string; error?: string }, browserSecret: string | undefined) {
      let claims;
      try {
        claims = states.verify(input.state ?? '');
      } catch {
        throw new AppError('invalid_state', 400, 'The connection link is invalid or expired; start connecting again');
      }
      const expected = typeof claims.pkce === 'string' ? Buffer.from(claims.pkce) : undefined;
      const actual = browserSecret ? Buffer.from(challengeOf(browserSecret)) : undefined;
      if (!expected || !actual || expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
        throw new AppError('connection_not_started_here', 400, 'This connection was started in another browser or has expired; start connecting again from inboxtrail');
      }
      if (input.error) throw new AppError('consent_denied', 400, 'Google access was not granted');
      if (!input.code) throw new AppError('validation_failed', 400, 'The callback has no code');
      if (typeof claims.wid !== 'string' || !claims.jti || !(await repo.consumeOauthState(claims.jti))) {
        throw new AppError('invalid_state', 400, 'The connection link was already used; start connecting again');
      }
      const userId = claims.sub!;
      const workspaceId = claims.wid;

      let granted;
      try {
        granted = await gmail.exchangeCode(input.code, browserSecret!);
      } catch (error) {
        if (error instanceof GmailError && error.reason === 'invalid_client') {
          // Our client id/secret are wrong: an operator must fix the configuration; the user did nothing wrong.
          logger.error({ alert: 'google_oauth_client_rejected' }, 'Google rejected our OAuth client (invalid_client): check GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET');
          throw new AppError('google_client_misconfigured', 503, 'Connecting Gmail is unavailable right now because of a configuration problem on our side; try again later');
        }
        if (error instanceof GmailError && (error.kind === 'auth_revoked' || error.kind === 'permanent' || error.reason === 'invalid_request')) {
          throw new AppError('code_exchange_failed', 400, 'Google refused the authorization code; start connecting again');
        }
        if (error instanceof GmailError) {
          // Google (its token endpoint or its signing keys) did not answer: nothing the user did. The state is spent.
          logger.warn({ kind: error.kind, status: error.status }, 'Google did not complete a Gmail connection');
          throw new AppError('google_unavailable', 503, 'Google did not answer; start connecting again in a moment');
        }
        throw error;
      }
      // From here on Google holds a grant for us: refused (a 4xx), or not stored because the
      // database gave the save up to a concurrent change (a deadlock), it is revoked unless the
      // address is connected somewhere. That callback cannot be retried (its state is spent):
      // the person starts connecting again.
      const refuseGrant = async (error: unknown): Promise<never> => {
        const lostRace = isConcurrencyFailure(error);
        if (lostRace || (error instanceof AppError && error.status < 500)) await revocation.revokeUnstoredGrant(granted.email, granted.refreshToken ?? granted.accessToken);
        if (lostRace) throw new ConflictError('concurrent_change', 'Another change to this workspace happened at the same moment; start connecting Gmail again');
        throw error;
      };
      if (!granted.scopes.includes(GMAIL_SCOPES.send)) {
        await refuseGrant(new AppError('scope_not_granted', 400, 'Sending permission was not granted; connect again and allow sending'));
      }

      const save = () => repo.transaction(async (tx) => {
        // The address's row first, then the workspace's (the member lock below): the order of a
        // member leaving (their mailboxes marked, then the workspace's row), sync and the send
        // claim. The other way round, a reconnect meeting its owner's leave deadlocked: the
        // callback held the workspace's key and waited for the mailbox the leave had marked,
        // the leave held that and waited for the workspace's row (a server log; one side a 409).
        const existing = await tx.findByEmail(workspaceId, granted.email);
        // The state was signed up to 10 minutes ago: whoever started it must still be a member now,
        // with the sessions they had (removal, account closure and a password change end it), in
        // the membership they started it in (removed and invited back meanwhile, it is another).
        const member = await tx.lockConnectingMember(workspaceId, userId);
        const started = { issuedAt: new Date((claims.iat ?? 0) * 1000) };
        const otherMembership = typeof claims.mbr === 'string' && claims.mbr !== member?.membership;
        if (!member || otherMembership || (typeof claims.sv === 'number' && claims.sv !== member.sessionVersion) || sessionEnded(started, member.sessionsNotBefore)) {
          throw new AppError('invalid_state', 400, 'Whoever started this connection can no longer connect mailboxes here; sign in and start connecting again');
        }
        // Another member's connection of this address is theirs: reconnecting it would hand over
        // their sending, their grants and their mail's subjects (P-03). They, or an admin, disconnect it first.
        if (existing && existing.userId !== userId) {
          throw new ConflictError('mailbox_connected_by_another', 'Another member of this workspace has connected this Gmail address; it can be connected again once they (or an admin) disconnect it');
        }
        const id = existing?.id ?? randomUUID();
        const refreshToken = granted.refreshToken;
        if (!refreshToken && !existing) {
          throw new AppError('no_refresh_token', 400, 'Google returned no offline access; remove inboxtrail at myaccount.google.com/permissions and connect again');
        }
        const syncRequested = claims.sync === true;
        const tokens = {
          ...(refreshToken ? { refreshTokenEnc: cipher.encrypt(refreshToken, tokenContext(id, 'refresh')) } : {}),
          accessTokenEnc: cipher.encrypt(granted.accessToken, tokenContext(id, 'access')),
          accessTokenExpiresAt: granted.expiresAt ?? null,
        };
        const common = {
          userId,
          status: 'active' as const,
          statusReason: null,
          scopes: granted.scopes,
          disclosureVersion: typeof claims.dv === 'string' ? claims.dv : LIMITED_USE_DISCLOSURE.version,
          syncEnabled: syncRequested && granted.scopes.includes(GMAIL_SCOPES.readonly),
          connectedAt: now(),
          ...tokens,
        };
        await tx.audit({
          workspaceId,
          actor: `user:${userId}`,
          action: existing ? 'mailbox.reconnected' : 'mailbox.connected',
          subjectType: 'mailbox',
          subjectId: id,
          detail: { scopes: common.scopes, policyVersion: common.disclosureVersion, sync: common.syncEnabled },
        });
        // Reconnecting an address updates its row: same id, history and budget, never a duplicate.
        if (existing) return { mailbox: (await tx.update(existing.id, common))!, reconnected: true };
        const kind = CONSUMER_DOMAINS.has(granted.email.split('@')[1]!.toLowerCase()) ? 'consumer' : 'workspace';
        const mailbox = await tx.insert({
          id,
          workspaceId,
          email: granted.email,
          kind,
          dailyBudget: deps.config.gmail.dailyBudget[kind],
          refreshTokenEnc: tokens.refreshTokenEnc!,
          ...common,
        });
        return { mailbox, reconnected: false };
      });
      // Two consents of one address finishing at once (two tabs) both find no row; the one that
      // inserts second saves again, now as a reconnect of the row the first made.
      const { mailbox, reconnected } = await onceMoreAfterUniqueViolation(save).catch(refuseGrant);
      await releaseParked(mailbox.id);
      await deps.pacer.forget(mailbox.id);
      deps.onConnected?.(mailbox, { reconnected });
      return present(mailbox);
    },

    async list(auth: AuthContext) {
      return Promise.all((await repo.list(auth.workspaceId)).map(present));
    },

    async update(auth: AuthContext, id: string, patch: { dailyBudget?: number }) {
      const mailbox = await repo.findById(auth.workspaceId, id);
      if (!mailbox) throw new NotFoundError('Mailbox');
      if (mailbox.userId !== auth.userId && auth.role === 'member') throw new ForbiddenError('Only the mailbox owner or an admin can change it');
      const limit = GMAIL_DAILY_SEND_LIMITS[mailbox.kind];
      if (patch.dailyBudget !== undefined && patch.dailyBudget > limit) {
        throw new ValidationError([{ field: 'dailyBudget', message: OVER_GMAIL_DAILY_LIMIT }]);
      }
      // The daily-budget headrooms (the address's and the workspace's rows) are counted
      // again from the next send, reset in the transaction that changes the budget, so a failure
      // leaves the old budget and its headroom together, never the new budget with the old headroom.
      const updated = await repo.updateTogether(id, patch, (tx) => (patch.dailyBudget !== undefined ? deps.pacer.budgetChanged(id, tx) : Promise.resolve()));
      if (!updated) throw new NotFoundError('Mailbox');
      return present(updated);
    },

    /**
     * P-06, P-13: revoke at Google now, delete the synced Gmail data and wipe the tokens now,
     * and mark the mailbox deleted: gone from every API at once, its row purged after
     * PURGE_AFTER_DAYS. Messages we sent stay in the CRM (contact timelines, campaign history).
     */
    async disconnect(auth: AuthContext, id: string) {
      const mailbox = await repo.findById(auth.workspaceId, id);
      if (!mailbox) throw new NotFoundError('Mailbox');
      if (mailbox.userId !== auth.userId && auth.role === 'member') throw new ForbiddenError('Only the mailbox owner or an admin can disconnect it');
      await revokeAndRemove(mailbox, (purgeAfter) => deletionRequested(requesterOf(auth), 'mailbox', id, purgeAfter));
    },

    /**
     * Account closure: every mailbox the user connected (in every workspace), or every
     * mailbox of a workspace that closes, revoked at Google and removed the same way.
     * `actor` names who closed it in the audit rows (`user:<id>`, `system:inactivity`).
     */
    async disconnectAllOf(owner: { userId: string } | { workspaceId: string }, actor: string, requestId?: string) {
      for (const mailbox of await repo.listLiveOf(owner)) {
        await revokeAndRemove(mailbox, (purgeAfter) => deletionRequested({ workspaceId: mailbox.workspaceId, actor, requestId }, 'mailbox', mailbox.id, purgeAfter));
      }
    },

    /**
     * A member leaving: their mailboxes of the workspace removed in the leave's own transaction
     * (`db`), audited as disconnected by `actor`; `revokeRemoved` asks Google after the commit.
     */
    removeMemberMailboxesWithin(db: Db, owner: { workspaceId: string; userId: string }, actor: string, requestId?: string) {
      return revocation.removeWithin(db, owner, (mailbox, purgeAfter) => deletionRequested({ workspaceId: mailbox.workspaceId, actor, requestId }, 'mailbox', mailbox.id, purgeAfter));
    },
    revokeRemoved: revocation.revokeRemoved,

    /** The hourly job: revocations Google did not answer, asked again (mailbox-revocation.ts). */
    retryRevocations: revocation.retryRevocations,

    /** A mailbox of the caller's workspace that the caller may send from (the owner of the connection). */
    async requireSendable(auth: AuthContext, id: string): Promise<MailboxRow> {
      const mailbox = await repo.findById(auth.workspaceId, id);
      if (!mailbox) throw new NotFoundError('Mailbox');
      if (mailbox.userId !== auth.userId) throw new ForbiddenError('Only the person who connected this mailbox can send 1:1 mail from it');
      if (mailbox.status !== 'active') throw mailboxNeedsReconnect();
      return mailbox;
    },

    /**
     * Sends the mailbox has left today: the lesser of its Gmail account's headroom (every record
     * of the address, in every workspace) and its workspace's own. For the senders' decisions
     * only: shown to a user it would tell them about another workspace's mail.
     */
    async remainingBudget(mailbox: MailboxRow): Promise<number> {
      return repo.budgetLeftSince(mailbox.id, new Date(now().getTime() - DAY_MS));
    },

    withGmail: access.withGmail,
  };
}

export type MailboxService = ReturnType<typeof createMailboxService>;
