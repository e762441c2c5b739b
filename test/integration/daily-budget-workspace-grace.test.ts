import { expect, it } from 'vitest';
import { createSqlLimitStore, type LimitPolicy } from '../../src/gmail/limit-store.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A reviewer's finding on migration 0055 (fixed by 0058). A workspace's own headroom (mailbox_budget_workspaces) starts
 * uncounted (its first send there, and after any budget change or reconnect of the address,
 * which resets every workspace's row). Its recount waits until the ACCOUNT's last grant
 * (mailbox_budget_accounts.budget_granted_at, set by a grant of ANY workspace) is
 * budgetClaimGraceMs old. While another workspace sends from the same Gmail address at the
 * normal pace (60/min = a grant a second; grace 10 s in service), that moment never comes: the
 * first workspace gets 'wait' for as long as the other one sends — up to its whole daily budget
 * (2,000 at 60/min, ~33 min) — though it has its own budget and the account has headroom.
 * 0055 says "a workspace's daily budget limits its own sends, never another workspace's". Now
 * each recount waits only for the grants it counts (the workspace's row has its own last grant).
 */
const ctx = useAppWithOwner({ env: { GMAIL_DAILY_BUDGET_WORKSPACE: '100', GMAIL_DAILY_BUDGET_CONSUMER: '100' } });

const policy: LimitPolicy = { unitsPerMinute: 15_000, burstUnits: 500, sendsPerMinute: 60, budgetRecountMs: 0, budgetClaimGraceMs: 10_000 };

it("one workspace sending at the normal pace never holds another workspace's first send of the same address", async () => {
  const address = 'starved-workspace@acme.test';
  const a = await connectedMailbox(ctx.app, ctx.owner.token, address);
  const other = await signUp(ctx.app);
  const b = await connectedMailbox(ctx.app, other.token, address);
  const store = createSqlLimitStore(ctx.app.database.db);
  const t0 = Date.now() + 60_000;

  // Workspace B sends one mail a second (its pace) for 30 s.
  const outcomesOfA: string[] = [];
  for (let s = 0; s <= 30; s += 1) {
    const granted = await store.take(b.id, 100, true, policy, t0 + s * 1_000);
    expect(granted.kind, `B at +${s}s`).toBe('granted');
    // Workspace A asks in the middle of each second, as a worker retrying after its 'wait' would.
    if (s % 5 === 0) outcomesOfA.push((await store.take(a.id, 100, true, policy, t0 + s * 1_000 + 500)).kind);
  }
  // A has its whole own budget (100) and the account 69 left: within the grace (10 s) of its
  // first ask it must be granted. Before 0058: 'wait' every time, for as long as B sends.
  expect(outcomesOfA.slice(3)).toContain('granted');
}, 60_000);
