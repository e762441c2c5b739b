/** What the database benchmarks share: a scratch database (PGlite dir or a server database of their own), the machine line, percentiles. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { createScratchDatabase } from './fixture.js';
import { connect, type Db } from '../../src/db/connect.js';
import { rowsOf } from '../../src/db/pg-array.js';

export async function scratchDatabase(url: string | undefined, prefix: string) {
  if (!url) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
    const database = await connect({ kind: 'pglite', dir: path.join(dir, 'pglite') });
    return { database, label: 'PGlite on disk (embedded)', drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const server = await serverDatabase(url, prefix);
  // Long statements on purpose (bulk generation): no statement timeout here.
  const database = await connect({ kind: 'postgres', url: server.url, poolSize: 2, statementTimeoutMs: 3_600_000 });
  return {
    database,
    label: 'PostgreSQL 15 server (same machine, shared)',
    drop: async () => {
      await database.close();
      await server.drop();
    },
  };
}

/** A database of this run's own on the server, and how to drop it. */
export function serverDatabase(url: string, prefix: string) {
  return createScratchDatabase(url, prefix.replace(/-/g, '_'));
}

/**
 * A workspace of `campaigns` sending campaigns (links 0-5, 5 the honeypot), each with `sendsEach`
 * sent sends to recipients of its own. One campaign of many sends is the usual bench campaign;
 * many campaigns of one send each give sends whose first hit no cache holds (the send cache
 * indexes a campaign's sends at its first lookup).
 */
export async function seedBenchCampaigns(db: Db, name: string, { campaigns, sendsEach }: { campaigns: number; sendsEach: number }) {
  const [ws] = rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values (${name}) returning id`));
  const workspaceId = ws!.id;
  const campaignIds = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, audience, status)
      select ${workspaceId}, case when ${campaigns}::int = 1 then ${name} else ${name} || ' ' || i end, 'marketing', 'Bench', '{"contactIds":[]}'::jsonb, 'sending'
      from generate_series(1, ${campaigns}::int) i returning id`),
  ).map((r) => r.id);
  await db.execute(sql`
    insert into campaign_links (workspace_id, campaign_id, link_index, url, honeypot)
    select c.workspace_id, c.id, i, 'https://shop.example.com/' || i, i = 5
    from campaigns c cross join generate_series(0, 5) i where c.workspace_id = ${workspaceId}`);
  await db.execute(sql`insert into recipients (workspace_id, email) select ${workspaceId}, 'r' || i || '@bench.test' from generate_series(1, ${campaigns * sendsEach}::int) i`);
  const sendIds = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, status, rfc822_message_id, sent_at)
      select ${workspaceId}, c.id, 0, r.id, r.email, 'sent', gen_random_uuid() || '@bench.test', now() - interval '30 days'
      from (select id, row_number() over (order by id) as n from campaigns where workspace_id = ${workspaceId}) c
      join (select id, email, row_number() over (order by id) as n from recipients where workspace_id = ${workspaceId}) r on (r.n - 1) / ${sendsEach}::int + 1 = c.n
      returning id`),
  ).map((r) => r.id);
  return { workspaceId, campaignIds, sends: sendIds };
}

/** A workspace, a campaign with 6 links (the last the honeypot) and `sends` sent sends, by set-based SQL. */
export async function seedBenchCampaign(db: Db, name: string, sends: number) {
  const { workspaceId, campaignIds, sends: sendIds } = await seedBenchCampaigns(db, name, { campaigns: 1, sendsEach: sends });
  return { workspaceId, campaignId: campaignIds[0]!, sends: sendIds };
}

export const machine = () =>
  `node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`;

export const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

/**
 * CPU time (user + system) of a process or thread from `/proc/<path>/stat` (Linux, 10 ms
 * ticks), in µs; undefined when it cannot be read (gone, or not Linux).
 */
export function procCpuMicros(path: string): number | undefined {
  try {
    const fields = readFileSync(`/proc/${path}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return undefined;
  }
}

