import type { Config } from '../config.js';
import { isUniqueViolation } from '../db/pg-errors.js';
import { ConflictError, NotFoundError, UnauthorizedError } from '../errors.js';
import { actorOf } from './actor.js';
import type { AccountMailer } from './account-mail.js';
import type { AuthQueries, AuthRepo, UserRow } from './auth.repo.js';
import type { AuthContext } from './auth.service.js';
import { proveCurrentPassword } from './password-recheck.js';
import { hashPassword } from './passwords.js';
import type { IssueSession } from './sessions.js';
import { createSignedTokens, isExpiredTokenError } from './signed-tokens.js';
import type { AuthThrottle } from './throttle.js';

/*
 * P-12 correction: a user changes their own name, password and login address.
 *
 * A password or address change first proves the current password (password-recheck.ts:
 * counted by the login throttle, like a login). A new address is changed only once it is proven: a code is mailed
 * to it, and `confirmEmail` with that code (by the same signed-in user) makes the change —
 * otherwise a stolen session could move the account to an address its owner does not
 * control. The code is a signed token naming the user, the old and the new address, valid
 * 24 hours; it works only while the account still has the old address, so it cannot be
 * replayed after a later change. Whether the new address already belongs to an account is
 * never said to the caller: that address's owner gets a note instead of a code. The time of the
 * last request is kept (users.email_change_requested_at, cleared by the change), so the web
 * app's code step shows only while a change is pending; never the new address or the code.
 *
 *   PATCH /api/me {email, currentPassword} ─▶ mail to new address: code (or note if taken)
 *   POST /api/me/email/verify {code}       ─▶ users.email = new; audit; notice to the old address
 *
 * A new password ends every session of the user in the same transaction (someone who changes a
 * leaked password expects the thief to be out): users.session_version rises by one, so every
 * bearer token and web session started at the old version is refused (even one a sign-in with
 * the old password signs or inserts after the commit: it carries the version read with the old
 * hash), and the web session rows are deleted. The caller keeps going on a new session at the
 * new version: a bearer caller gets a fresh token in the answer (`token`), a web caller gets
 * `sessionVersion` and its page starts a new web session (new cookie value: a stolen copy of the
 * old cookie is dead too). API keys are the workspace's credentials, not the person's: they
 * stay. An address change alone ends nothing.
 */

const EMAIL_CODE_TTL_SECONDS = 24 * 3600;

/** What the caller is told once a new address was asked for (the web app's code step shows it too). */
export const EMAIL_CODE_SENT_MESSAGE = 'Check the new address: we sent it a mail with the next step. Your login address changes once it is confirmed.';

export interface ProfileDeps {
  repo: AuthRepo;
  throttle: AuthThrottle;
  mailer: AccountMailer;
  config: Pick<Config, 'jwt'>;
  present: (user: UserRow) => unknown;
  /** A bearer session token for the user at this session version. */
  issueSession: IssueSession;
  now: () => Date;
}

