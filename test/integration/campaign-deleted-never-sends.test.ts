import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import { MIGRATIONS_FOLDER, type Database, type Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';
import { sqlStateOf } from '../../src/db/pg-errors.js';
import { createTestDatabase } from '../helpers/test-db.js';

/*
 * "A deleted campaign never sends" is a rule of the database (migration 0063): `deleted_at` set
 * means the campaign is not scheduled, sending or paused. The code keeps it (the deletion cancels
 * a running campaign in its transaction; `transition` moves no deleted campaign), and the
 * constraint fails a path that would forget it instead of leaving a hidden campaign sending.
 * Run on the test database (PGlite, or the server with TEST_DATABASE_URL).
 */

const CONSTRAINT = 'campaigns_deleted_not_running';
const MIGRATION = '0063_deleted_campaign_never_sends.sql';

let database: Database;
let db: Db;
let workspaceId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  db = database.db;
  workspaceId = rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values ('deleted-never-sends') returning id`))[0]!.id;
});
afterAll(() => database?.close());

async function campaign(status: string, options: { deleted: boolean; reason?: string }): Promise<string> {
  return rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, status, status_reason, audience, deleted_at)
      values (${workspaceId}::uuid, ${status}, 'marketing', 'Hi', ${status}::campaign_status, ${options.reason ?? null}, '{"contactIds":[]}',
              ${options.deleted ? sql`now()` : sql`null`}) returning id`),
  )[0]!.id;
}

async function stateOf(id: string) {
  return rowsOf<{ status: string; status_reason: string | null; skipping: boolean; deleted: boolean }>(
    await db.execute(sql`
      select status::text as status, status_reason, skipping_queued_since is not null as skipping, deleted_at is not null as deleted
      from campaigns where id = ${id}::uuid`),
  )[0];
}

async function rejection(statement: Promise<unknown>): Promise<{ state?: string; constraint?: string }> {
  const error = await statement.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the statement was accepted').toBeDefined();
  const cause = (error as { cause?: { constraint?: string } }).cause;
  return { state: sqlStateOf(error), constraint: cause?.constraint };
}

describe('migration 0063: a deleted campaign is never scheduled, sending or paused', () => {
  it('the migrated database holds the constraint, validated', async () => {
    const [row] = rowsOf<{ validated: boolean; definition: string }>(
      await db.execute(sql`select convalidated as validated, pg_get_constraintdef(oid) as definition from pg_constraint where conname = ${CONSTRAINT}`),
    );
    expect(row?.validated).toBe(true);
    expect(row?.definition).toMatch(/deleted_at IS NULL/);
  });

  it('brings a row that breaks the rule into line (cancelled, reason deleted, its queued sends left to the sweep), and leaves the others as they were', async () => {
    // Rows as a bug before the constraint could have left them: the constraint is taken away to write them.
    await db.execute(sql.raw(`alter table campaigns drop constraint ${CONSTRAINT}`));
    const broken = {
      scheduled: await campaign('scheduled', { deleted: true }),
      sending: await campaign('sending', { deleted: true }),
      paused: await campaign('paused', { deleted: true, reason: 'paused_by_user' }),
    };
    const kept = {
      deletedDraft: await campaign('draft', { deleted: true }),
      deletedCancelled: await campaign('cancelled', { deleted: true, reason: 'cancelled_by_user' }),
      deletedCompleted: await campaign('completed', { deleted: true }),
      liveSending: await campaign('sending', { deleted: false }),
      livePaused: await campaign('paused', { deleted: false, reason: 'paused_by_user' }),
    };
    const before = Object.fromEntries(await Promise.all(Object.entries(kept).map(async ([name, id]) => [name, await stateOf(id)])));

    // The migration's own statements, as the migrator runs them: one transaction.
    const statements = readFileSync(path.join(MIGRATIONS_FOLDER, MIGRATION), 'utf8').split('--> statement-breakpoint');
    await db.transaction(async (tx) => {
      for (const statement of statements) await tx.execute(sql.raw(statement));
    });

    for (const id of Object.values(broken)) expect(await stateOf(id)).toEqual({ status: 'cancelled', status_reason: 'deleted', skipping: true, deleted: true });
    const after = Object.fromEntries(await Promise.all(Object.entries(kept).map(async ([name, id]) => [name, await stateOf(id)])));
    expect(after).toEqual(before);
    const [{ validated } = { validated: false }] = rowsOf<{ validated: boolean }>(await db.execute(sql`select convalidated as validated from pg_constraint where conname = ${CONSTRAINT}`));
    expect(validated).toBe(true);
  });

  it('rejects a direct write that would leave a deleted campaign running, either way round', async () => {
    const deletedDraft = await campaign('draft', { deleted: true });
    const liveSending = await campaign('sending', { deleted: false });
    for (const status of ['scheduled', 'sending', 'paused']) {
      expect(await rejection(db.execute(sql`update campaigns set status = ${status}::campaign_status where id = ${deletedDraft}::uuid`))).toEqual({ state: '23514', constraint: CONSTRAINT });
    }
    expect(await rejection(db.execute(sql`update campaigns set deleted_at = now() where id = ${liveSending}::uuid`))).toEqual({ state: '23514', constraint: CONSTRAINT });
    expect(await stateOf(deletedDraft)).toMatchObject({ status: 'draft', deleted: true });
    expect(await stateOf(liveSending)).toMatchObject({ status: 'sending', deleted: false });
  });

  it('the repo never asks it: a transition of a deleted campaign into a running state changes nothing, without an error', async () => {
    // A deleted draft is the one deleted campaign a transition could take to a running state (a launch).
    const repo = createCampaignsRepo(db);
    const deletedDraft = await campaign('draft', { deleted: true });
    const deletedCancelled = await campaign('cancelled', { deleted: true, reason: 'deleted' });
    for (const status of ['scheduled', 'sending', 'paused'] as const) {
      expect(await repo.transition(deletedDraft, ['draft'], { status })).toBeUndefined();
      expect(await repo.transition(deletedCancelled, ['cancelled'], { status })).toBeUndefined();
    }
    expect(await stateOf(deletedDraft)).toMatchObject({ status: 'draft', deleted: true });
    expect(await stateOf(deletedCancelled)).toMatchObject({ status: 'cancelled', deleted: true });
  });
});