/** Calls and wall time per method of the objects `timeMethods` wrapped (BENCH_PHASES=1 in campaign.ts). */
export type MethodTimes = Map<string, { calls: number; ms: number }>;

/**
 * `target` with each of its methods timed into `times` under `label.method` (wall time from the call
 * to its promise settling, so a method that waits on a lock or a round trip shows what it waited).
 */
export function timeMethods<T extends object>(target: T, label: string, times: MethodTimes): T {
  const timed = { ...target } as Record<string, unknown>;
  for (const [name, value] of Object.entries(target)) {
    if (typeof value !== 'function') continue;
    const entry = { calls: 0, ms: 0 };
    times.set(`${label}.${name}`, entry);
    timed[name] = (...args: unknown[]) => {
      const started = performance.now();
      const settle = () => {
        entry.calls += 1;
        entry.ms += performance.now() - started;
      };
      const result = (value as (...a: unknown[]) => unknown).apply(target, args);
      if (result instanceof Promise) return result.finally(settle);
      settle();
      return result;
    };
  }
  return timed as T;
}

/** The table `timeMethods` collected: per method, calls, total and mean ms, the busiest first. */
export function printMethodTimes(times: MethodTimes, perUnit: { name: string; count: number }) {
  const rows = [...times].filter(([, t]) => t.calls > 0).sort((a, b) => b[1].ms - a[1].ms);
  for (const [name, t] of rows) {
    console.log(`    ${name.padEnd(40)} ${String(t.calls).padStart(8)} calls  ${t.ms.toFixed(0).padStart(8)} ms  ${(t.ms / t.calls).toFixed(2).padStart(7)} ms each  ${(t.ms / Math.max(1, perUnit.count)).toFixed(3)} ms per ${perUnit.name}`);
  }
}

/**
 * Starts counting with pg_stat_statements (BENCH_PGSS=1 on PGlite, audience-data.ts): every
 * statement, nested ones too (a trigger's, a foreign key's check), with its planning time.
 * False when the engine has not loaded it.
 */
export async function startStatementStats(db: Db): Promise<boolean> {
  try {
    await db.execute(sql`create extension if not exists pg_stat_statements`);
    await db.execute(sql`set pg_stat_statements.track = 'all'`);
    await db.execute(sql`set pg_stat_statements.track_planning = on`);
    await db.execute(sql`select pg_stat_statements_reset()`);
    return true;
  } catch {
    return false;
  }
}

/**
 * The statements that took the engine longest since startStatementStats, with their execution
 * per unit (a statement's time includes what it nested: its triggers' and checks' statements,
 * which are listed again on their own). PostgreSQL 18 names a foreign key's check by its
 * alias, so every table's checks share one row.
 */
export async function printStatementStats(db: Db, perUnit: { name: string; count: number }, limit = 12) {
  const rows = rowsOf<{ calls: number; exec_ms: number; plan_ms: number; rows: number; buffers: number; text: string }>(
    await db.execute(sql`
      select calls::int, total_exec_time as exec_ms, total_plan_time as plan_ms, rows::int, shared_blks_hit + shared_blks_read as buffers,
        left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 110) as text
      from pg_stat_statements where query not like '%pg_stat_statements%'
      order by total_exec_time + total_plan_time desc limit ${limit}`),
  );
  const per = Math.max(1, perUnit.count);
  console.log(`    ${'µs/' + perUnit.name} exec (plan)   calls  buffers/${perUnit.name}  statement`);
  for (const r of rows) {
    console.log(
      `    ${((Number(r.exec_ms) * 1000) / per).toFixed(0).padStart(6)} (${((Number(r.plan_ms) * 1000) / per).toFixed(0).padStart(4)})  ${String(r.calls).padStart(8)}  ${(Number(r.buffers) / per).toFixed(1).padStart(8)}  ${r.text}`,
    );
  }
}
