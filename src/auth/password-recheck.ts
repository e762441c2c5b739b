import { PasswordIncorrectError } from '../errors.js';
import { verifyPassword } from './passwords.js';
import type { AuthThrottle } from './throttle.js';

/**
 * Re-confirms a signed-in person's password before what a stolen session must not do alone
 * (a new password or login address, PATCH /api/me; closing the account). Each check counts
 * as a login attempt on that account from that client address, and against this session's
 * re-checks (`throttle.admitPasswordRecheck`), so a session cannot be used to guess the
 * password without limit: past the account's limit of re-checks in one session the answer is
 * 429 `too_many_requests` with Retry-After before any check, even for the right password; the
 * person's other sessions and strangers' failed logins do not count there. A right password releases its own attempt; a
 * wrong one is 403 `password_incorrect` and stays counted.
 */
export async function proveCurrentPassword(
  throttle: AuthThrottle,
  user: { id: string; email: string; passwordHash: string },
  password: string | undefined,
  caller: { session?: { key: string } },
  clientAddress: string,
): Promise<void> {
  // A caller without a session (routes of this check take sessions only) counts as the person.
  const release = await throttle.admitPasswordRecheck(user, caller.session?.key ?? `user:${user.id}`, clientAddress);
  if (!(await verifyPassword(password ?? '', user.passwordHash))) throw new PasswordIncorrectError();
  await release();
}
