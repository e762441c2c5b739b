import { PasswordIncorrectError } from '../errors.js';
import { verifyPassword } from './passwords.js';
import type { AuthThrottle } from './throttle.js';

/**
 * Re-confirms a signed-in person's password before what a stolen session must not do alone
 * (a new password or login address, PATCH /api/me; closing the account). Each check counts
 * as a login attempt on that account from that client address (`throttle.admitLogin`, the
 * same keys and limits as POST /api/auth/login), so a session cannot be used to guess the
 * password without limit: past a limit the answer is 429 `too_many_requests` with
 * Retry-After before any check, even for the right password. A right password releases its
 * own attempt; a wrong one is 403 `password_incorrect` and stays counted.
 */
export async function proveCurrentPassword(
  throttle: AuthThrottle,
  user: { email: string; passwordHash: string },
  password: string | undefined,
  clientAddress: string,
): Promise<void> {
  const release = await throttle.admitLogin(user.email, clientAddress);
  if (!(await verifyPassword(password ?? '', user.passwordHash))) throw new PasswordIncorrectError();
  await release();
}
