import type { Db } from './connect.js';
import { writeEvents } from '../tracking/events.repo.js';
import { rollUpPending } from '../tracking/rollups.repo.js';
import type { EventColumns } from '../tracking/event-columns.js';

/*
 * Work that runs on a database thread instead of the answering thread: a task whose
 * statements and JavaScript (reading rows, planning, building the next statement) are large
 * and frequent enough that running them beside the HTTP handlers stalls answering. The main
 * thread asks by name (`database.runTask`) and gets back only the small result. With PGlite
 * the tasks run on the thread that owns the engine (pglite-worker.ts); with a PostgreSQL
 * server, on a task thread with a pool of its own (task-worker.ts, started on first use).
 *
 * The tracking event writer's statement and rollup pass are such tasks: at 9,000 hits/s a
 * pass's rows and plan, and a batch's statement, were most of what survived the answering
 * thread's young-generation collections, the pauses behind the tracking p99 (BENCHMARKS.md,
 * issue 14 sixth pass).
 *
 * On PGlite tasks run one at a time (pglite-worker.ts): a task must wait on nothing but the
 * database, or every later task waits with it.
 */
/** Where a task runs: `singleConnection` on the embedded database (one connection, no one to wait for). */
export interface TaskContext {
  singleConnection: boolean;
}

export const DATABASE_THREAD_TASKS = {
  /**
   * A batch of tracking events written (tracking/events.repo.ts): the events cross by column
   * (a dozen arrays, a structured copy), and the statement's array literals are built here, so
   * the answering thread holds only the batch's raw hits (kept for a retry) while it is written.
   */
  writeEvents: (db: Db, args: { events: EventColumns }, _context: TaskContext) => writeEvents(db, args.events),
  /** One rollup pass (tracking/rollups.repo.ts) over at most `maxEvents` pending events. */
  rollUpPending: (db: Db, args: { maxEvents?: number }, context: TaskContext) => rollUpPending(db, { singleConnection: context.singleConnection, maxEvents: args.maxEvents }),
};

/** Runs the task a request names (on a database thread: pglite-worker.ts, task-worker.ts). */
export function runDatabaseThreadTask(db: Db, name: string, args: unknown, context: TaskContext): Promise<unknown> {
  const task = DATABASE_THREAD_TASKS[name as DatabaseThreadTaskName];
  if (!task) throw new Error(`no database thread task named ${name}`);
  return task(db, args as never, context);
}

export type DatabaseThreadTasks = typeof DATABASE_THREAD_TASKS;
export type DatabaseThreadTaskName = keyof DatabaseThreadTasks;
export type DatabaseThreadTaskArgs<K extends DatabaseThreadTaskName> = Parameters<DatabaseThreadTasks[K]>[1];
export type DatabaseThreadTaskResult<K extends DatabaseThreadTaskName> = Awaited<ReturnType<DatabaseThreadTasks[K]>>;
