import type { DatabaseThreadTaskArgs, DatabaseThreadTaskName, DatabaseThreadTaskResult } from './database-thread-tasks.js';
import type { TaskWorkerStart } from './thread-protocol.js';
import { startWorkerThread, WorkerPort } from './worker-port.js';

/**
 * The main thread's side of the task thread for a PostgreSQL server (task-worker.ts): started
 * on the first task (a process that tracks starts it within one rollup sweep, 10 s; one that
 * never runs a task, a migration or a script, never does), started again on the next task if
 * it died, ended by close().
 */
export class TaskThread {
  private port: Promise<WorkerPort> | undefined;
  private closed = false;

  constructor(private readonly start: TaskWorkerStart) {}

  async runTask<K extends DatabaseThreadTaskName>(name: K, args: DatabaseThreadTaskArgs<K>): Promise<DatabaseThreadTaskResult<K>> {
    const starting = this.started();
    let port = await starting;
    if (port.gone && !this.closed) {
      // The thread died: start another, once (another task may have started it already).
      if (this.port === starting) this.port = undefined;
      port = await this.started();
    }
    return port.ask({ op: 'task', name, args }) as Promise<DatabaseThreadTaskResult<K>>;
  }

  private started(): Promise<WorkerPort> {
    if (this.closed) return Promise.reject(new Error('the database task thread is closed'));
    this.port ??= startWorkerThread('task-worker', { workerData: this.start }).then(
      (worker) => new WorkerPort(worker, 'database task worker'),
      (error: unknown) => {
        this.port = undefined; // the next task tries again
        throw error;
      },
    );
    return this.port;
  }

  /** Ends the thread (its pool first; within `timeoutMs`, else the thread and its connections anyway); a task after this fails. */
  async close(options: { timeoutMs?: number } = {}): Promise<boolean> {
    this.closed = true;
    const port = await this.port?.catch(() => undefined);
    return port ? port.close('the database task thread', options.timeoutMs) : true;
  }
}
