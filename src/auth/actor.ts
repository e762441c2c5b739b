import type { AuthContext } from './auth.service.js';

/**
 * Who did something, as the audit log and consent history name them: `user:<id>` for a
 * signed-in member. Other callers (API keys, recipients, jobs) get their own prefix, so an
 * auditor can always tell a person from a machine.
 */
export function actorOf(auth: AuthContext): string {
  return `user:${auth.userId}`;
}
