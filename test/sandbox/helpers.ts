import { gmail, type gmail_v1 } from '@googleapis/gmail';
import { OAuth2Client, type Credentials } from 'google-auth-library';
import MailComposer from 'nodemailer/lib/mail-composer';
import type { Sandbox } from '../../src/sandbox/index.js';

export const CLIENT_ID = 'inboxtrail-test.apps.googleusercontent.com';
export const CLIENT_SECRET = 'sandbox-test-secret';
// Never contacted: the tests read the redirect's Location instead of following it.
export const REDIRECT_URI = 'http://127.0.0.1:9/api/gmail/callback';

export const SCOPES = {
  send: 'https://www.googleapis.com/auth/gmail.send',
  readonly: 'https://www.googleapis.com/auth/gmail.readonly',
  modify: 'https://www.googleapis.com/auth/gmail.modify',
  metadata: 'https://www.googleapis.com/auth/gmail.metadata',
  email: 'https://www.googleapis.com/auth/userinfo.email',
};

/** The real OAuth2Client, pointed at the sandbox through its `endpoints` option. */
export function oauthClient(sandbox: Sandbox, options: { forceRefreshOnFailure?: boolean } = {}): OAuth2Client {
  return new OAuth2Client({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUri: REDIRECT_URI,
    forceRefreshOnFailure: options.forceRefreshOnFailure,
    endpoints: {
      oauth2AuthBaseUrl: sandbox.urls.authorize,
      oauth2TokenUrl: sandbox.urls.token,
      oauth2RevokeUrl: sandbox.urls.revoke,
      tokenInfoUrl: sandbox.urls.tokenInfo,
      oauth2FederatedSignonPemCertsUrl: sandbox.urls.certs,
      oauth2FederatedSignonJwkCertsUrl: sandbox.urls.jwks,
    },
  });
}

/** The real Gmail client; only the origin of rootUrl matters to it (see README). */
export function gmailClient(sandbox: Sandbox, auth: OAuth2Client): gmail_v1.Gmail {
  // googleapis-common pins its own google-auth-library (10.5.0) while the project has 10.9.1:
  // the same class at runtime, two declarations for TypeScript (private fields differ).
  const client = auth as unknown as gmail_v1.Options['auth'];
  return gmail({ version: 'v1', auth: client, rootUrl: `${sandbox.urls.apiRoot}/` });
}

/** Follows the consent URL without following the redirect back; returns the redirect's query. */
export async function authorize(url: string): Promise<URLSearchParams> {
  const response = await fetch(url, { redirect: 'manual' });
  if (response.status !== 302) throw new Error(`expected 302 from authorize, got ${response.status}: ${await response.text()}`);
  const location = response.headers.get('location');
  if (!location) throw new Error('authorize redirect had no Location');
  return new URL(location).searchParams;
}

export interface Connection {
  auth: OAuth2Client;
  api: gmail_v1.Gmail;
  tokens: Credentials;
}

/** The whole authorization-code flow, as the service's connect + callback would run it. */
export async function connect(
  sandbox: Sandbox,
  email: string,
  scopes: string[] = [SCOPES.send, SCOPES.modify],
  extra: { forceRefreshOnFailure?: boolean } = {},
): Promise<Connection> {
  const auth = oauthClient(sandbox, extra);
  const params = await authorize(auth.generateAuthUrl({ access_type: 'offline', prompt: 'consent', scope: scopes, login_hint: email, state: 'test-state' }));
  const code = params.get('code');
  if (!code) throw new Error(`no code in redirect: ${params.toString()}`);
  const { tokens } = await auth.getToken(code);
  auth.setCredentials(tokens);
  return { auth, api: gmailClient(sandbox, auth), tokens };
}

export async function composeRaw(options: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  const node = new MailComposer(options).compile();
  node.keepBcc = true;
  return node.build();
}

export function base64url(data: Buffer): string {
  return data.toString('base64url');
}

/** What a GaxiosError carries that tests look at. */
export interface ClientError {
  message: string;
  status?: number;
  response?: { status: number; headers: Headers; data: unknown };
}

export async function failure(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (error) {
    return error as ClientError;
  }
  throw new Error('expected the call to fail');
}

export function googleReason(error: ClientError): string | undefined {
  const data = error.response?.data as { error?: { errors?: { reason?: string }[] } } | undefined;
  return data?.error?.errors?.[0]?.reason;
}
