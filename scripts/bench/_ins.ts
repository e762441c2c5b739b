import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../src/db/connect.js';
import { createTrackingRepo, type TrackingEventRow } from '../../src/tracking/tracking.repo.js';
const dir = mkdtempSync(path.join(os.tmpdir(), 'ins-'));
const d = await connect(process.env.INS_DB ? { kind: 'postgres', url: process.env.INS_DB } : { kind: 'pglite', dir: process.env.INS_MEM ? 'memory://' : dir });
await d.migrate();
const repo = createTrackingRepo(d.db);
const ws = randomUUID(), c = randomUUID(), s = randomUUID();
const row = (): TrackingEventRow => ({ id: randomUUID(), workspaceId: ws, campaignId: c, sendId: s, type: 'open', linkIndex: null, atMs: Date.now(), method: 'GET', ip: '127.0.0.1', userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36', classification: 'human', reasons: ['no_machine_signal'] });
for (const size of [25, 50, 100, 200, 1000]) {
  const n = 20_000;
  let max = 0; const t = performance.now();
  for (let i = 0; i < n; i += size) { const b = Array.from({ length: size }, row); const t1 = performance.now(); await repo.insertEvents(b); max = Math.max(max, performance.now() - t1); }
  console.log(`batch ${size}: ${((performance.now() - t) / n * 1000).toFixed(1)} us/row, max stmt ${max.toFixed(1)} ms`);
}
await d.close();
