import { errorNameOf, type Logger } from '../logger.js';
import type { CancelledSendsRepo } from './cancelled-sends.repo.js';

/**
 * Rows per batch. One batch is one short transaction: 50–70 ms on a server and on PGlite
 * (median), where it holds the one database thread — a tracking hit or a request waited at most
 * 0.1–0.2 s meanwhile, where skipping 100,000 queued sends in one statement held it 4–5 s.
 * 1,000 and 5,000 skip as fast in total; the longest wait follows the batch (BENCHMARKS.md,
 * "Cancel of a large campaign in batches").
 */
export const SKIP_BATCH_ROWS = 2_000;
/**
 * How long a cancel keeps skipping before it answers: a campaign of up to ~26,000 queued sends
 * (measured, a busy 2-vCPU machine, either database) is entirely skipped by then — its progress
 * shows none queued; the rest of a larger one is left to the sweep.
 */
export const CANCEL_INLINE_MS = 1_000;
/** How long one sweep works before it lets the job's next run continue (a stopping process waits at most this, plus a batch). */
const SWEEP_BUDGET_MS = 2_000;
/**
 * Campaigns one sweep reads, oldest mark first: those with sends still queued (a campaign
 * waiting only for sends in flight is not read one by one; `finishDone` clears its mark once
 * they resolved), so every one read gets a batch while the budget lasts.
 */
const SWEEP_CAMPAIGNS = 1_000;

/**
 * Skips a cancelled campaign's queued sends after the cancel committed (the cancel itself only
 * moves the campaign's state: that alone stops its sending, since the gate claims nothing of a
 * campaign that is not `sending`). The first batches run before the cancel answers; the worker's
 * sweep (jobs.ts, every second in every worker process) does the rest and finishes any cancel a
 * crash or restart cut short. Batches of several processes never wait for each other (SKIP
 * LOCKED), so they may share a campaign.
 */
export function createCancelledSends(deps: {
  repo: CancelledSendsRepo;
  logger: Logger;
  /** Default SKIP_BATCH_ROWS; tests use a few dozen. */
  batchRows?: number;
  /** How long a cancel keeps skipping before it answers (at least one batch); default CANCEL_INLINE_MS. */
  inlineMs?: number;
}) {
  const { repo, logger } = deps;
  const batchRows = deps.batchRows ?? SKIP_BATCH_ROWS;
  const inlineMs = deps.inlineMs ?? CANCEL_INLINE_MS;

  /**
   * Batches until none is left (true: this call cleared the campaign's mark), `budgetMs` is
   * spent or the process is stopping (at least one batch).
   */
  async function skipQueued(campaignId: string, budgetMs: number, stopping: () => boolean = () => false): Promise<boolean> {
    const started = performance.now();
    for (;;) {
      // A short batch: nothing left that nobody holds (rows a claim holds now come back to a later sweep).
      if ((await repo.skipBatch(campaignId, batchRows)) < batchRows) return (await repo.finishDone(campaignId)) > 0;
      if (performance.now() - started >= budgetMs || stopping()) return false;
    }
  }

  return {
    skipQueued,

    /**
     * Right after a cancel committed, within the request: never throws (the cancel stands; the
     * sweep does what this could not).
     */
    async afterCancel(campaignId: string): Promise<void> {
      await skipQueued(campaignId, inlineMs).catch((error: unknown) => {
        logger.warn({ campaignId, errorName: errorNameOf(error) }, 'skipping a cancelled campaign’s queued sends failed; the sweep will');
      });
    },

    /**
     * Every campaign still being skipped, up to a time budget; how many it finished. A stopping
     * process (`stopping`, jobs.ts) ends it after the batch in hand: the next sweep, here or in
     * another process, goes on.
     */
    async sweep(options: { budgetMs?: number; stopping?: () => boolean } = {}): Promise<number> {
      const { budgetMs = SWEEP_BUDGET_MS, stopping = () => false } = options;
      const started = performance.now();
      let finished = 0;
      for (const campaignId of await repo.pending(SWEEP_CAMPAIGNS)) {
        const left = budgetMs - (performance.now() - started);
        if (left <= 0 || stopping()) return finished;
        if (await skipQueued(campaignId, left, stopping)) finished += 1;
      }
      return finished + (await repo.finishDone());
    },
  };
}

export type CancelledSends = ReturnType<typeof createCancelledSends>;
