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

/** One member of a round (roundCommit): hands in its item, or leaves without one. */
export interface RoundMember<In, Out> {
  submit(item: In): Promise<Out>;
  /** This member will hand in nothing soon (it failed, was refused, or waits out a retry): the others stop waiting for it. */
  leave(): void;
}

/**
 * A barrier for the members of one round (a round of sends that started together): their
 * items go in one statement once every member has handed its item in or left — instead of
 * the first answers going alone while the later ones form a second statement (issue #14,
 * sixth pass). Nobody waits longer than `maxWaitMs` after the first item arrived: then the
 * items so far go without the stragglers. A member that hands in an item after it left, or
 * after the barrier ran, goes through `late` (e.g. a groupCommit) — the round never waits
 * for a send that is waiting out a retry.
 */
export function roundCommit<In, Out>(
  members: number,
  run: (items: In[]) => Promise<Out[]>,
  options: { maxWaitMs: number; late: (item: In) => Promise<Out> },
): { member(): RoundMember<In, Out> } {
  interface Waiting {
    item: In;
    resolve: (out: Out) => void;
    reject: (error: unknown) => void;
  }
  let open = members;
  let waiting: Waiting[] = [];
  let timer: NodeJS.Timeout | undefined;

  function flush() {
    clearTimeout(timer);
    timer = undefined;
    const group = waiting;
    waiting = [];
    if (group.length === 0) return;
    // Whoever arrives after this ran is late: no second barrier statement.
    open = 0;
    run(group.map((w) => w.item)).then(
      (outs) => group.forEach((w, i) => w.resolve(outs[i]!)),
      (error: unknown) => group.forEach((w) => w.reject(error)),
    );
  }
  function settle() {
    if (waiting.length === 0) return;
    if (open <= 0) flush();
    else if (!timer) {
      timer = setTimeout(flush, options.maxWaitMs);
      timer.unref(); // a round's barrier never keeps the process alive (flush clears it anyway)
    }
  }

  return {
    member() {
      let inside = true;
      return {
        submit(item) {
          if (!inside || open <= 0) return options.late(item);
          inside = false;
          open -= 1;
          return new Promise<Out>((resolve, reject) => {
            waiting.push({ item, resolve, reject });
            settle();
          });
        },
        leave() {
          if (!inside) return;
          inside = false;
          open -= 1;
          settle();
        },
      };
    },
  };
}
