import { randomUUID } from 'node:crypto';
import os from 'node:os';

/**
 * This process's name in shared leases and job claims (mailbox_limits.sync_owner,
 * job_schedule.last_owner): host and pid for people reading the table, plus a random part so
 * that a restarted process with a reused pid is never mistaken for its predecessor.
 */
export const processOwner = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