export function createProfileCorrection(deps: ProfileDeps) {
  const { repo, throttle, mailer } = deps;
  const emailCodes = createSignedTokens(deps.config.jwt, { audience: 'inboxtrail-email-change', ttlSeconds: EMAIL_CODE_TTL_SECONDS });
  const invalidCode = () => new NotFoundError('Email change code', 'email_code_invalid');

  /** One audit row per correction, naming the fields, never their values (and, for a password, what sessions ended). */
  const auditCorrection = (tx: AuthQueries, auth: AuthContext, fields: string[], sessionsEnded?: Record<string, unknown>) =>
    tx.recordAudit({
      workspaceId: auth.workspaceId,
      actor: actorOf(auth),
      requestId: auth.requestId,
      action: 'account.corrected',
      subjectType: 'user',
      subjectId: auth.userId,
      detail: sessionsEnded ? { fields, sessionsEnded } : { fields },
    });

  async function requestEmailChange(user: UserRow, newEmail: string) {
    // Any signed-in person names the address, so it meets the per-recipient limit of account mail
    // (throttle.ts mayMail) as signup does: past it the caller is answered as always and nothing
    // is mailed, whether or not the address has an account (the answer must not tell which).
    const quota = await throttle.mayMail(newEmail);
    if (!quota.allowed) return;
    const mail = (await repo.findUserByEmail(newEmail))
      ? {
          subject: 'Someone asked to use your address for another inboxtrail account',
          text: 'An inboxtrail account already uses this address, so it cannot be given to another one. Nothing changed. If this was not you, you can ignore this mail.',
        }
      : {
          subject: 'Confirm your new inboxtrail login address',
          text: `Your confirmation code is:\n\n${emailCodes.sign({ from: user.email, to: newEmail }, user.id)}\n\nIt works for 24 hours: enter it on your Account page in the inboxtrail web app, or POST /api/me/email/verify {"code": "…"}, while signed in. If you did not ask for this, ignore this mail: nothing changes.`,
        };
    try {
      await mailer.send({ to: newEmail, ...mail });
    } catch (error) {
      // Not sent: it does not use up the address's hour.
      await quota.undo();
      throw error;
    }
  }

  return {
    /** Name and password now; a new address is only asked for (see confirmEmail). */
    async updateProfile(auth: AuthContext, input: { name?: string | null; email?: string; currentPassword?: string; newPassword?: string }, clientAddress: string) {
      const user = await repo.findUserById(auth.userId);
      if (!user) throw new UnauthorizedError();
      const wantsNewEmail = input.email !== undefined && input.email !== user.email;
      if (input.newPassword !== undefined || wantsNewEmail) await proveCurrentPassword(throttle, user, input.currentPassword, auth, clientAddress);
      // Each request mails an address the caller chose: besides each address's own limit, one
      // person asks for only so many an hour (429), so one account cannot mail a list of strangers.
      if (wantsNewEmail) await throttle.admitEmailChange(user.id);

      // The mail first: if the relay refuses the new address (or is down), the answer is an error,
      // so nothing else of the request may have been written yet.
      if (wantsNewEmail) await requestEmailChange(user, input.email!);

      const changes: { name?: string | null; passwordHash?: string } = {};
      if (input.name !== undefined) changes.name = input.name;
      if (input.newPassword !== undefined) changes.passwordHash = await hashPassword(input.newPassword);
      let updated = user;
      /** The user's session version after a password change: the caller's next session starts at it. */
      let sessionVersion: number | undefined;
      if (Object.keys(changes).length > 0) {
        updated = await repo.transaction(async (tx) => {
          const row = await tx.updateUser(auth.userId, changes);
          const fields = Object.keys(changes).map((field) => (field === 'passwordHash' ? 'password' : field));
          if (!changes.passwordHash) {
            await auditCorrection(tx, auth, fields);
          } else {
            const ended = await tx.endSessions(auth.userId);
            sessionVersion = ended.sessionVersion;
            await auditCorrection(tx, auth, fields, { sessionVersion, webSessions: ended.webSessions, callerSession: auth.session?.kind ?? 'none' });
          }
          return row!;
        });
      }
      // Marked whether a code or a note went out: the caller is told the same either way.
      if (wantsNewEmail) await repo.updateUser(user.id, { emailChangeRequestedAt: deps.now() });
      return {
        user: deps.present(updated),
        // The caller's own session has just ended with the others: a token caller gets its successor
        // here; a web caller's page starts a new web session at `sessionVersion` (account.pages.ts).
        ...(sessionVersion !== undefined && auth.session?.kind === 'token' ? { token: deps.issueSession(auth.userId, auth.workspaceId, sessionVersion, auth.session.membership) } : {}),
        ...(sessionVersion !== undefined && auth.session?.kind === 'web' ? { sessionVersion } : {}),
        ...(wantsNewEmail ? { email: { status: 'verification_sent' as const, message: EMAIL_CODE_SENT_MESSAGE } } : {}),
      };
    },

    /**
     * Whether the caller asked for a new login address whose code still works (the web app shows
     * the code step only then): asked less than the code's lifetime ago and not confirmed since.
     */
    async emailChangePending(auth: AuthContext): Promise<boolean> {
      const requestedAt = (await repo.findUserById(auth.userId))?.emailChangeRequestedAt;
      return !!requestedAt && deps.now().getTime() - requestedAt.getTime() < EMAIL_CODE_TTL_SECONDS * 1000;
    },

    /** The code mailed to the new address, used by the same signed-in user, changes the login address. */
    async confirmEmail(auth: AuthContext, code: string) {
      let claims;
      try {
        claims = emailCodes.verify(code);
      } catch (error) {
        if (isExpiredTokenError(error)) throw new NotFoundError('Email change code', 'email_code_expired');
        throw invalidCode();
      }
      if (claims.sub !== auth.userId || typeof claims.from !== 'string' || typeof claims.to !== 'string') throw invalidCode();
      const { from, to } = claims as { from: string; to: string };
      try {
        const user = await repo.transaction(async (tx) => {
          const current = await tx.findUserById(auth.userId);
          // Used already, or superseded by a later change: the account no longer has the old address.
          if (!current || current.email !== from) throw invalidCode();
          if (await tx.findUserByEmail(to)) throw new ConflictError('email_taken', 'Another account uses this address now; nothing was changed');
          const row = await tx.updateUser(auth.userId, { email: to, emailChangeRequestedAt: null });
          await auditCorrection(tx, auth, ['email']);
          return row!;
        });
        // The change is made: the notice to the old address is best effort (that address may be
        // why it changed), so its refusal does not turn the answer into an error (the mailer logs it).
        await mailer
          .send({
            to: from,
            subject: 'Your inboxtrail login address was changed',
            text: 'The login address of your inboxtrail account was changed to another address, confirmed from that address. If this was not you, contact your workspace owner at once.',
          })
          .catch(() => undefined);
        return { user: deps.present(user) };
      } catch (error) {
        if (isUniqueViolation(error)) throw new ConflictError('email_taken', 'Another account uses this address now; nothing was changed');
        throw error;
      }
    },
  };
}
