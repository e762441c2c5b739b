import { randomUUID } from 'node:crypto';
import { createTrackingRepo, type TrackingEventRow } from '../../../src/tracking/tracking.repo.js';
import { scratchDatabase, seedBenchCampaign } from '../common.js';

const { database, drop } = await scratchDatabase(undefined, 'exp');
const db = database.db;
await database.migrate();
const { workspaceId, campaignId, sends } = await seedBenchCampaign(db, 'x', 1000);
let clock = Date.now() - 3600_000;
const verdicts = ['human', 'human', 'human', 'machine', 'machine', 'machine', 'machine', 'machine', 'unknown', 'unknown'] as const;
const repo = createTrackingRepo(db, { singleConnection: true });
for (let round = 0; round < 4; round++) {
  const rows: TrackingEventRow[] = Array.from({ length: 40000 }, (_, i) => { const click = Math.random() < 0.3; return { id: randomUUID(), workspaceId, campaignId, sendId: sends[Math.floor(Math.random() * 1000)]!, type: click ? 'click' : 'open', linkIndex: click ? Math.floor(Math.random() * 5) : null, atMs: clock++, method: 'GET', ip: `203.0.113.${i % 250}`, userAgent: 'x', classification: verdicts[Math.floor(Math.random() * 10)]!, reasons: ['no_machine_signal'] }; });
  for (let i = 0; i < rows.length; i += 1000) await repo.insertEvents(rows.slice(i, i + 1000));
  const t = performance.now();
  while ((await database.runTask('rollUpPending', { maxEvents: 5000 })).records > 0);
  console.log('passes', (performance.now() - t).toFixed(0), 'ms');
}
await drop();
