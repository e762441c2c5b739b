/**
 * Preflight at scale: `campaigns.preflight` (the service call behind POST /api/campaigns/:id/preflight)
 * over a large audience and a large suppression list, beside raw set-based SQL computing the
 * same counts in the same database, in the same run.
 *
 *   npm run bench -- preflight
 *   BENCH_AUDIENCE=100000 BENCH_SUPPRESSIONS=1000000 BENCH_RUNS=3 BENCH_TARGETS=pglite,server npm run bench -- preflight
 *
 * Targets: in-memory PGlite, and a database of its own on BENCH_DATABASE_URL (default the local
 * server; skipped if it does not answer). Two audiences of the same contacts: a segment over an
 * attribute, and the same contacts as a list of ids (one uuid[] parameter). Two baselines, both
 * hand-written: hash joins over the whole suppression list and a DISTINCT ON of the consents, and
 * one lateral index probe per contact; the ratio is against the faster. Baselines run with JIT
 * off like the service's query, so the comparison is about the query, not the server's settings.
 * Prints EXPLAIN (ANALYZE, BUFFERS) of the service's query for the segment audience.
 */
import { sql, type SQL } from 'drizzle-orm';
import { preflightCountsSql } from '../../src/campaigns/audience-sql.js';
import { createCampaignsRepo } from '../../src/campaigns/campaigns.repo.js';
import type { Db } from '../../src/db/connect.js';
import {
  analyze,
  benchServices,
  explain,
  fmt,
  machineLine,
  openBenchDatabase,
  rowsOf,
  seedContacts,
  seedSuppressions,
  seedWorkspace,
  targets,
  timed,
} from './audience-data.js';

