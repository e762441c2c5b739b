import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import { GmailError } from '../gmail/gmail-errors.js';
import type { MailboxesRepo, MailboxRow } from '../gmail/mailboxes.repo.js';
import type { MailboxService } from '../gmail/mailboxes.service.js';
import type { MailboxPacer } from '../gmail/pacer.js';
import type { SentCopies } from '../gmail/sent-copy.js';
import { errorNameOf, type Logger } from '../logger.js';
import type { TrackingUrls } from '../tracking/urls.js';
import type { CampaignRow, CampaignsRepo } from './campaigns.repo.js';
import { groupCommit, roundCommit, type RoundMember } from './group-commit.js';
import type { ClaimInput, GateResult, SendCandidate, SendLease, SendLedgerRepo, SentInput } from './send-ledger.repo.js';
import { createSendPreparation, type BatchContext, type Prepared } from './send-preparation.js';
import { createSendRecovery, recoveryOwnerOf, type SendRecorder } from './send-recovery.js';
import { createFailureRecorder, type Outcome } from './send-failure.js';
import { isInsideWindow } from './sending-window.js';
import { mailboxHold, resumeHold, type MailboxHold } from './mailbox-hold.js';
import { DAY_MS, settlesWithin } from '../time.js';

/** How long a round's sent records wait for its slowest answer before going without it. */
const ROUND_RECORD_WAIT_MS = 1_000;

export interface SendWorkerDeps {
  repo: CampaignsRepo;
  ledger: SendLedgerRepo;
  mailboxRepo: MailboxesRepo;
  mailboxes: MailboxService;
  pacer: MailboxPacer;
  urls: TrackingUrls;
  logger: Logger;
  batchSize?: number;
  /** Sends in flight at once per campaign; default 4. */
  concurrency?: number;
  /** This process's name on the leases it holds; default host:pid:random. */
  workerId?: string;
  /**
   * How long a claim holds a send; must outlast the Gmail send timeout. Default 240 s. A
   * batch's reservation of still-queued rows lasts as long: a crashed worker's unstarted
   * rows go to others after that.
   */
  leaseMs?: number;
  /** Wait before the first mailbox search for a send of unknown outcome; default 15 s. */
  resolveDelayMs?: number;
  now?: () => Date;
  /** Recovery's question "did Gmail store it" (gmail/sent-copy.ts), wired by the composition root. */
  sentCopies: SentCopies;
  /** More sends to resolve in the same pass (1:1 mail), wired by the composition root (send-recovery.ts). */
  alsoRecover?: (asOf: Date, round: Date) => Promise<number>;
  /** Test seam: runs after Gmail accepted a message and before the ledger records it (a crash there). */
  afterGmailAccepted?: (sendId: string) => void | Promise<void>;
}

const senderDomain = (email: string) => email.split('@')[1] ?? 'inboxtrail.invalid';

/** Thrown from the gate to stop a send before its request: the gate's verdict, or the worker stopping. */
class GateClosed extends Error {
  constructor(readonly verdict: Exclude<GateResult, { kind: 'go' }> | { kind: 'stopping' }) {
    super(`send gate closed: ${verdict.kind}`);
  }
}

/**
 * Where one send stands in this process: of the claimed ones, only `refused` may be requeued by
 * stop() (no request is running). An unclaimed one's reservation is in the worker's `reserved`.
 */
interface Tracked {
  lease?: SendLease;
  state: 'waiting' | 'gating' | 'in_flight' | 'refused';
}

/**
 * Drains the send ledger (see README.md, "Lifecycle of a send"). Per campaign that may send
 * now, a batch of due rows is reserved (still `queued`), rendered, and handed to the
 * mailbox's pacer one by one; only when the pacer grants quota does the gate claim the row
 * (lease, attempt, re-checks under the address lock), right before the request. Mailboxes
 * run side by side, so one that Gmail rate limits does not hold up the others.
 */
