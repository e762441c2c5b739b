import { gmail, type gmail_v1 } from '@googleapis/gmail';
import { CodeChallengeMethod, OAuth2Client } from 'google-auth-library';
import { GmailError, toGmailError } from './gmail-errors.js';
import { GMAIL_QUOTA_UNITS, type MailboxPacer } from './pacer.js';

/*
 * The ONLY file that imports the Google SDK. Everything else sees plain data and
 * GmailError. Every Gmail call of a mailbox goes through the shared pacer (quota per
 * minute, backoff honouring Retry-After); the SDK's own retries are switched off so
 * that they cannot ignore Retry-After behind our back.
 */

export interface GoogleEndpoints {
  /** Only the origin counts: the SDK rebuilds each URL as new URL('/gmail/v1/…', root). */
  apiRootUrl: string;
  authorizeUrl: string;
  tokenUrl: string;
  revokeUrl: string;
  /** PEM certificates that sign id tokens and Pub/Sub push tokens. */
  certsUrl: string;
}

export interface GoogleClientSettings {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  endpoints: GoogleEndpoints;
  /** How long one messages.send may take before it is given up as ambiguous; default 60 s. */
  sendTimeoutMs?: number;
}

export interface SendOptions {
  /**
   * Runs inside the pacer's turn, right before each HTTP attempt (the first and every retry
   * after a 429 pause): the per-message gate claims or re-checks the send here, after quota
   * was granted, so no pacer wait falls between a claim and its request. Throwing anything
   * that is not a GmailError stops the send before a byte goes out. Once it has returned, the
   * send's outbound `messages` row exists (`sending`): the daily budget counts it from then on.
   */
  beforeAttempt?: () => Promise<void>;
  /** Gmail definitely refused this attempt (nothing went out); the pacer may still retry. */
  onRefused?: () => void;
  /** The send waits out the mailbox's pause (another send's rate limit) before its attempt: nothing went out yet. */
  onPaused?: () => void;
  /**
   * The sender gives up (its worker stops): a send still waiting in the pacer leaves at once,
   * rejected with `signal.reason` and having taken no quota, pace or budget (`MailboxPacer.run`).
   */
  signal?: AbortSignal;
}

export const GOOGLE_DEFAULT_ENDPOINTS: GoogleEndpoints = {
  apiRootUrl: 'https://gmail.googleapis.com',
  authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
  tokenUrl: 'https://oauth2.googleapis.com/token',
  revokeUrl: 'https://oauth2.googleapis.com/revoke',
  certsUrl: 'https://www.googleapis.com/oauth2/v1/certs',
};

export const GMAIL_SCOPES = {
  send: 'https://www.googleapis.com/auth/gmail.send',
  readonly: 'https://www.googleapis.com/auth/gmail.readonly',
} as const;
/** Identity scopes: the id token names the connected address (gmail.send alone cannot read the profile). */
export const IDENTITY_SCOPES = ['openid', 'email'] as const;

export interface MailboxCredentials {
  refreshToken: string;
  accessToken?: string;
  accessTokenExpiresAt?: Date;
}

export interface RefreshedAccessToken {
  accessToken: string;
  expiresAt?: Date;
}

export interface GmailMessageMetadata {
  id: string;
  threadId: string;
  labelIds: string[];
  internalDate?: Date;
  /** Header names lowercased; only the headers asked for. */
  headers: Record<string, string>;
}

export interface GmailHistoryPage {
  addedMessages: { id: string; threadId: string; labelIds: string[] }[];
  historyId: string;
  nextPageToken?: string;
}

/** GmailError reason of a send that got no answer: it may have gone out. */
export const SEND_OUTCOME_UNKNOWN = 'outcome_unknown';
/** A 1:1 send that recovery looked for, as long as it looks, and did not find: reported not sent (never sent again by us). */
export const ONE_TO_ONE_NOT_SENT = 'not_sent';

/** Network failures that happen before a request is sent. */
const NEVER_LEFT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN']);

/** Options on every SDK call: no hidden retries, a bounded wait. */
const CALL_OPTIONS = { retry: false, timeout: 30_000 } as const;
const DEFAULT_SEND_TIMEOUT_MS = 60_000;

const ambiguousSend = () =>
  // No `cause`: the SDK error holds the encoded message and request details.
  new GmailError('permanent', 'Gmail did not confirm the send; it may or may not have gone out', { reason: SEND_OUTCOME_UNKNOWN });

