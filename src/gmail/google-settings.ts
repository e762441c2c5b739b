import { randomBytes } from 'node:crypto';
import { isGoogleConfigured, type Config } from '../config.js';
import { startSandbox, type Sandbox } from '../sandbox/index.js';
import { GOOGLE_DEFAULT_ENDPOINTS, type GoogleClientSettings } from './gmail-client.js';

export interface ResolvedGoogle {
  settings: GoogleClientSettings;
  /** Expected audience of Pub/Sub push tokens on POST /webhooks/gmail. */
  pushAudience: string;
  /** Pub/Sub topic for users.watch; undefined → no watches, polling only. */
  pushTopic?: string;
  /** Present when no Google client is configured: the in-process Gmail sandbox stands in. */
  sandbox?: Sandbox;
}

export const SANDBOX_CLIENT_ID = 'inboxtrail-sandbox.apps.googleusercontent.com';
/** The sandbox accepts any projects/<p>/topics/<t>; with no GMAIL_PUSH_TOPIC, watches use this one. */
export const SANDBOX_PUSH_TOPIC = 'projects/inboxtrail-sandbox/topics/gmail';
const callbackUrl = (config: Config) => `${config.publicBaseUrl}/api/gmail/callback`;
const webhookUrl = (config: Config) => `${config.publicBaseUrl}/webhooks/gmail`;

/**
 * Where Gmail is: Google (a configured client, with any endpoint overridden by its
 * variable) or, with no client configured, the sandbox started in this process.
 */
export async function resolveGoogle(config: Config, options: { autoApprove?: boolean; sandboxPort?: number } = {}): Promise<ResolvedGoogle> {
  if (isGoogleConfigured(config)) {
    const google = config.google;
    return {
      settings: {
        clientId: google.clientId!,
        clientSecret: google.clientSecret!,
        redirectUri: google.redirectUri!,
        sendTimeoutMs: config.gmail.sendTimeoutMs,
        endpoints: {
          apiRootUrl: google.apiRootUrl ?? GOOGLE_DEFAULT_ENDPOINTS.apiRootUrl,
          authorizeUrl: google.authorizeUrl ?? GOOGLE_DEFAULT_ENDPOINTS.authorizeUrl,
          tokenUrl: google.tokenUrl ?? GOOGLE_DEFAULT_ENDPOINTS.tokenUrl,
          revokeUrl: google.revokeUrl ?? GOOGLE_DEFAULT_ENDPOINTS.revokeUrl,
          certsUrl: google.certsUrl ?? GOOGLE_DEFAULT_ENDPOINTS.certsUrl,
        },
      },
      pushAudience: google.pushAudience ?? webhookUrl(config),
      pushTopic: config.gmail.pushTopic,
    };
  }

  const clientSecret = randomBytes(24).toString('base64url');
  const sandboxOptions = { autoApprove: options.autoApprove ?? false, clientId: SANDBOX_CLIENT_ID, clientSecret, redirectUris: [callbackUrl(config)] };
  const port = options.sandboxPort ?? config.sandboxPort;
  // The usual port makes the inbox page easy to find; if something holds it, any port will do.
  const sandbox = await startSandbox({ ...sandboxOptions, port }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EADDRINUSE' && port !== 0) return startSandbox({ ...sandboxOptions, port: 0 });
    throw error;
  });
  return {
    settings: {
      clientId: SANDBOX_CLIENT_ID,
      clientSecret,
      redirectUri: callbackUrl(config),
      sendTimeoutMs: config.gmail.sendTimeoutMs,
      endpoints: {
        apiRootUrl: sandbox.urls.apiRoot,
        authorizeUrl: sandbox.urls.authorize,
        tokenUrl: sandbox.urls.token,
        revokeUrl: sandbox.urls.revoke,
        certsUrl: sandbox.urls.certs,
      },
    },
    pushAudience: config.google.pushAudience ?? webhookUrl(config),
    pushTopic: config.gmail.pushTopic ?? SANDBOX_PUSH_TOPIC,
    sandbox,
  };
}
