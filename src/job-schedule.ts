import { sql } from 'drizzle-orm';
import type { Db } from './db/connect.js';

/**
 * Periodic jobs shared by every process (invariant 10): a process may run a job only after
 * moving its `next_run_at` a period ahead in one statement, so whichever process asks first
 * in a period runs it and every other one is told no. No leader, nothing to hand over when a
 * process dies: the next period is claimed by whoever is alive.
 */
export interface JobSchedule {
  /** True when this process won the job's current period (and must run it now). */
  claim(name: string, periodMs: number): Promise<boolean>;
}

export function createJobSchedule(db: Db, owner: string): JobSchedule {
  return {
    async claim(name, periodMs) {
      const result = (await db.execute(sql`
        insert into job_schedule (name, next_run_at, last_owner, last_started_at, run_count)
        values (${name}, clock_timestamp() + ${periodMs} * interval '1 millisecond', ${owner}, clock_timestamp(), 1)
        on conflict (name) do update set
          next_run_at = excluded.next_run_at, last_owner = excluded.last_owner,
          last_started_at = excluded.last_started_at, run_count = job_schedule.run_count + 1
        where job_schedule.next_run_at <= clock_timestamp()
        returning name`)) as unknown as { rows: unknown[] };
      return result.rows.length > 0;
    },
  };
}