export function createGmailClient(settings: GoogleClientSettings, pacer: MailboxPacer) {
  // forceRefreshOnFailure: a 401 (token revoked or expired early at Google) triggers one
  // refresh before the call fails, so only a dead refresh token surfaces as auth_revoked.
  const newOAuthClient = () =>
    new OAuth2Client({
      forceRefreshOnFailure: true,
      clientId: settings.clientId,
      clientSecret: settings.clientSecret,
      redirectUri: settings.redirectUri,
      endpoints: {
        oauth2AuthBaseUrl: settings.endpoints.authorizeUrl,
        oauth2TokenUrl: settings.endpoints.tokenUrl,
        oauth2RevokeUrl: settings.endpoints.revokeUrl,
        oauth2FederatedSignonPemCertsUrl: settings.endpoints.certsUrl,
      },
    });
  const appClient = newOAuthClient();

  const guard = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      throw toGmailError(error);
    }
  };

  return {
    /** The consent URL: offline access (a refresh token), incremental authorization (P-01). */
    buildAuthorizeUrl(input: { scopes: string[]; state: string; codeChallenge: string; loginHint?: string; forceConsent?: boolean }): string {
      return appClient.generateAuthUrl({
        // PKCE (RFC 7636): only the holder of the verifier can redeem the code this consent yields.
        code_challenge_method: CodeChallengeMethod.S256,
        code_challenge: input.codeChallenge,
        access_type: 'offline',
        include_granted_scopes: true,
        scope: input.scopes,
        state: input.state,
        login_hint: input.loginHint,
        // Google issues a refresh token only on first consent; a reconnect asks again so one comes back.
        prompt: input.forceConsent ? 'consent' : undefined,
      });
    },

    /** Exchanges the callback's code; the address comes from the verified id token. */
    async exchangeCode(code: string, codeVerifier: string) {
      return guard(async () => {
        const { tokens } = await appClient.getToken({ code, codeVerifier });
        if (!tokens.access_token) throw new GmailError('permanent', 'Google returned no access token');
        if (!tokens.id_token) throw new GmailError('permanent', 'Google returned no id token; the email scope is required');
        const ticket = await appClient.verifyIdToken({ idToken: tokens.id_token, audience: settings.clientId });
        const email = ticket.getPayload()?.email;
        if (!email) throw new GmailError('permanent', 'The id token names no email address');
        return {
          email,
          accessToken: tokens.access_token,
          refreshToken: tokens.refresh_token ?? undefined,
          expiresAt: tokens.expiry_date ? new Date(tokens.expiry_date) : undefined,
          scopes: (tokens.scope ?? '').split(/\s+/).filter(Boolean),
        };
      });
    },

    /** Revokes a grant at Google. An already-dead token is not an error: the goal is reached. */
    async revoke(token: string): Promise<void> {
      try {
        await appClient.revokeToken(token);
      } catch (error) {
        const gmailError = toGmailError(error);
        if (gmailError.kind !== 'auth_revoked' && gmailError.status !== 400) throw gmailError;
      }
    },

    /**
     * Verifies a Pub/Sub push OIDC token: signature (Google's certs), issuer, audience, expiry.
     * A token that fails any check is `{valid:false}`; not reaching the certs at all throws a
     * GmailError (temporary), so that the caller can answer 5xx and Pub/Sub retries.
     */
    async verifyPushToken(
      token: string,
      audience: string,
    ): Promise<{ valid: true; email?: string; emailVerified: boolean } | { valid: false; problem: string }> {
      // The same two steps as verifyIdToken, apart so that a network failure is told from a bad token.
      const { certs } = await guard(() => appClient.getFederatedSignonCertsAsync());
      try {
        const ticket = await appClient.verifySignedJwtWithCertsAsync(token, certs, audience, PUSH_TOKEN_ISSUERS);
        const payload = ticket.getPayload();
        return { valid: true, email: payload?.email, emailVerified: payload?.email_verified === true };
      } catch (error) {
        // The library's messages quote the token's payload; keep only a short, fixed description.
        return { valid: false, problem: describeTokenProblem(error) };
      }
    },

    /**
     * A Gmail API bound to one mailbox. `onRefresh` receives each new access token so the
     * caller can store it (encrypted) and not refresh again on every process start.
     */
    forMailbox(mailboxId: string, credentials: MailboxCredentials, onRefresh: (token: RefreshedAccessToken) => void) {
      const auth = newOAuthClient();
      auth.setCredentials({
        refresh_token: credentials.refreshToken,
        access_token: credentials.accessToken,
        expiry_date: credentials.accessTokenExpiresAt?.getTime(),
      });
      auth.on('tokens', (tokens) => {
        if (tokens.access_token) {
          onRefresh({ accessToken: tokens.access_token, expiresAt: tokens.expiry_date ? new Date(tokens.expiry_date) : undefined });
        }
      });
      const api = gmail({ version: 'v1', auth, rootUrl: settings.endpoints.apiRootUrl });
      // messages.send goes through a client without the auth wrapper: google-auth-library
      // re-sends a request once on a 401 or 403 by itself (quota 403s included), behind the
      // pacer and Retry-After, and a re-sent send may be a second copy. Here the token is
      // fetched (and refreshed when due) first, and every retry is the pacer's.
      const sendApi = gmail({ version: 'v1', rootUrl: settings.endpoints.apiRootUrl });
      const sendTimeout = settings.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
      const paced = <T>(units: number, work: () => Promise<T>) => pacer.run(mailboxId, units, () => guard(work));

      return {
        async getProfile() {
          const { data } = await paced(GMAIL_QUOTA_UNITS.profile, () => api.users.getProfile({ userId: 'me' }, CALL_OPTIONS));
          return { email: data.emailAddress ?? '', historyId: data.historyId ?? '' };
        },

        /**
         * Sends once per attempt. A definite refusal (429, 403 quota, 400…) means nothing went
         * out, and the pacer may retry rate limits. Anything that may have reached Gmail
         * without a clear answer — a timeout, a reset connection, a 5xx — is never retried: it
         * surfaces as reason `outcome_unknown`, for the caller to resolve by searching the
         * mailbox for our Message-ID (invariant 3).
         */
        async sendRaw(raw: Buffer, threadId?: string, options: SendOptions = {}) {
          // Once the gate has claimed the send (its `sending` row), the daily budget counts it:
          // a retry takes no second unit of it.
          let claimed = false;
          // A token before the grant: a slow refresh inside it would hold a budget unit that no
          // row counts yet for longer than the recount's grace (0023). Inside, it is cached.
          await guard(() => auth.getAccessToken());
          const { data } = await pacer.run(mailboxId, GMAIL_QUOTA_UNITS.send, async () => {
            // The token first (a refresh may take a while), so that the gate is the last step before the request.
            const { token } = await guard(() => auth.getAccessToken());
            await options.beforeAttempt?.();
            if (options.beforeAttempt) claimed = true;
            try {
              return await sendApi.users.messages.send(
                { userId: 'me', requestBody: { raw: raw.toString('base64url'), threadId } },
                { retry: false, timeout: sendTimeout, headers: { Authorization: `Bearer ${token}` } },
              );
            } catch (error) {
              const gmailError = toGmailError(error);
              if (gmailError.status === 401) {
                // Refused before sending: the access token died early. Refresh on the next attempt (the pacer's).
                auth.setCredentials({ ...auth.credentials, access_token: undefined, expiry_date: 1 });
                options.onRefused?.();
                throw new GmailError('temporary', 'Gmail refused the access token; refreshing it', { status: 401, reason: 'access_token_rejected' });
              }
              if (gmailError.status !== undefined && gmailError.status >= 500) throw ambiguousSend();
              const noAnswer = gmailError.status === undefined && gmailError.kind === 'temporary';
              // A refused or unresolvable connection never carried the message: safe to retry.
              if (noAnswer && !NEVER_LEFT.has(gmailError.reason ?? '')) throw ambiguousSend();
              options.onRefused?.();
              throw gmailError;
            }
          }, { send: true, alreadyCounted: () => claimed, onPaused: options.onPaused, signal: options.signal });
          return { id: data.id ?? '', threadId: data.threadId ?? '' };
        },

        /**
         * Gmail ids of the mailbox's sent mail with this RFC 822 Message-ID (crash recovery,
         * invariant 3). Sent only: a copy delivered into the inbox (anyone who got the message
         * can mail it back in) does not show that this mailbox sent it.
         */
        async findByRfc822MessageId(rfc822MessageId: string) {
          const { data } = await paced(GMAIL_QUOTA_UNITS.list, () =>
            api.users.messages.list({ userId: 'me', q: `rfc822msgid:${rfc822MessageId}`, labelIds: ['SENT'], includeSpamTrash: true }, CALL_OPTIONS),
          );
          return (data.messages ?? []).map((m) => ({ id: m.id ?? '', threadId: m.threadId ?? '' }));
        },

        async listMessageIds(input: { query?: string; labelIds?: string[]; pageToken?: string; maxResults?: number; includeSpamTrash?: boolean }) {
          const { data } = await paced(GMAIL_QUOTA_UNITS.list, () =>
            api.users.messages.list(
              { userId: 'me', q: input.query, labelIds: input.labelIds, pageToken: input.pageToken, maxResults: input.maxResults, includeSpamTrash: input.includeSpamTrash },
              CALL_OPTIONS,
            ),
          );
          return { ids: (data.messages ?? []).map((m) => m.id ?? '').filter(Boolean), nextPageToken: data.nextPageToken ?? undefined };
        },

        async getMetadata(messageId: string, headerNames: string[]): Promise<GmailMessageMetadata> {
          const { data } = await paced(GMAIL_QUOTA_UNITS.get, () =>
            api.users.messages.get({ userId: 'me', id: messageId, format: 'metadata', metadataHeaders: headerNames }, CALL_OPTIONS),
          );
          return toMetadata(data);
        },

        /**
         * The whole message as RFC 822 bytes. Content is read only through message-content.ts, the
         * privacy guard (P-03); the one other caller is sync, for mailer-daemon reports (DSNs).
         */
        async getRaw(messageId: string): Promise<Buffer> {
          const { data } = await paced(GMAIL_QUOTA_UNITS.get, () => api.users.messages.get({ userId: 'me', id: messageId, format: 'raw' }, CALL_OPTIONS));
          return Buffer.from(data.raw ?? '', 'base64url');
        },

        /**
         * Messages added since `startHistoryId`, and those taken out of Spam since ("Not spam"): a
         * reply or a notice that arrived in Spam was skipped then and must be read now. A GmailError
         * of kind not_found means "too old: resync".
         */
        async listAddedSince(startHistoryId: string, pageToken?: string): Promise<GmailHistoryPage> {
          const { data } = await paced(GMAIL_QUOTA_UNITS.history, () =>
            api.users.history.list({ userId: 'me', startHistoryId, historyTypes: ['messageAdded', 'labelRemoved'], pageToken }, CALL_OPTIONS),
          );
          const asListed = (m: { id?: string | null; threadId?: string | null; labelIds?: string[] | null } | undefined) => ({ id: m?.id ?? '', threadId: m?.threadId ?? '', labelIds: m?.labelIds ?? [] });
          const addedMessages = (data.history ?? []).flatMap((h) => [
            ...(h.messagesAdded ?? []).map((a) => asListed(a.message)),
            // Taken out of Spam or Trash: listed by no query while there, it may not have been read.
            ...(h.labelsRemoved ?? []).filter((r) => r.labelIds?.some((l) => l === 'SPAM' || l === 'TRASH')).map((r) => asListed(r.message)),
          ]);
          return { addedMessages: addedMessages.filter((m) => m.id), historyId: data.historyId ?? startHistoryId, nextPageToken: data.nextPageToken ?? undefined };
        },

        async watch(topicName: string) {
          const { data } = await paced(GMAIL_QUOTA_UNITS.watch, () =>
            api.users.watch({ userId: 'me', requestBody: { topicName, labelIds: ['INBOX'], labelFilterBehavior: 'include' } }, CALL_OPTIONS),
          );
          return { historyId: data.historyId ?? '', expiresAt: data.expiration ? new Date(Number(data.expiration)) : undefined };
        },

        async stopWatch() {
          await paced(GMAIL_QUOTA_UNITS.stop, () => api.users.stop({ userId: 'me' }, CALL_OPTIONS));
        },
      };
    },
  };
}

