import type { AccountMailer } from '../auth/account-mail.js';
import type { Logger } from '../logger.js';
import type { AccountClosureService } from './account-closure.service.js';
import type { RetentionRepo } from './retention.repo.js';
import { DAY_MS } from '../time.js';

/*
 * Retention windows, applied by the daily privacy job before the purge:
 * - consent history: a record replaced by a newer one is kept CONSENT_HISTORY_RETENTION_DAYS
 *   (the legal proof period), then deleted; a contact's latest record always stays;
 * - P-15 inactive accounts: no login and no API use for INACTIVE_ACCOUNT_PURGE_YEARS → the
 *   owner is mailed INACTIVE_ACCOUNT_WARNING_DAYS before; a login (or any use) in between
 *   cancels it; otherwise the account is closed and purged at once (like a closure the
 *   user asked for, with the 30-day window already behind it).
 * (Raw IPs and user agents of tracking hits have their own sweep: tracking/retention.ts.)
 */

const YEAR_MS = 365.25 * DAY_MS;
const BATCH = 200;

export interface RetentionSettings {
  consentHistoryRetentionDays: number;
  inactiveAccountPurgeYears: number;
  inactiveAccountWarningDays: number;
}

export function createRetentionService(deps: {
  repo: RetentionRepo;
  closure: Pick<AccountClosureService, 'closeInactiveAccount'>;
  mailer: AccountMailer;
  settings: RetentionSettings;
  now?: () => Date;
  logger?: Logger;
}) {
  const { repo, settings } = deps;
  const now = deps.now ?? (() => new Date());

  return {
    async runOnce(): Promise<{ consentsDeleted: number; warned: number; closed: number }> {
      const at = now();
      const consentsDeleted = await repo.deleteSupersededConsents(new Date(at.getTime() - settings.consentHistoryRetentionDays * DAY_MS));

      const horizonMs = settings.inactiveAccountPurgeYears * YEAR_MS;
      const warningMs = settings.inactiveAccountWarningDays * DAY_MS;
      let warned = 0;
      const warnSince = new Date(at.getTime() - horizonMs + warningMs);
      for (const account of await repo.accountsToWarn(warnSince, BATCH)) {
        // Mark first: a mail that fails is retried by nobody, but one sent twice would be worse than late.
        if (!(await repo.markWarned(account.id, at, warnSince))) continue;
        const deletionDate = new Date(Math.max(account.lastActiveAt.getTime() + horizonMs, at.getTime() + warningMs));
        await deps.mailer.send({
          to: account.email,
          subject: 'Your inboxtrail account will be deleted for inactivity',
          text: `Nobody has used this inboxtrail account for a long time. Accounts unused for ${settings.inactiveAccountPurgeYears} years are deleted with their data.\n\nThis account will be deleted on or after ${deletionDate.toISOString().slice(0, 10)}. To keep it, just log in before then.`,
        });
        warned += 1;
      }

      let closed = 0;
      for (const userId of await repo.accountsToClose(new Date(at.getTime() - horizonMs), new Date(at.getTime() - warningMs), BATCH)) {
        await deps.closure.closeInactiveAccount(userId);
        closed += 1;
      }
      if (consentsDeleted + warned + closed > 0) deps.logger?.info({ consentsDeleted, warned, closed }, 'retention windows applied');
      return { consentsDeleted, warned, closed };
    },
  };
}

export type RetentionService = ReturnType<typeof createRetentionService>;
