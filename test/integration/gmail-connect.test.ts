import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { LIMITED_USE_DISCLOSURE } from '../../src/gmail/disclosure.js';
import { createMailboxesRepo } from '../../src/gmail/mailboxes.repo.js';
import { createTokenCipher, tokenContext } from '../../src/gmail/token-cipher.js';
import { connectMailbox, connectedMailbox, cookiesFrom } from '../helpers/gmail.js';
import { countRows, snapshotCounts } from '../helpers/test-db.js';
import { signUp, startTestApp, TEST_ENV, useAppWithOwner } from '../helpers/test-app.js';

const ctx = useAppWithOwner();

const SEND = 'https://www.googleapis.com/auth/gmail.send';
const READONLY = 'https://www.googleapis.com/auth/gmail.readonly';

async function dumpAllRows(): Promise<string> {
  const tables = (await ctx.app.database.db.execute(
    sql`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`,
  )) as unknown as { rows: { name: string }[] };
  let dump = '';
  for (const { name } of tables.rows) {
    const rows = (await ctx.app.database.db.execute(sql.raw(`select row_to_json(t)::text as j from "${name}" t`))) as unknown as { rows: { j: string }[] };
    dump += rows.rows.map((r) => r.j).join('\n');
  }
  return dump;
}

/**
 * Row counts of every table but mailbox_limits: a connection's first sync starts in the
 * background and creates its mailbox's limits row whenever it first asks the pacer — not
 * something a rejected callback wrote.
 */
async function counts(): Promise<Record<string, number>> {
  const { mailbox_limits: _limits, ...rest } = await snapshotCounts(ctx.app.database.db);
  return rest;
}