/** Issuers of Google-signed OIDC tokens, Pub/Sub push tokens included. */
const PUSH_TOKEN_ISSUERS = ['accounts.google.com', 'https://accounts.google.com'];

const TOKEN_PROBLEMS: [RegExp, string][] = [
  [/^Wrong number of segments|^Can't parse token/, 'malformed'],
  [/^No pem found/, 'unknown signing key'],
  [/^Invalid token signature/, 'bad signature'],
  [/^No issue time|^No expiration time|field using invalid format/, 'missing or bad times'],
  [/^Expiration time too far/, 'lifetime too long'],
  [/^Token used too early/, 'not yet valid'],
  [/^Token used too late/, 'expired'],
  [/^Invalid issuer/, 'wrong issuer'],
  [/^Wrong recipient/, 'wrong audience'],
];

/** A fixed description of why a token failed: the library's own messages quote the token. */
function describeTokenProblem(error: unknown): string {
  const message = error instanceof Error ? error.message : '';
  return TOKEN_PROBLEMS.find(([pattern]) => pattern.test(message))?.[1] ?? 'invalid';
}

function toMetadata(data: gmail_v1.Schema$Message): GmailMessageMetadata {
  const headers: Record<string, string> = {};
  for (const header of data.payload?.headers ?? []) {
    // A NUL (an encoded word can decode to one) is never part of a real header, and PostgreSQL text cannot hold it.
    if (header.name && header.value !== undefined && header.value !== null) headers[header.name.toLowerCase()] = header.value.replaceAll('\u0000', '');
  }
  return {
    id: data.id ?? '',
    threadId: data.threadId ?? '',
    labelIds: data.labelIds ?? [],
    internalDate: data.internalDate ? new Date(Number(data.internalDate)) : undefined,
    headers,
  };
}

export type GmailClient = ReturnType<typeof createGmailClient>;
export type MailboxGmail = ReturnType<GmailClient['forMailbox']>;
