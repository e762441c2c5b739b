import type { AddressInfo } from 'node:net';
import express from 'express';
import type { SandboxContext } from './context.js';
import { createControl, type SandboxControl } from './control.js';
import { controlRoutes } from './control-routes.js';
import { FaultBook } from './faults.js';
import { gmailRoutes } from './gmail-routes.js';
import { inboxRoutes } from './inbox-routes.js';
import { OAuthState } from './oauth.js';
import { OAUTH_PATHS, oauthRoutes } from './oauth-routes.js';
import { PushHub } from './push.js';
import { SigningKeys } from './signing.js';
import { MailStore, type MailboxKind } from './store.js';

/**
 * The Gmail sandbox: an in-memory HTTP server that answers like Google OAuth 2.0 and
 * Gmail REST v1, so the real `@googleapis/gmail` and `google-auth-library` clients
 * work against it unchanged. See README.md in this folder.
 */

export interface SandboxOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Approve every authorization at once (mailbox: login_hint, else the newest mailbox, else sandbox.user@example.com). */
  autoApprove?: boolean;
  /** When set, authorize and token reject other client ids. */
  clientId?: string;
  /** When set, the token endpoint requires it. */
  clientSecret?: string;
  /** When set, authorize rejects other redirect URIs (redirect_uri_mismatch). */
  redirectUris?: string[];
  /** Access token lifetime; default 3600. */
  accessTokenTtlSeconds?: number;
  /** Refuse Gmail calls whose token lacks a suitable scope (Google does); default true. */
  enforceScopes?: boolean;
  /** Mailboxes to create at start. */
  mailboxes?: (string | { email: string; kind?: MailboxKind; displayName?: string })[];
  /** Clock for tokens, codes, dates and ids; default the real one. */
  now?: () => Date;
}

export interface SandboxUrls {
  /** `rootUrl` for `gmail({version:'v1', rootUrl})`: the client puts /gmail/v1/… on this origin. */
  apiRoot: string;
  authorize: string;
  token: string;
  revoke: string;
  tokenInfo: string;
  userInfo: string;
  /** PEM certs, as https://www.googleapis.com/oauth2/v1/certs (OAuth2Client `oauth2FederatedSignonPemCertsUrl`). */
  certs: string;
  /** JWKs, as https://www.googleapis.com/oauth2/v3/certs. */
  jwks: string;
  /** The webmail for people. */
  inbox: string;
  control: string;
}

export interface Sandbox {
  /** Base URL, e.g. http://127.0.0.1:4100 */
  url: string;
  urls: SandboxUrls;
  control: SandboxControl;
  /** The service's environment variables that point it at this sandbox. */
  env(): Record<string, string>;
  close(): Promise<void>;
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const now = options.now ?? (() => new Date());
  const keys = new SigningKeys();
  const push = new PushHub(keys, now);
  const store = new MailStore({ now, onHistory: (mailbox, record) => push.onHistory(mailbox, record) });
  const oauth = new OAuthState(
    {
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      redirectUris: options.redirectUris,
      accessTokenTtlSeconds: options.accessTokenTtlSeconds ?? 3600,
      now,
      issuer: 'https://accounts.google.com',
    },
    store,
    keys,
  );
  const ctx: SandboxContext = {
    store,
    oauth,
    faults: new FaultBook(),
    push,
    keys,
    now,
    autoApprove: options.autoApprove ?? false,
    enforceScopes: options.enforceScopes ?? true,
    issuer: 'https://accounts.google.com',
  };
  const control = createControl(ctx);
  for (const mailbox of options.mailboxes ?? []) control.createMailbox(mailbox);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(oauthRoutes(ctx));
  app.use(gmailRoutes(ctx));
  app.use('/__control', controlRoutes(control));
  app.use(inboxRoutes(ctx, control));

  const host = options.host ?? '127.0.0.1';
  const server = app.listen(options.port ?? 0, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const urls: SandboxUrls = {
    apiRoot: url,
    authorize: url + OAUTH_PATHS.authorize,
    token: url + OAUTH_PATHS.token,
    revoke: url + OAUTH_PATHS.revoke,
    tokenInfo: url + OAUTH_PATHS.tokenInfo,
    userInfo: url + OAUTH_PATHS.userInfo,
    certs: url + OAUTH_PATHS.pemCerts,
    jwks: url + OAUTH_PATHS.jwkCerts,
    inbox: `${url}/`,
    control: `${url}/__control`,
  };

  let closing: Promise<void> | undefined;
  return {
    url,
    urls,
    control,
    env: () => ({
      GOOGLE_API_ROOT_URL: urls.apiRoot,
      GOOGLE_OAUTH_AUTHORIZE_URL: urls.authorize,
      GOOGLE_OAUTH_TOKEN_URL: urls.token,
      GOOGLE_OAUTH_REVOKE_URL: urls.revoke,
      // The ID token of a consent is checked against these keys: without it a process fetches Google's.
      GOOGLE_CERTS_URL: urls.certs,
      ...(options.clientId ? { GOOGLE_CLIENT_ID: options.clientId } : {}),
      ...(options.clientSecret ? { GOOGLE_CLIENT_SECRET: options.clientSecret } : {}),
    }),
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
        server.closeAllConnections();
        await closed;
        await push.flush();
      })();
      return closing;
    },
  };
}

export type { SandboxControl, MailboxInfo, MessageInfo, MessageDetail, MailFields, MailInput, BounceInput } from './control.js';
export type { FaultRule, FaultEffect, ActiveFault, SandboxEndpoint, CallRecord, CallFilter } from './faults.js';
export type { PushBody, PushDelivery, PushSubscription, PushSubscriptionInput, PushTokenInput } from './push.js';
export type { QueuedDecision } from './oauth.js';
export type { MailboxKind } from './store.js';
export type { BounceKind, NoticeForm } from './bounce.js';
export { SANDBOX_ENDPOINTS } from './faults.js';
export { DEFAULT_PUSH_SERVICE_ACCOUNT } from './push.js';
