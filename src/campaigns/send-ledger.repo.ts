import type { Db } from '../db/connect.js';
import { DEFAULT_AUTO_REPLY_FOLLOW_UP_DELAY_DAYS } from '../config/schema.js';
import { createLedgerReservationQueries } from './send-ledger-reservation.repo.js';
import { createLedgerClaimQueries } from './send-ledger-claim.repo.js';
import { createLedgerOutcomeQueries } from './send-ledger-outcomes.repo.js';
import { createLedgerRecoveryQueries } from './send-ledger-recovery.repo.js';

export type { SendLease } from './ledger-fence.js';
export type { SendCandidate } from './send-ledger-reservation.repo.js';
export type { ClaimInput, GateResult } from './send-ledger-claim.repo.js';
export type { SentInput } from './send-ledger-outcomes.repo.js';

/*
 * The send ledger's state machine (see README.md, "Lifecycle of a send", and SEND-LEDGER.md):
 * reservation (send-ledger-reservation.repo.ts), the claim (send-ledger-claim.repo.ts), the
 * outcomes (send-ledger-outcomes.repo.ts) and recovery's queries (send-ledger-recovery.repo.ts),
 * one repo. Every change of a row in `sending` passes its lease's fence (ledger-fence.ts).
 */

export interface SendLedgerOptions {
  /**
   * The engine runs one statement or transaction at a time (PGlite: every query and every
   * transaction holds its one connection exclusively). Then the claim, a single statement,
   * cannot interleave with an opt-out's transaction at all, so it runs without the explicit
   * transaction and the address lock — three round trips fewer per message. On a server the
   * lock is what provides that serialization.
   */
  serializedEngine?: boolean;
  /**
   * AUTO_REPLY_FOLLOW_UP_DELAY_DAYS: how long an automatic reply holds a recipient's later steps
   * (auto-reply-hold-sql.ts). The service passes its configuration; unset, the configuration's default.
   */
  autoReplyDelayDays?: number;
}

export function createSendLedgerRepo(db: Db, options: SendLedgerOptions = {}) {
  const resolved = { serializedEngine: options.serializedEngine, autoReplyDelayDays: options.autoReplyDelayDays ?? DEFAULT_AUTO_REPLY_FOLLOW_UP_DELAY_DAYS };
  return {
    ...createLedgerReservationQueries(db),
    ...createLedgerClaimQueries(db, resolved),
    ...createLedgerOutcomeQueries(db, resolved),
    ...createLedgerRecoveryQueries(db, resolved),
  };
}

export type SendLedgerRepo = ReturnType<typeof createSendLedgerRepo>;
