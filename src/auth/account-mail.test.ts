import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import { createAccountMailer } from './account-mail.js';

/* The outbox-file mailer (no SMTP_URL, outside tests): written to DATA_DIR, and a failure to write is a 503 that says nothing of the mail. */
const root = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-account-mail-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const lines: string[] = [];
const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
const mail = { to: 'outbox-person@example.com', subject: 'Confirm your inboxtrail account', text: 'Your confirmation code is: secret-code' };

describe('account mail to the outbox file', () => {
  it('appends the mail to DATA_DIR/outbox.txt', async () => {
    const dataDir = path.join(root, 'data');
    await createAccountMailer({ from: 'x@example.com', env: 'development', dataDir, logger }).send(mail);
    expect(readFileSync(path.join(dataDir, 'outbox.txt'), 'utf8')).toContain('secret-code');
  });

  it('a directory it cannot write (here a file stands where it should be) is 503 account_mail_unavailable, logged without the mail', async () => {
    const dataDir = path.join(root, 'not-a-directory');
    writeFileSync(dataDir, '');
    await expect(createAccountMailer({ from: 'x@example.com', env: 'development', dataDir, logger }).send(mail)).rejects.toMatchObject({ code: 'account_mail_unavailable', status: 503 });
    const logged = lines.join('');
    expect(logged).toContain('account mail not written to the outbox file');
    expect(logged).not.toContain('outbox-person');
    expect(logged).not.toContain('secret-code');
  });
});
