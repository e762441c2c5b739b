import { lastSignupCode } from '../../src/auth/account-mail.js';
import type { Services } from '../../src/app.js';

/**
 * A confirmed account and a connected sandbox mailbox, made through the same services a person
 * uses (signup → confirmation code → connect with PKCE), for benchmarks that need a sender.
 * The services must be built with an in-memory account mailer (`createMemoryMailer`), where
 * the confirmation code is read back.
 */
export async function benchAccount(services: Services, email = 'bench@acme.test') {
  await services.auth.signup({ email, password: 'bench password 123', workspaceName: 'Bench' }, '127.0.0.1');
  const code = lastSignupCode(services.accountMailer.outbox ?? [], email);
  if (!code) throw new Error('bench: no signup confirmation mail (build the services with createMemoryMailer)');
  const { token, workspace, user } = await services.auth.verifySignup({ code });
  return { token, workspace, user, auth: { userId: user.id, workspaceId: workspace.id, role: 'owner' as const } };
}

export async function benchMailbox(services: Services, auth: { userId: string; workspaceId: string; role: 'owner' }, options: { sync: boolean; loginHint: string }) {
  const start = await services.mailboxes.startConnection(auth, options);
  const consent = await fetch(start.url, { redirect: 'manual' });
  const callback = new URL(consent.headers.get('location')!);
  return services.mailboxes.completeConnection(
    { code: callback.searchParams.get('code')!, state: callback.searchParams.get('state')! },
    start.browserSecret,
  );
}