const AUDIENCE = Number(process.env.BENCH_AUDIENCE ?? 100_000);
const SUPPRESSIONS = Number(process.env.BENCH_SUPPRESSIONS ?? 1_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const TOPIC = 'news';
const VALID_ADDRESS = `'^[^@[:space:]]+@[^@[:space:]]+[.][^@[:space:]]+$'`;

/** Hash joins: every suppression of the workspace, and each contact's latest consent by DISTINCT ON. */
const hashBaseline = (workspaceId: string, audience: SQL) => sql`
  with audience as (select id, email from contacts where workspace_id = ${workspaceId}::uuid and ${audience}),
  latest as (select distinct on (contact_id) contact_id, status from consents where workspace_id = ${workspaceId}::uuid order by contact_id, at desc, seq desc),
  blocked as (select distinct lower(email) as email from suppressions where workspace_id = ${workspaceId}::uuid and scope in ('all', ${`topic:${TOPIC}`}))
  select count(*)::int as total,
    count(*) filter (where invalid)::int as invalid,
    count(*) filter (where not invalid and suppressed)::int as suppressed,
    count(*) filter (where not invalid and not suppressed and not opted_in)::int as missing_consent
  from (select audience.email !~ ${sql.raw(VALID_ADDRESS)} as invalid, blocked.email is not null as suppressed, coalesce(latest.status = 'opted_in', false) as opted_in
        from audience left join blocked on blocked.email = lower(audience.email) left join latest on latest.contact_id = audience.id) x`;

/** Index probes: one lateral lookup per contact into each index. */
const probeBaseline = (workspaceId: string, audience: SQL) => sql`
  select count(*)::int as total,
    count(*) filter (where invalid)::int as invalid,
    count(*) filter (where not invalid and suppressed)::int as suppressed,
    count(*) filter (where not invalid and not suppressed and not opted_in)::int as missing_consent
  from (select c.email !~ ${sql.raw(VALID_ADDRESS)} as invalid, s.hit is not null as suppressed, coalesce(l.status = 'opted_in', false) as opted_in
        from contacts c
        left join lateral (select true as hit from suppressions sp where sp.workspace_id = c.workspace_id and lower(sp.email) = lower(c.email)
                           and sp.scope in ('all', ${`topic:${TOPIC}`}) limit 1) s on true
        left join lateral (select cs.status from consents cs where cs.workspace_id = c.workspace_id and cs.contact_id = c.id
                           order by cs.at desc, cs.seq desc limit 1) l on true
        where c.workspace_id = ${workspaceId}::uuid and ${audience}) x`;

async function runRaw(db: Db, query: SQL) {
  return db.transaction(async (tx) => {
    await tx.execute(sql`set local jit = off`);
    const row = rowsOf<Record<string, number>>(await tx.execute(query))[0]!;
    return { total: Number(row.total), invalid: Number(row.invalid), suppressed: Number(row.suppressed), missingConsent: Number(row.missing_consent) };
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ms = (v: number) => `${v.toFixed(0)} ms`;

console.log(`preflight: ${fmt(AUDIENCE)} audience × ${fmt(SUPPRESSIONS)} suppressions, ${RUNS} runs each; ${machineLine()}`);
for (const target of targets) {
  const bench = await openBenchDatabase(target);
  if (!bench) continue;
  try {
    const { db } = bench.database;
    const ws = await seedWorkspace(db, 'Preflight');
    const seeded = await timed(async () => {
      await seedContacts(db, ws.workspaceId, AUDIENCE);
      await seedSuppressions(db, ws.workspaceId, AUDIENCE, SUPPRESSIONS);
      await analyze(db);
    });
    console.log(`\n[${target}] seeded in ${(seeded.ms / 1000).toFixed(1)} s`);
    const services = benchServices(bench.database);
    const segmentSql = sql`attributes ->> 'list' = 'a'`;
    const ids = rowsOf<{ id: string }>(await db.execute(sql`select id::text from contacts where workspace_id = ${ws.workspaceId}::uuid and ${segmentSql}`)).map((r) => r.id);
    const base = { kind: 'marketing' as const, mailboxId: ws.mailboxId, subject: 'Hi {{firstName}}', text: 'Hello', topic: TOPIC, steps: [] };
    const audiences = [
      { name: 'segment', campaign: await services.campaigns.create(ws.auth, { ...base, name: 'by segment', audience: { segment: { all: [{ field: 'attributes.list', op: 'eq', value: 'a' }] } } }), raw: segmentSql },
      {
        name: 'contact ids',
        campaign: await services.campaigns.create(ws.auth, { ...base, name: 'by ids', audience: { contactIds: ids } }),
        raw: sql`id = any(${`{${ids.join(',')}}`}::uuid[])`,
      },
    ];
    console.log('audience    | ours (median, min)  | raw hash joins (median) | raw index probes (median) | ratio to the faster raw | counts agree');
    for (const { name, campaign, raw } of audiences) {
      const times = { ours: [] as number[], hash: [] as number[], probe: [] as number[] };
      let agree = true;
      for (let run = 0; run <= RUNS; run += 1) {
        // Run 0 warms the caches and is not counted.
        const ours = await timed(() => services.campaigns.preflight(ws.auth, campaign.id));
        const hash = await timed(() => runRaw(db, hashBaseline(ws.workspaceId, raw)));
        const probe = await timed(() => runRaw(db, probeBaseline(ws.workspaceId, raw)));
        const { total, invalid, suppressed, missingConsent } = ours.value;
        agree &&= [hash.value, probe.value].every((b) => JSON.stringify(b) === JSON.stringify({ total, invalid, suppressed, missingConsent }));
        if (run === 0) {
          if (name === 'segment') console.log(`counts: ${JSON.stringify({ total, eligible: ours.value.eligible, suppressed, missingConsent, invalid })}`);
          continue;
        }
        times.ours.push(ours.ms);
        times.hash.push(hash.ms);
        times.probe.push(probe.ms);
      }
      const best = Math.min(median(times.hash), median(times.probe));
      console.log(
        `${name.padEnd(11)} | ${`${ms(median(times.ours))}, ${ms(Math.min(...times.ours))}`.padEnd(19)} | ${ms(median(times.hash)).padEnd(23)} | ${ms(median(times.probe)).padEnd(25)} | ${(median(times.ours) / best).toFixed(2).padEnd(23)} | ${agree ? 'yes' : 'NO'}`,
      );
    }
    const row = (await createCampaignsRepo(db).findById(ws.workspaceId, audiences[0]!.campaign.id))!;
    const plan = await db.transaction(async (tx) => {
      await tx.execute(sql`set local jit = off`);
      return explain(tx as unknown as Db, preflightCountsSql(row));
    });
    console.log(`\nEXPLAIN (ANALYZE, BUFFERS) of the service's preflight query, ${target}, segment audience:\n${plan}`);
  } finally {
    await bench.close();
  }
}
