/** What the database benchmarks share: a scratch database (PGlite dir or a server database of their own), the machine line, percentiles. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { createScratchDatabase } from './fixture.js';
import { connect, type Db } from '../../src/db/connect.js';

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

const rowsOf = <T>(result: unknown) => (result as { rows: T[] }).rows;

/** A workspace, a campaign with 6 links (the last the honeypot) and `sends` sent sends, by set-based SQL. */
export async function seedBenchCampaign(db: Db, name: string, sends: number) {
  const [ws] = rowsOf<{ id: string }>(await db.execute(sql`insert into workspaces (name) values (${name}) returning id`));
  const workspaceId = ws!.id;
  const [c] = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaigns (workspace_id, name, kind, subject, audience, status)
      values (${workspaceId}, ${name}, 'marketing', 'Bench', '{"contactIds":[]}'::jsonb, 'sending') returning id`),
  );
  const campaignId = c!.id;
  await db.execute(sql`insert into campaign_links (workspace_id, campaign_id, link_index, url, honeypot) select ${workspaceId}, ${campaignId}, i, 'https://shop.example.com/' || i, i = 5 from generate_series(0, 5) i`);
  await db.execute(sql`insert into recipients (workspace_id, email) select ${workspaceId}, 'r' || i || '@bench.test' from generate_series(1, ${sends}::int) i`);
  const sendIds = rowsOf<{ id: string }>(
    await db.execute(sql`
      insert into campaign_sends (workspace_id, campaign_id, step, recipient_id, email, status, rfc822_message_id, sent_at)
      select ${workspaceId}, ${campaignId}, 0, id, email, 'sent', gen_random_uuid() || '@bench.test', now() - interval '30 days'
      from recipients where workspace_id = ${workspaceId} returning id`),
  ).map((r) => r.id);
  return { workspaceId, campaignId, sends: sendIds };
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
