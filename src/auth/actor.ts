import type { AuthContext } from './auth.service.js';

/**
 * Who did something, as the audit log and consent history name them: `user:<id>` for a
 * signed-in member, `key:<id>` for an API key (whoever created it). Other callers (API keys, recipients, jobs) get their own prefix, so an
 * auditor can always tell a person from a machine.
 */
export function actorOf(auth: AuthContext): string {
  if (auth.apiKeyId) return `key:${auth.apiKeyId}`;
  return `user:${auth.userId}`;
}

/** The person a mail went to, acting through the links in it (unsubscribe, preference center): no account, no prefix. */
export const RECIPIENT_ACTOR = 'recipient';
