/**
 * The task thread for a PostgreSQL server (task-thread.ts starts it): runs the tasks of
 * database-thread-tasks.ts against a pool of its own, so that their statements, parameters and
 * results live on this thread's heap, not the answering thread's.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { connect } from './connect.js';
import { runDatabaseThreadTask } from './database-thread-tasks.js';
import { replyTo, wireError, type Request, type Started, type TaskWorkerStart } from './thread-protocol.js';

const port = parentPort!;
const start = workerData as TaskWorkerStart;

try {
  // The pool connects on first use: starting never waits for (or fails on) the server.
  const database = await connect({ kind: 'postgres', url: start.url, poolSize: start.poolSize, connectTimeoutMs: start.connectTimeoutMs, statementTimeoutMs: start.statementTimeoutMs });
  const run = async (request: Request): Promise<unknown> => {
    if (request.op === 'close') return database.close();
    if (request.op !== 'task') throw new Error(`the task thread does not take ${request.op}`);
    return runDatabaseThreadTask(database.db, request.name, request.args, { singleConnection: false });
  };
  port.on('message', (request: Request) => replyTo(port, request, run(request)));
  port.postMessage({ started: true } satisfies Started);
} catch (error) {
  port.postMessage({ started: false, error: wireError(error) } satisfies Started);
}
