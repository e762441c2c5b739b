/**
 * Resolves once `question()` is true, asking every 20 ms; throws naming `what` after `timeoutMs`
 * (default 15 s). For a test waiting on something another part of the system does in its own
 * time: a fixed sleep is too short on a loaded host and too long everywhere else.
 */
export async function until(question: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await question())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
