import pg from 'pg';

/**
 * Resolves once `n` sessions of the database (other than `watcher`'s) wait for a lock, or as soon
 * as `orUntil()` is true (the awaited session finished without waiting); throws after `timeoutMs`
 * (default 10 s). `watcher` may be inside a transaction: there pg_stat_activity is a snapshot taken
 * at its first read and repeated until cleared (pg_stat_clear_snapshot, before each read), so a
 * count read without clearing it never moves.
 */
export async function waitForLockWaiters(watcher: pg.Client, n: number, options: { orUntil?: () => boolean; timeoutMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    if (options.orUntil?.()) return;
    await watcher.query('select pg_stat_clear_snapshot()');
    const { rows } = await watcher.query(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`);
    if (rows[0].n >= n) return;
    if (Date.now() > deadline) throw new Error(`expected ${n} sessions waiting for a lock${options.orUntil ? ' (or to finish)' : ''}, saw ${rows[0].n}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Two sessions of their own on the database at `url` that write different slots of the send
 * counters (send-counts.repo.ts, `pg_backend_pid() % 32`): on one slot two writers of a campaign
 * wait for each other's counter rows, whatever else a test orders — and a third, on any slot, to
 * watch or hold locks. `opened`: every session opened (to end), the three among them.
 */
export async function twoCounterSlots(url: string): Promise<{ first: pg.Client; second: pg.Client; third: pg.Client; opened: pg.Client[] }> {
  const opened: pg.Client[] = [];
  const open = async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    opened.push(client);
    return { client, slot: Number((await client.query('select pg_backend_pid() % 32 as slot')).rows[0].slot) };
  };
  const first = await open();
  let second = await open();
  while (second.slot === first.slot) second = await open();
  return { first: first.client, second: second.client, third: (await open()).client, opened };
}
