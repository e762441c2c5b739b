import { startSandbox } from '../src/sandbox/index.js';

/**
 * `npm run sandbox`: the Gmail sandbox on its own, for people and for a service started
 * separately. SANDBOX_PORT (4100), SANDBOX_HOST (127.0.0.1), SANDBOX_AUTO_APPROVE (off:
 * show the consent page), SANDBOX_CLIENT_ID / SANDBOX_CLIENT_SECRET (any client when
 * unset), SANDBOX_MAILBOXES (comma-separated addresses to create at start).
 */

const rawPort = process.env.SANDBOX_PORT ?? '4100';
const port = Number(rawPort);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`SANDBOX_PORT must be a port number, got ${JSON.stringify(rawPort)}`);
  process.exit(1);
}
/** Where the service is (for its OAuth callback): its PUBLIC_BASE_URL, else its PORT on localhost, as the service defaults it. */
const serviceBaseUrl = (process.env.PUBLIC_BASE_URL || `http://localhost:${process.env.PORT || '3000'}`).replace(/\/+$/, '');
const truthy = (value: string | undefined) => value !== undefined && ['1', 'true', 'yes', 'on'].includes(value.toLowerCase());
const clientId = process.env.SANDBOX_CLIENT_ID || undefined;
const clientSecret = process.env.SANDBOX_CLIENT_SECRET || undefined;
const mailboxes = (process.env.SANDBOX_MAILBOXES ?? '')
  .split(',')
  .map((m) => m.trim())
  .filter(Boolean);

try {
  const sandbox = await startSandbox({
    port,
    host: process.env.SANDBOX_HOST || '127.0.0.1',
    autoApprove: truthy(process.env.SANDBOX_AUTO_APPROVE),
    clientId,
    clientSecret,
    mailboxes,
  });

  const lines = [
    `Gmail sandbox listening on ${sandbox.url}`,
    '',
    `  inbox (for people)   ${sandbox.urls.inbox}`,
    `  Gmail API root       ${sandbox.urls.apiRoot}  (client paths /gmail/v1/…)`,
    `  authorize            ${sandbox.urls.authorize}${truthy(process.env.SANDBOX_AUTO_APPROVE) ? '  (auto-approve on)' : '  (consent page)'}`,
    `  token                ${sandbox.urls.token}`,
    `  revoke               ${sandbox.urls.revoke}`,
    `  certs (PEM / JWK)    ${sandbox.urls.certs}  ${sandbox.urls.jwks}`,
    `  control API          ${sandbox.urls.control}  (see src/sandbox/README.md)`,
    '',
    'Point the service at it with:',
    '',
    ...Object.entries(sandbox.env()).map(([name, value]) => `  export ${name}=${value}`),
    ...(clientId ? [] : ['  export GOOGLE_CLIENT_ID=sandbox-client  # any id works: the sandbox was started without SANDBOX_CLIENT_ID']),
    ...(clientSecret ? [] : ['  export GOOGLE_CLIENT_SECRET=sandbox-secret  # not checked: no SANDBOX_CLIENT_SECRET']),
    // The service needs all three Google settings together; the callback is the service's own address.
    `  export GOOGLE_REDIRECT_URI=${serviceBaseUrl}/api/gmail/callback  # the service's PUBLIC_BASE_URL + /api/gmail/callback`,
    ...(mailboxes.length > 0 ? ['', `Mailboxes: ${mailboxes.join(', ')}`] : []),
    '',
    'Ctrl-C stops it; everything is in memory and is gone then.',
  ];
  console.log(lines.join('\n'));

  const stop = () => {
    void sandbox.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  const code = (error as NodeJS.ErrnoException).code;
  console.error(code === 'EADDRINUSE' ? `port ${port} is in use; set SANDBOX_PORT to another one` : `sandbox failed to start: ${(error as Error).message}`);
  process.exit(1);
}