export function createSendWorker(deps: SendWorkerDeps) {
  const { repo, ledger, mailboxes, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const batchSize = deps.batchSize ?? 50;
  const concurrency = deps.concurrency ?? 4;
  const workerId = deps.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const leaseMs = deps.leaseMs ?? 240_000;
  const after = (ms: number) => new Date(now().getTime() + ms);

  let stopping = false;
  // Aborted by stop() with the gate's own "stopping": a send waiting in the pacer leaves at once, as
  // if stopped at the gate, taking no quota, pace or budget. Every waiting send listens: no limit.
  const stopped = new AbortController();
  setMaxListeners(0, stopped.signal);
  const tracked = new Map<string, Tracked>();
  /**
   * Reserved sends neither claimed (nor skipped) at the gate nor given back yet: unstarted, in the
   * pacer, at the gate, or left unclaimed. Given back once, by their batch's end or stop().
   */
  const reserved = new Set<string>();
  /** Those of `ids` still in `reserved`, taken out of it: the ones to give back now. */
  const takeReserved = (ids: Iterable<string>) => [...ids].filter((id) => reserved.delete(id));
  const running = new Set<Promise<unknown>>();

  async function pauseFor(campaign: CampaignRow, hold: Exclude<MailboxHold, 'mailbox_syncing'>) {
    await repo.transition(campaign.id, ['sending', 'scheduled'], { status: 'paused', statusReason: hold });
    logger.warn({ campaignId: campaign.id, reason: hold }, 'campaign paused until its mailbox can serve it');
  }

  /*
   * The gate and the sent record are group-committed (group-commit.ts): sends of a round that
   * reach the gate together, or while a claim runs, go in one statement; a round's sent
   * records wait for each other (roundCommit in sendBatch) and go in one statement. Each send
   * still waits for its own verdict before its request, and each round for its records
   * before the next round starts, so nothing is claimed earlier than before and a kill -9
   * still leaves at most one send per lane (a round's slot) unresolved.
   */
  const claimTogether = groupCommit((input: ClaimInput) => `${input.campaign.id}:${input.mailbox.id}`, (inputs) => ledger.claimMany(inputs));
  // Records outside a round's barrier (recovery, a send that waited out a retry). Keyed like the
  // claims: one campaign and mailbox's records never wait on, or fail with, another's.
  const recordTogether = groupCommit((input: SentInput & { key: string }) => input.key, (inputs) => ledger.markSentMany(inputs));

  const recorder: SendRecorder = {
    async recordSent(campaign, send, lease, gmail, subject, mailbox, write = (record) => recordTogether({ ...record, key: `${campaign.id}:${mailbox.id}` })) {
      const at = now();
      const nextStep = campaign.steps[send.step];
      const next = nextStep
        ? { campaign, send, senderDomain: senderDomain(mailbox.email), dueAt: new Date(at.getTime() + nextStep.afterDays * DAY_MS) }
        : undefined;
      if (!(await write({ lease, gmail, at, subject, next }))) {
        logger.warn({ sendId: send.id }, 'a send was confirmed after its lease was taken over; the newer outcome stands');
      }
    },
  };
  const recovery = createSendRecovery({ ...deps, workerId: recoveryOwnerOf(workerId), leaseMs, recorder, now });
  const recordFailure = createFailureRecorder({ ledger, logger, now, scheduleLook: recovery.scheduleLook, pauseFor });
  const preparation = createSendPreparation(repo, deps.urls);

  /** `round`: this send's place in its round's sent-record barrier (left as soon as it will not record soon). */
  async function sendCandidate(batch: BatchContext, prepared: Prepared, round: RoundMember<SentInput, boolean>): Promise<Outcome> {
    const { campaign, mailbox } = batch;
    const { candidate, mail, raw, previous } = prepared;
    const track: Tracked = { state: 'waiting' };
    tracked.set(candidate.id, track);

    /** The gate: claim on the first attempt, re-check (and renew the lease) before each retry. */
    const beforeAttempt = async () => {
      if (stopping) throw new GateClosed({ kind: 'stopping' });
      track.state = 'gating';
      const verdict = track.lease
        ? await ledger.recheck(track.lease, campaign, candidate, now(), after(leaseMs))
        : await claimTogether({ campaign, mailbox, candidate, owner: workerId, messageRowId: randomUUID(), subject: mail.subject, now: now(), leaseUntil: after(leaseMs) });
      // Claimed, or written skipped: no reservation is left to give back (the row is no longer queued).
      if (verdict.kind === 'go' || verdict.kind === 'skipped') reserved.delete(candidate.id);
      if (verdict.kind !== 'go') throw new GateClosed(verdict);
      track.lease = verdict.lease;
      if (stopping) throw new GateClosed({ kind: 'stopping' });
      track.state = 'in_flight';
    };
    const onRefused = () => {
      track.state = 'refused';
      // Waiting out a retry: the round's other records do not wait for this one.
      round.leave();
    };

    try {
      // Held behind the mailbox's pause (another send of the round met a 429): the round's answered
      // sends are recorded without waiting for this one (it goes out after the pause, recorded alone).
      const onPaused = () => round.leave();
      const options = { beforeAttempt, onRefused, onPaused, signal: stopped.signal };
      const sent = await mailboxes.withGmail(mailbox, (gmail) => gmail.sendRaw(raw, previous?.gmailThreadId ?? undefined, options));
      await deps.afterGmailAccepted?.(candidate.id);
      await recorder.recordSent(campaign, candidate, track.lease!, sent, mail.subject, mailbox, round.submit);
      return 'sent';
    } catch (error) {
      // Failed or stopped: the round's other records do not wait for this send's own writes below.
      round.leave();
      // Stopped at the gate, or while waiting in the pacer (`stopped`'s reason): the same outcome.
      if (error instanceof GateClosed) {
        const { kind } = error.verdict;
        if ((kind === 'stopping' || kind === 'halted') && track.lease) await ledger.requeue(track.lease, now(), 'handed_back');
        return kind === 'stopping' || kind === 'halted' ? 'stop' : 'next';
      }
      if (!(error instanceof GmailError)) throw error;
      if (!track.lease) {
        // Refused before the gate (the pacer's pause is too long, the token is dead): nothing was
        // claimed; its reservation is given back with its batch's (runCampaign).
        if (error.kind === 'auth_revoked') await pauseFor(campaign, 'mailbox_needs_reconnect');
        return 'stop';
      }
      return recordFailure(campaign, mailbox, candidate, track.lease, error);
    } finally {
      tracked.delete(candidate.id);
    }
  }

  /**
   * Sends a reserved batch a few at a time (Gmail allows a handful of concurrent calls per
   * user; the pacer meters quota), in rounds of `concurrency` sends that start together: the
   * pacer then grants a round in one store call, the gate claims it in one statement and the
   * sent records go together (group-commit.ts) — a few statements per round instead of three
   * per message (issue #14). A rate limit or revoked grant stops the batch: no new round
   * starts, nor once the campaign's sending window has closed. A send's own error (the database,
   * a bug) is logged and stops the batch too, once the rest of its round has finished. Unstarted
   * rows keep their `queued` state; their reservation is given back (runCampaign).
   */
  async function sendBatch(batch: BatchContext, candidates: SendCandidate[]): Promise<number> {
    let next = 0;
    let sent = 0;
    let stop = false;
    const prepareRound = (from: number) => Promise.allSettled(candidates.slice(from, from + concurrency).map((candidate) => preparation.prepare(batch, candidate)));
    // The next round is rendered while this one waits on the pacer, the gate, Gmail and its
    // records (the worker is otherwise idle then: rendering has no side effect, so a round
    // rendered and never started costs nothing but the work).
    let preparing = prepareRound(0);
    // The sending window is asked again before each round, not only before the batch: at a slow
    // pace a batch of 50 outlasted the window's close by minutes. This only saves the rendering
    // and the quota: the gate reads the window again at the claim and before each retry (gate-sql.ts).
    while (!stop && !stopping && next < candidates.length && isInsideWindow(batch.campaign.sendingWindow, now())) {
      const round = candidates.slice(next, next + concurrency);
      next += round.length;
      // Rendered first, then started in the same tick, so that the round reaches the pacer together.
      const prepared = await preparing;
      // One sent-record statement for the round: the records wait for each other (not for a send waiting out a retry).
      const records = roundCommit<SentInput, boolean>(prepared.filter((p) => p.status === 'fulfilled').length, (items) => ledger.markSentMany(items), {
        maxWaitMs: ROUND_RECORD_WAIT_MS,
        late: (record) => recordTogether({ ...record, key: `${batch.campaign.id}:${batch.mailbox.id}` }),
      });
      const sending = Promise.allSettled(prepared.map((p) => (p.status === 'fulfilled' ? sendCandidate(batch, p.value, records.member()) : Promise.reject(p.reason))));
      if (next < candidates.length) preparing = prepareRound(next);
      const outcomes = await sending;
      outcomes.forEach((outcome, i) => {
        if (outcome.status === 'fulfilled') {
          if (outcome.value === 'sent') sent += 1;
          else if (outcome.value === 'stop') stop = true;
          return;
        }
        stop = true;
        const error = outcome.reason;
        logger.error({ sendId: round[i]!.id, errorName: errorNameOf(error) }, 'a send failed outside Gmail; its lease decides what happens to it');
      });
    }
    return sent;
  }

  async function runCampaign(campaign: CampaignRow, mailbox: MailboxRow): Promise<number> {
    if (campaign.status === 'scheduled') {
      if (!(await repo.transition(campaign.id, ['scheduled'], { status: 'sending', statusReason: null }))) return 0;
      campaign = { ...campaign, status: 'sending' };
    }
    const hold = mailboxHold(campaign, mailbox);
    // Reading a reconnected mailbox takes seconds: the campaign waits as it is, not paused and resumed.
    if (hold === 'mailbox_syncing') return 0;
    if (hold) {
      await pauseFor(campaign, hold);
      return 0;
    }
    let sent = 0;
    if (isInsideWindow(campaign.sendingWindow, now()) && !(await deps.pacer.pauseEndsAt(mailbox.id))) {
      const budget = await mailboxes.remainingBudget(mailbox);
      const candidates = budget > 0 && !stopping ? await ledger.reserveDue(campaign, workerId, Math.min(batchSize, budget), now(), after(leaseMs)) : [];
      if (candidates.length > 0) {
        for (const c of candidates) reserved.add(c.id);
        try {
          const batch = await preparation.batchContext(campaign, mailbox, candidates);
          sent = await sendBatch(batch, candidates);
        } finally {
          // What the batch left unclaimed (unstarted, not rendered, refused before the gate, closed at
          // it) goes back in one statement: another worker may take it now, not after the lease. None
          // when all were claimed (an empty release runs no statement); stop() may have given it back.
          await ledger.releaseReservations(workerId, takeReserved(candidates.map((c) => c.id)));
        }
      }
    }
    await repo.completeIfDone(campaign.id, now());
    return sent;
  }

  /** One pass over every active campaign; returns how many messages went out. */
  async function tick(): Promise<number> {
    if (stopping) return 0;
    const pass = (async () => {
      for (const paused of await repo.pausedForMailbox()) {
        const mailbox = paused.mailboxId ? await deps.mailboxRepo.findByIdUnscoped(paused.mailboxId) : undefined;
        if (!mailbox) {
          // Disconnected meanwhile: say so (a reconnect is a new mailbox; only a person's resume lifts this pause, continuing from it).
          await repo.transition(paused.id, ['paused'], { status: 'paused', statusReason: 'mailbox_disconnected' }, { statusReason: paused.statusReason });
          continue;
        }
        // Reconnected: a sequence resumes once a sync has read what arrived meanwhile — a reply
        // there stops a follow-up that would otherwise go out first (the reconnect starts that sync).
        const hold = resumeHold(paused, mailbox);
        // Only from the pause it read: one a person made meanwhile is theirs to lift.
        const ownPause = { statusReason: paused.statusReason };
        if (!hold) await repo.transition(paused.id, ['paused'], { status: 'sending', statusReason: null }, ownPause);
        else if (hold !== paused.statusReason) await repo.transition(paused.id, ['paused'], { status: 'paused', statusReason: hold }, ownPause);
      }
      const byMailbox = new Map<string, CampaignRow[]>();
      for (const campaign of await repo.activeCampaigns(now())) {
        if (!campaign.mailboxId) {
          await repo.transition(campaign.id, ['sending'], { status: 'paused', statusReason: 'mailbox_disconnected' });
          continue;
        }
        byMailbox.set(campaign.mailboxId, [...(byMailbox.get(campaign.mailboxId) ?? []), campaign]);
      }
      // Mailboxes side by side: a rate-limited one waits alone. Within a mailbox, campaigns take turns.
      const results = await Promise.allSettled(
        [...byMailbox].map(async ([mailboxId, campaigns]) => {
          const mailbox = await deps.mailboxRepo.findByIdUnscoped(mailboxId);
          let sent = 0;
          for (const campaign of campaigns) {
            if (stopping) break;
            if (!mailbox) await repo.transition(campaign.id, ['sending', 'scheduled'], { status: 'paused', statusReason: 'mailbox_disconnected' });
            else sent += await runCampaign(campaign, mailbox);
          }
          return sent;
        }),
      );
      let sent = 0;
      for (const result of results) {
        if (result.status === 'fulfilled') sent += result.value;
        else logger.error({ errorName: errorNameOf(result.reason) }, 'a mailbox’s sending pass failed');
      }
      return sent;
    })();
    running.add(pass);
    try {
      return await pass;
    } finally {
      running.delete(pass);
    }
  }

  /** Ticks until a pass sends nothing: for tests, the CLI and benchmarks. */
  async function runUntilIdle(maxTicks = 10_000): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxTicks; i += 1) {
      const sent = await tick();
      total += sent;
      if (sent === 0) break;
    }
    return total;
  }

  /**
   * Graceful shutdown (called by jobs.ts on SIGTERM). At once: no new claim, every unclaimed
   * reservation given back (unstarted, in the pacer, at the gate: a claim running meanwhile wins
   * by its own conditions, its row `sending`, and the gate's stopping check hands it back), sends
   * claimed but not in a request (waiting out a 429 pause) requeued, sends waiting in the pacer
   * out of it (`stopped`: no grant taken, their pass ends without them). Then waits for requests in
   * flight to get their answer and be recorded, up to `deadlineMs` (jobs.ts passes its shutdown
   * grace); whatever is still in flight after that is left to its lease (recovery searches the
   * mailbox for it). Resolves; never throws.
   */
  async function stop(deadlineMs: number): Promise<void> {
    stopping = true;
    const handBack: Promise<unknown>[] = [];
    for (const track of tracked.values()) {
      if (track.lease && track.state === 'refused') handBack.push(ledger.requeue(track.lease, now(), 'handed_back'));
    }
    handBack.push(ledger.releaseReservations(workerId, takeReserved(reserved)));
    stopped.abort(new GateClosed({ kind: 'stopping' }));
    await settlesWithin(Promise.allSettled([...handBack, ...running]), deadlineMs);
  }

  return {
    workerId,
    tick,
    runUntilIdle,
    /** Resolves sends whose lease expired (crashed worker, unknown outcome): mailbox search first, never a blind retry. */
    recoverStuck: recovery.recoverExpired,
    stop,
  };
}

export type SendWorker = ReturnType<typeof createSendWorker>;
