/**
 * Group commit: calls that arrive while a statement of the same kind is running wait for it
 * and then go together in the next statement, instead of one statement each. Nobody waits
 * for a timer: an idle group runs after one turn of the event loop (so that callers released
 * together join it), and later callers join while a statement runs — groups form when callers
 * come together or queue (a busy database), which is exactly when one statement for many
 * rows pays. Each caller gets its own answer, or the statement's error.
 *
 * Calls are grouped by `keyOf` (e.g. the campaign: one statement serves one campaign), at
 * most `maxGroup` per statement.
 */
export function groupCommit<In, Out>(
  keyOf: (item: In) => string,
  run: (items: In[]) => Promise<Out[]>,
  options: { maxGroup?: number; onGroup?: (size: number) => void } = {},
): (item: In) => Promise<Out> {
  const maxGroup = options.maxGroup ?? 100;
  interface Waiting {
    item: In;
    resolve: (out: Out) => void;
    reject: (error: unknown) => void;
  }
  const queues = new Map<string, Waiting[]>();

  async function drain(key: string, queue: Waiting[]) {
    // One turn of the event loop first: callers released together (a round of sends) join.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (queue.length > 0) {
      const group = queue.splice(0, maxGroup);
      options.onGroup?.(group.length);
      try {
        const outs = await run(group.map((w) => w.item));
        group.forEach((w, i) => w.resolve(outs[i]!));
      } catch (error) {
        for (const w of group) w.reject(error);
      }
    }
    queues.delete(key);
  }

  return (item) =>
    new Promise<Out>((resolve, reject) => {
      const key = keyOf(item);
      const queue = queues.get(key);
      if (queue) {
        queue.push({ item, resolve, reject });
        return;
      }
      const fresh: Waiting[] = [{ item, resolve, reject }];
      queues.set(key, fresh);
      void drain(key, fresh);
    });
}
