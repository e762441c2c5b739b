import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { AppError, UnprocessableError } from '../errors.js';
import { errorNameOf, type Logger } from '../logger.js';

/**
 * Mail the service itself sends to account holders (signup confirmation, "someone tried
 * to sign up with your address"), and to a recipient asked to confirm undoing their opt-out
 * (suppression/resubscribe.service.ts). Not Gmail: these go out before anyone connected one,
 * and a recipient's confirmation is ours, not a workspace's mail.
 *  - `SMTP_URL` set: sent over SMTP from `MAIL_FROM`.
 *  - otherwise, in development and production: appended to `<DATA_DIR>/outbox.txt` (a
 *    file the operator reads; never a log line, since the mail carries a code);
 *  - in tests: kept in memory (`outbox`).
 */
export interface AccountMail {
  to: string;
  subject: string;
  text: string;
}

export interface AccountMailer {
  send(mail: AccountMail): Promise<void>;
  /** Mail kept in memory (tests); undefined when mail really leaves the process. */
  readonly outbox?: AccountMail[];
}

export function createAccountMailer(options: { smtpUrl?: string; from: string; env: string; dataDir: string; logger: Logger }): AccountMailer {
  if (options.smtpUrl) {
    const transport = nodemailer.createTransport(options.smtpUrl);
    return {
      async send(mail) {
        try {
          await transport.sendMail({ from: options.from, to: mail.to, subject: mail.subject, text: mail.text });
        } catch (error) {
          throw accountMailFailure(error, options.logger);
        }
      },
    };
  }
  if (options.env === 'test') return createMemoryMailer();
  const file = path.join(options.dataDir, 'outbox.txt');
  options.logger.warn({ file }, 'SMTP_URL is not set: account mail (signup confirmations) is written to a file instead of being sent');
  return {
    async send(mail) {
      try {
        await mkdir(options.dataDir, { recursive: true });
        await appendFile(file, `To: ${mail.to}\nSubject: ${mail.subject}\nDate: ${new Date().toISOString()}\n\n${mail.text}\n\n---\n`, { mode: 0o600 });
      } catch (error) {
        // A full disk, a read-only directory: ours, like a relay that does not answer.
        options.logger.warn({ errorName: errorNameOf(error), code: (error as { code?: unknown }).code }, 'account mail not written to the outbox file');
        throw mailUnavailable();
      }
    },
  };
}

/**
 * What the relay's refusal means to the caller, said without its words: nodemailer's message
 * quotes the server's reply, which names the address (`550 5.1.1 <ann@…>: Recipient address
 * rejected`). A permanent refusal of the recipient (a 5xx answer to RCPT TO) is the
 * address's: 422, fix it. Anything else — a 4xx, no connection, a timeout, and a 5xx elsewhere
 * (our login, our sender, our message: configuration) — is ours: 503, try again.
 * Callers undo what they wrote for the mail.
 */
function accountMailFailure(error: unknown, logger: Logger): AppError {
  const responseCode = (error as { responseCode?: unknown }).responseCode;
  const code = typeof responseCode === 'number' ? responseCode : undefined;
  const { code: kind, command } = error as { code?: unknown; command?: unknown };
  logger.warn(
    { errorName: errorNameOf(error), smtpCode: typeof kind === 'string' ? kind : undefined, command: typeof command === 'string' ? command : undefined, responseCode: code },
    'account mail not sent',
  );
  if (command === 'RCPT TO' && code !== undefined && code >= 500 && code < 600) {
    return new UnprocessableError('email_undeliverable', 'The mail server refused to deliver to this address; check it and try again');
  }
  return mailUnavailable();
}

const mailUnavailable = () => new AppError('account_mail_unavailable', 503, 'The account mail could not be sent just now; nothing was changed, try again shortly');

/** Keeps mail in memory (the newest 1000): tests and benchmarks read codes from `outbox`. */
export function createMemoryMailer(): AccountMailer & { outbox: AccountMail[] } {
  const outbox: AccountMail[] = [];
  return {
    outbox,
    async send(mail) {
      outbox.push(mail);
      if (outbox.length > 1000) outbox.shift();
    },
  };
}

/** The confirmation code of the newest signup mail to `to`, for tests and benchmarks. */
export function lastSignupCode(outbox: readonly AccountMail[], to: string): string | undefined {
  const mail = [...outbox].reverse().find((m) => m.to === to && m.subject.startsWith('Confirm'));
  return mail ? /code is:\n\n(\S+)/.exec(mail.text)?.[1] : undefined;
}