describe('connecting Gmail', () => {
  it('P-05 shows the Limited Use disclosure before the consent step, then goes to Google', async () => {
    const page = await ctx.app.api('GET', '/api/gmail/connect', { token: ctx.owner.token, headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.text).toContain('Limited Use');
    expect(page.text).toContain(`Disclosure version ${LIMITED_USE_DISCLOSURE.version}`);
    expect(page.text).toContain(ctx.app.sandbox.urls.authorize.replace(/&/g, '&amp;'));

    const json = await ctx.app.api('GET', '/api/gmail/connect', { token: ctx.owner.token, headers: { accept: 'application/json' } });
    expect(json.body.disclosure.version).toBe(LIMITED_USE_DISCLOSURE.version);

    const onward = await ctx.app.api('GET', `/api/gmail/connect?acknowledge=${LIMITED_USE_DISCLOSURE.version}`, {
      token: ctx.owner.token,
      headers: { accept: 'text/html' },
    });
    expect(onward.status).toBe(302);
    expect(onward.headers.get('location')).toMatch(new RegExp(`^${ctx.app.sandbox.urls.authorize}`));
  });

  it('P-01 asks only for the scopes the enabled features need, offline and incremental', async () => {
    const sendOnly = new URL((await ctx.app.api('GET', '/api/gmail/connect', { token: ctx.owner.token, headers: { accept: 'application/json' } })).body.url);
    expect(sendOnly.searchParams.get('scope')!.split(' ').sort()).toEqual(['email', 'openid', SEND].sort());
    expect(sendOnly.searchParams.get('access_type')).toBe('offline');
    expect(sendOnly.searchParams.get('include_granted_scopes')).toBe('true');
    const withSync = new URL(
      (await ctx.app.api('GET', '/api/gmail/connect?sync=true', { token: ctx.owner.token, headers: { accept: 'application/json' } })).body.url,
    );
    expect(withSync.searchParams.get('scope')!.split(' ')).toContain(READONLY);
  });

  it('the whole flow stores the mailbox with its scopes, budget and disclosure version', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'alice@acme.test');
    expect(mailbox).toMatchObject({ email: 'alice@acme.test', status: 'active', kind: 'workspace', dailyBudget: 2000, sentToday: 0, disclosureVersion: LIMITED_USE_DISCLOSURE.version });
    expect(mailbox.scopes).toContain(SEND);
    expect(mailbox.scopes).not.toContain(READONLY);
    const listed = await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token });
    expect(listed.body.mailboxes.map((m: { email: string }) => m.email)).toContain('alice@acme.test');

    const consumer = await connectedMailbox(ctx.app, ctx.owner.token, 'someone@gmail.com');
    expect(consumer).toMatchObject({ kind: 'consumer', dailyBudget: 500 });
  });

  it('reconnecting the same address updates the mailbox, never duplicates it', async () => {
    const first = await connectedMailbox(ctx.app, ctx.owner.token, 'again@acme.test');
    const second = await connectedMailbox(ctx.app, ctx.owner.token, 'Again@ACME.test', { sync: true });
    expect(second.id).toBe(first.id);
    expect(second.scopes).toContain(READONLY);
    const rows = (await ctx.app.database.db.execute(sql`select count(*)::int as n from mailboxes where lower(email) = 'again@acme.test'`)) as unknown as {
      rows: { n: number }[];
    };
    expect(Number(rows.rows[0]!.n)).toBe(1);
  });

  it('two consents of one new address finishing at the same moment (two tabs) make one mailbox, never a 500', async () => {
    for (let round = 0; round < 3; round++) {
      const email = `two-tabs-${round}@acme.test`;
      const [a, b] = await Promise.all([connectMailbox(ctx.app, ctx.owner.token, email), connectMailbox(ctx.app, ctx.owner.token, email)]);
      expect([a.response.status, b.response.status], a.response.text + b.response.text).toEqual([201, 201]);
      expect(a.response.body.id).toBe(b.response.body.id);
      const rows = (await ctx.app.database.db.execute(sql`select count(*)::int as n from mailboxes where email = ${email}`)) as unknown as { rows: { n: number }[] };
      expect(Number(rows.rows[0]!.n)).toBe(1);
    }
  });

  it('a callback state is single-use, signed and bound to the user; a denial is a clear 400', async () => {
    ctx.app.sandbox.control.createMailbox({ email: 'replay@acme.test' });
    const { start, callbackQuery, response } = await connectMailbox(ctx.app, ctx.owner.token, 'replay@acme.test');
    expect(response.status).toBe(201);
    const before = await counts();
    const replay = await ctx.app.api('GET', `/api/gmail/callback${callbackQuery}`, { headers: { accept: 'application/json', cookie: cookiesFrom(start) } });
    expect(replay.status).toBe(400);
    expect(replay.body.error.code).toBe('invalid_state');

    const params = new URLSearchParams(callbackQuery);
    params.set('state', `${params.get('state')}x`);
    const tampered = await ctx.app.api('GET', `/api/gmail/callback?${params}`, { headers: { accept: 'application/json', cookie: cookiesFrom(start) } });
    expect(tampered.body.error.code).toBe('invalid_state');
    const noState = await ctx.app.api('GET', '/api/gmail/callback?code=abc', { headers: { accept: 'application/json' } });
    expect(noState.status).toBe(400);
    expect(await counts()).toEqual(before);

    ctx.app.sandbox.control.queueAuthorization({ decision: 'deny' });
    const denied = await connectMailbox(ctx.app, ctx.owner.token, 'replay@acme.test');
    expect(denied.response.status).toBe(400);
    expect(denied.response.body.error.code).toBe('consent_denied');
  });

  it('Google not answering the code exchange is a 503 google_unavailable that stores nothing, never a 500; connecting again works', async () => {
    ctx.app.sandbox.control.createMailbox({ email: 'outage@acme.test' });
    // Only the spent state is recorded (used_oauth_states): no mailbox, no token, no audit entry.
    const withoutStates = async () => {
      const { used_oauth_states: _spent, ...rest } = await counts();
      return rest;
    };
    const before = await withoutStates();
    for (const status of [503, 500] as const) {
      // Enough failures for every retry of Google's client.
      const fault = ctx.app.sandbox.control.injectFault({ kind: 'backendError', endpoint: 'token', status, times: 100 });
      try {
        const { response } = await connectMailbox(ctx.app, ctx.owner.token, 'outage@acme.test');
        expect([response.status, response.body.error?.code]).toEqual([503, 'google_unavailable']);
        expect(await withoutStates()).toEqual(before);
      } finally {
        ctx.app.sandbox.control.removeFault(fault.id);
      }
    }
    expect((await connectMailbox(ctx.app, ctx.owner.token, 'outage@acme.test')).response.status).toBe(201);
  });

  it("Google refusing a grant the mailbox no longer holds (reconnected, or disconnected, while a call ran) leaves the mailbox as it is now: a temporary failure, never needs_reconnect", async () => {
    const { mailboxes } = ctx.app.services;
    const mailboxesRepo = createMailboxesRepo(ctx.app.database.db);
    const statusOf = async (id: string) =>
      ((await ctx.app.database.db.execute(sql`select status, refresh_token_enc, deleted_at is not null as deleted from mailboxes where id = ${id}::uuid`)) as unknown as {
        rows: { status: string; refresh_token_enc: string; deleted: boolean }[];
      }).rows[0]!;
    // A call that began before: the row as it read it, its access token gone so that it refreshes with its grant.
    const inFlight = async (id: string) => ({ ...(await mailboxesRepo.findByIdUnscoped(id))!, accessTokenEnc: null, accessTokenExpiresAt: null });

    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'regrant@acme.test');
    const before = await inFlight(mailbox.id);
    expect((await connectedMailbox(ctx.app, ctx.owner.token, 'regrant@acme.test')).id).toBe(mailbox.id);
    const reconnected = await statusOf(mailbox.id);
    expect(reconnected.refresh_token_enc).not.toBe(before.refreshTokenEnc);
    ctx.app.sandbox.control.injectFault({ kind: 'invalidGrant', mailbox: 'regrant@acme.test' });
    const stale = await mailboxes.withGmail(before, (api) => api.getProfile()).catch((error: unknown) => error);
    expect(stale).toMatchObject({ name: 'GmailError', kind: 'temporary', reason: 'grant_replaced' });
    expect(await statusOf(mailbox.id)).toEqual(reconnected);

    const leaving = await connectedMailbox(ctx.app, ctx.owner.token, 'leaving-midcall@acme.test');
    const running = await inFlight(leaving.id);
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${leaving.id}`, { token: ctx.owner.token })).status).toBe(204);
    // Disconnecting revoked the grant at Google: the running call's refresh gets invalid_grant.
    const gone = await mailboxes.withGmail(running, (api) => api.getProfile()).catch((error: unknown) => error);
    expect(gone).toMatchObject({ kind: 'temporary', reason: 'grant_replaced' });
    expect(await statusOf(leaving.id)).toMatchObject({ status: 'active', deleted: true });
    const events = (await ctx.app.database.db.execute(sql`select count(*)::int as n from webhook_events where type = 'mailbox.needs_reconnect'`)) as unknown as { rows: { n: number }[] };
    expect(events.rows[0]!.n).toBe(0);

    // The grant the mailbox does hold, refused: marked as before — also when a key rotation sealed
    // it anew while the call ran (another ciphertext, the same refresh token: not a new grant).
    ctx.app.sandbox.control.injectFault({ kind: 'invalidGrant', mailbox: 'regrant@acme.test' });
    const current = await inFlight(mailbox.id);
    const cipher = createTokenCipher(ctx.app.config.tokenEncryptionKeys);
    const resealed = cipher.encrypt(cipher.decrypt(current.refreshTokenEnc, tokenContext(mailbox.id, 'refresh')), tokenContext(mailbox.id, 'refresh'));
    expect(resealed).not.toBe(current.refreshTokenEnc);
    await ctx.app.database.db.execute(sql`update mailboxes set refresh_token_enc = ${resealed} where id = ${mailbox.id}::uuid`);
    expect(await mailboxes.withGmail(current, (api) => api.getProfile()).catch((error: unknown) => error)).toMatchObject({ kind: 'auth_revoked' });
    expect((await statusOf(mailbox.id)).status).toBe('needs_reconnect');
  });

  it('connect CSRF: a victim who approves the attacker\'s consent URL is refused, and nothing is stored', async () => {
    const attacker = await signUp(ctx.app);
    ctx.app.sandbox.control.createMailbox({ email: 'victim@acme.test' });
    // The attacker starts a connection in their own browser and sends the consent URL to the victim.
    const attackerStart = await ctx.app.api('GET', '/api/gmail/connect?loginHint=victim%40acme.test', { token: attacker.token, headers: { accept: 'application/json' } });
    expect(attackerStart.status).toBe(200);
    const consentUrl = new URL(attackerStart.body.url);
    // PKCE on the authorization request, S256.
    expect(consentUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(consentUrl.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const cookie = attackerStart.headers.getSetCookie().join(' ');
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).toMatch(/Path=\/api\/gmail\/callback/);

    // The victim approves; their browser follows Google's redirect to our callback.
    const consent = await fetch(consentUrl, { redirect: 'manual' });
    const callback = new URL(consent.headers.get('location')!);
    const before = await counts();
    // Without the cookie (the victim never started a connection)…
    const bare = await ctx.app.api('GET', `/api/gmail/callback${callback.search}`, { headers: { accept: 'application/json' } });
    expect([bare.status, bare.body.error.code]).toEqual([400, 'connection_not_started_here']);
    // …and with the victim's own cookie from a connection they started themselves.
    const victimStart = await ctx.app.api('GET', '/api/gmail/connect', { token: ctx.owner.token, headers: { accept: 'application/json' } });
    const other = await ctx.app.api('GET', `/api/gmail/callback${callback.search}`, { headers: { accept: 'application/json', cookie: cookiesFrom(victimStart) } });
    expect([other.status, other.body.error.code]).toEqual([400, 'connection_not_started_here']);
    // A browser is refused too, and taken back to the mailboxes page saying so (not left on a JSON error).
    const page = await ctx.app.api('GET', `/api/gmail/callback${callback.search}`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/app/mailboxes?notice=connect_expired');
    // Someone denying access on Google's page after starting a connection: the same way back, saying so.
    const victimState = new URL(victimStart.body.url).searchParams.get('state')!;
    const denied = await ctx.app.api('GET', `/api/gmail/callback?error=access_denied&state=${encodeURIComponent(victimState)}`, { headers: { accept: 'text/html', cookie: cookiesFrom(victimStart) } });
    expect(denied.headers.get('location')).toBe('/app/mailboxes?notice=connect_denied');
    expect(await counts()).toEqual(before);
    const listed = await ctx.app.api('GET', '/api/mailboxes', { token: attacker.token });
    expect(listed.body.mailboxes).toEqual([]);
  });

  it('PKCE is real: the code cannot be redeemed without the verifier (the sandbox checks it)', async () => {
    ctx.app.sandbox.control.createMailbox({ email: 'pkce@acme.test' });
    const start = await ctx.app.api('GET', '/api/gmail/connect?loginHint=pkce%40acme.test', { token: ctx.owner.token, headers: { accept: 'application/json' } });
    const consent = await fetch(start.body.url, { redirect: 'manual' });
    const code = new URL(consent.headers.get('location')!).searchParams.get('code')!;
    const { settings } = ctx.app.google;
    const redeem = await fetch(ctx.app.sandbox.urls.token, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: new URL(start.body.url).searchParams.get('redirect_uri')!,
        client_id: settings.clientId,
        client_secret: settings.clientSecret,
        code_verifier: 'a-guess-that-is-long-enough-to-be-a-verifier-0123456789',
      }),
    });
    expect(redeem.status).toBe(400);
    expect(await redeem.text()).toContain('invalid_grant');
    // The real browser still finishes it: the code was not spent by the failed guess.
    const finished = await ctx.app.api('GET', `/api/gmail/callback${new URL(consent.headers.get('location')!).search}`, {
      headers: { accept: 'application/json', cookie: cookiesFrom(start) },
    });
    expect(finished.status).toBe(201);
  });

  it('P-06 tokens are unreadable in a dump of every table', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'secretive@acme.test');
    const row = (await ctx.app.database.db.execute(sql`select refresh_token_enc, access_token_enc from mailboxes where id = ${mailbox.id}::uuid`)) as unknown as {
      rows: { refresh_token_enc: string; access_token_enc: string }[];
    };
    const cipher = createTokenCipher(ctx.app.config.tokenEncryptionKeys);
    const refreshToken = cipher.decrypt(row.rows[0]!.refresh_token_enc, `mailbox:${mailbox.id}:refresh`);
    const accessToken = cipher.decrypt(row.rows[0]!.access_token_enc, `mailbox:${mailbox.id}:access`);
    expect(refreshToken.length).toBeGreaterThan(10);
    const dump = await dumpAllRows();
    expect(dump).toContain('secretive@acme.test');
    expect(dump).not.toContain(refreshToken);
    expect(dump).not.toContain(accessToken);
    expect(dump).not.toContain(Buffer.from(refreshToken).toString('base64'));
    // Nor in any log line.
    expect(ctx.app.logs.join('')).not.toContain(refreshToken);
    expect(ctx.app.logs.join('')).not.toContain(accessToken);
  });

  it('disconnecting revokes at Google, deletes the synced data and the tokens at once, keeps sent mail, and leaves the row to the purge (P-13)', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'leaving@acme.test');
    const revokesBefore = ctx.app.sandbox.control.callCounts().revoke;
    await ctx.app.database.db.execute(sql`insert into messages (workspace_id, mailbox_id, direction, status, synced, from_address, to_addresses)
      values (${ctx.owner.workspaceId}::uuid, ${mailbox.id}::uuid, 'inbound', 'received', true, 'x@y.test', '{leaving@acme.test}'),
             (${ctx.owner.workspaceId}::uuid, ${mailbox.id}::uuid, 'outbound', 'sent', false, 'leaving@acme.test', '{x@y.test}')`);
    const res = await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token });
    expect(res.status).toBe(204);
    expect(ctx.app.sandbox.control.callCounts().revoke).toBe(revokesBefore + 1);
    expect(ctx.app.sandbox.control.getMailbox('leaving@acme.test')!.grants).toEqual([]);
    const left = (await ctx.app.database.db.execute(
      sql`select synced, mailbox_id from messages where from_address in ('x@y.test', 'leaving@acme.test')`,
    )) as unknown as { rows: { synced: boolean; mailbox_id: string | null }[] };
    expect(left.rows).toEqual([{ synced: false, mailbox_id: mailbox.id }]);
    const [marked] = ((await ctx.app.database.db.execute(
      sql`select refresh_token_enc, access_token_enc, deleted_at is not null as deleted, purge_after - deleted_at as window from mailboxes where id = ${mailbox.id}::uuid`,
    )) as unknown as { rows: { refresh_token_enc: string; access_token_enc: string | null; deleted: boolean; window: unknown }[] }).rows;
    expect(marked).toMatchObject({ refresh_token_enc: '', access_token_enc: null, deleted: true });
    expect((await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token })).body.mailboxes.map((m: { id: string }) => m.id)).not.toContain(mailbox.id);
  });

  it('P-06 a disconnect Google did not answer is revoked later: the token stays, encrypted, for that alone, and is wiped once Google revoked the grant', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'revoke-later@acme.test');
    const outage = ctx.app.sandbox.control.injectFault({ kind: 'backendError', status: 500, endpoint: 'revoke', times: 1000 });
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: ctx.owner.token })).status).toBe(204);
    expect((await ctx.app.api('GET', '/api/mailboxes', { token: ctx.owner.token })).body.mailboxes.map((m: { id: string }) => m.id)).not.toContain(mailbox.id);
    expect(ctx.app.sandbox.control.getMailbox('revoke-later@acme.test')!.grants).not.toEqual([]);
    const tokenOf = async () =>
      ((await ctx.app.database.db.execute(sql`select refresh_token_enc from mailboxes where id = ${mailbox.id}::uuid`)) as unknown as { rows: { refresh_token_enc: string }[] }).rows[0]!.refresh_token_enc;
    expect(await tokenOf()).not.toBe('');

    // Still down: nothing changes. Google answers again: revoked, wiped, audited.
    expect(await ctx.app.services.mailboxes.retryRevocations()).toBe(0);
    ctx.app.sandbox.control.removeFault(outage.id);
    expect(await ctx.app.services.mailboxes.retryRevocations()).toBe(1);
    expect(ctx.app.sandbox.control.getMailbox('revoke-later@acme.test')!.grants).toEqual([]);
    expect(await tokenOf()).toBe('');
    const audit = (await ctx.app.database.db.execute(
      sql`select action, detail from audit_log where subject_id = ${mailbox.id} and action like 'mailbox.%' order by at`,
    )) as unknown as { rows: { action: string; detail: Record<string, unknown> }[] };
    expect(audit.rows).toMatchObject([
      { action: 'mailbox.connected' },
      { action: 'mailbox.disconnected', detail: { revokedAtGoogle: false, revocationRetried: true } },
      { action: 'mailbox.revocation_retried', detail: { revokedAtGoogle: true } },
    ]);
    expect(await ctx.app.services.mailboxes.retryRevocations()).toBe(0);
  });

  it("P-06 Google's grant is the account's: while the address is connected elsewhere (another workspace, or connected again here) a disconnect and a revocation retry wipe our copy without revoking it", async () => {
    const address = 'shared-grant@acme.test';
    const other = await signUp(ctx.app, { email: `other-${Date.now()}@contoso.test`, workspaceName: 'Other' });
    const mine = await connectedMailbox(ctx.app, ctx.owner.token, address);
    const theirs = await connectedMailbox(ctx.app, other.token, address);
    const grants = () => ctx.app.sandbox.control.getMailbox(address)!.grants;

    // Workspace A disconnects: B's connection (the same Google grant) goes on.
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${mine.id}`, { token: ctx.owner.token })).status).toBe(204);
    expect(grants()).not.toEqual([]);
    ctx.app.sandbox.control.expireAccessTokens(address);
    ctx.app.sandbox.control.createMailbox({ email: 'grant-reader@contoso.test' });
    const sent = await ctx.app.api('POST', '/api/messages', { token: other.token, json: { mailboxId: theirs.id, to: 'grant-reader@contoso.test', subject: 'still here', text: 'x' } });
    expect(sent.status, sent.text).toBe(201);

    // B disconnects while Google is down, then connects again: the retry must not revoke the new grant.
    const outage = ctx.app.sandbox.control.injectFault({ kind: 'backendError', status: 500, endpoint: 'revoke', times: 'always' });
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${theirs.id}`, { token: other.token })).status).toBe(204);
    ctx.app.sandbox.control.removeFault(outage.id);
    const again = await connectedMailbox(ctx.app, other.token, address);
    expect(await ctx.app.services.mailboxes.retryRevocations()).toBe(1);
    expect(grants()).not.toEqual([]);
    ctx.app.sandbox.control.expireAccessTokens(address);
    const after = await ctx.app.api('POST', '/api/messages', { token: other.token, json: { mailboxId: again.id, to: 'grant-reader@contoso.test', subject: 'after the retry', text: 'x' } });
    expect(after.status, after.text).toBe(201);
  });

  it('key rotation re-encrypts every token under the new key, and the mailbox keeps working', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'rotate@acme.test');
    const newKey = `v2:${Buffer.alloc(32, 9).toString('base64')}`;
    const rotated = await startTestApp({ database: ctx.app.database, env: { TOKEN_ENCRYPTION_KEYS: `${TEST_ENV.TOKEN_ENCRYPTION_KEYS},${newKey}` } });
    try {
      const { rewritten } = await rotated.services.keyRotation.rotate();
      expect(rewritten).toBeGreaterThanOrEqual(1);
      const rows = (await ctx.app.database.db.execute(sql`select refresh_token_enc, access_token_enc from mailboxes where deleted_at is null`)) as unknown as {
        rows: { refresh_token_enc: string; access_token_enc: string | null }[];
      };
      for (const row of rows.rows) {
        expect(row.refresh_token_enc.startsWith('v2.')).toBe(true);
        if (row.access_token_enc) expect(row.access_token_enc.startsWith('v2.')).toBe(true);
      }
      expect((await rotated.services.keyRotation.rotate()).rewritten).toBe(0);
      // The old key alone can no longer read them; the new list can.
      const oldOnly = createTokenCipher(ctx.app.config.tokenEncryptionKeys);
      expect(() => oldOnly.decrypt(rows.rows[0]!.refresh_token_enc, 'x')).toThrow();
      const listed = await rotated.api('GET', '/api/mailboxes', { token: ctx.owner.token });
      expect(listed.body.mailboxes.find((m: { id: string }) => m.id === mailbox.id).status).toBe('active');
    } finally {
      await rotated.close();
    }
  });

  it('mailbox routes are workspace-scoped: another workspace gets 404 and changes nothing', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'scoped@acme.test');
    const other = await signUp(ctx.app);
    expect((await ctx.app.api('GET', '/api/mailboxes', { token: other.token })).body.mailboxes).toEqual([]);
    const before = await countRows(ctx.app.database.db, 'mailboxes');
    expect((await ctx.app.api('DELETE', `/api/mailboxes/${mailbox.id}`, { token: other.token })).status).toBe(404);
    expect((await ctx.app.api('PATCH', `/api/mailboxes/${mailbox.id}`, { token: other.token, json: { dailyBudget: 5 } })).status).toBe(404);
    expect(await countRows(ctx.app.database.db, 'mailboxes')).toBe(before);
  });
});
