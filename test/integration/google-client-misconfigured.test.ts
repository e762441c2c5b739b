import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { GmailError } from '../../src/gmail/gmail-errors.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { connectMailbox, connectedMailbox } from '../helpers/gmail.js';
import { startTestApp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * Issue 9: Google answering invalid_client is our configuration, not the user's grant; so is a
 * token refresh answered invalid_request (our request was malformed).
 */

const ctx = useAppWithOwner();
const invalidClient = { kind: 'googleError', endpoint: 'token', status: 401, reason: 'invalid_client' } as const;

describe('invalid_client from Google', () => {
  it('on connect: a clear 503 and an alert, nothing stored', async () => {
    ctx.app.sandbox.control.createMailbox({ email: 'cfg@acme.test' });
    ctx.app.sandbox.control.injectFault({ ...invalidClient, times: 1 });
    const { response } = await connectMailbox(ctx.app, ctx.owner.token, 'cfg@acme.test');
    expect(response.status).toBe(503);
    expect(response.body.error.code).toBe('google_client_misconfigured');
    expect((await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token })).body.mailboxes).toEqual([]);
    expect(ctx.app.logs.join('')).toContain('google_oauth_client_rejected');
  });

  it('on connect, invalid_request (the browser\'s exchange may be what is malformed): a 400 code_exchange_failed, never a 5xx', async () => {
    ctx.app.sandbox.control.createMailbox({ email: 'cfg-request@acme.test' });
    ctx.app.sandbox.control.injectFault({ kind: 'googleError', endpoint: 'token', status: 400, reason: 'invalid_request', times: 1 });
    const { response } = await connectMailbox(ctx.app, ctx.owner.token, 'cfg-request@acme.test');
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('code_exchange_failed');
  });

  it.each([
    ['invalid_client', 401, 'google_oauth_client_rejected'],
    ['invalid_request', 400, 'google_oauth_request_rejected'],
  ] as const)('on a token refresh answered %s: the mailbox stays active (no needs_reconnect), the error is temporary, an alert is logged', async (reason, status, alert) => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, `refresh-${reason}@acme.test`);
    // A second process with no cached access token must refresh; Google refuses our client.
    await ctx.app.database.db.execute(sql`update mailboxes set access_token_enc = null, access_token_expires_at = null where id = ${mailbox.id}::uuid`);
    const other = await startTestApp({ database: ctx.app.database });
    try {
      other.sandbox.control.createMailbox({ email: `refresh-${reason}@acme.test` });
      const row = (await createMailboxesRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, mailbox.id))!;
      // The other app's sandbox never issued this grant: make its token endpoint answer invalid_client first.
      other.sandbox.control.injectFault({ kind: 'googleError', endpoint: 'token', status, reason, times: 5 });
      const failure = await other.services.mailboxes.withGmail(row, (api) => api.getProfile()).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(GmailError);
      expect((failure as GmailError).kind).toBe('temporary');
      const after = (await createMailboxesRepo(ctx.app.database.db).findById(ctx.owner.workspaceId, mailbox.id))!;
      expect(after.status).toBe('active');
      expect(other.logs.join('')).toContain(alert);
    } finally {
      await other.close();
    }
  });
});
