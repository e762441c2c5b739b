import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createApp, createHttpServer, createServices } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { connect } from '../../src/db/connect.js';
import { campaignLinks, campaignSends, campaigns, recipients, workspaces } from '../../src/db/schema.js';
import { resolveGoogle } from '../../src/gmail/google-settings.js';
import { createLogger } from '../../src/logger.js';
import { PIXEL_GIF } from '../../src/tracking/tracking-handler.js';
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'cmp-'));
const dbUrl = process.env.CMP_DB ?? `pglite:${dataDir}/pg`;
const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'warn', DATA_DIR: dataDir, DATABASE_URL: dbUrl, JWT_SECRET: 'x'.repeat(40), TOKEN_ENCRYPTION_KEYS: `v1:${Buffer.alloc(32, 7).toString('base64')}`, TRACKING_SECRET: 'v1:' + 'y'.repeat(40), PUBLIC_BASE_URL: 'http://127.0.0.1:1' });
const database = await connect(config.database);
await database.migrate();
const google = await resolveGoogle(config, { sandboxPort: 0 });
const deps = { config, database, logger: createLogger('warn'), google };
const services = createServices(deps);
const ours = createHttpServer(createApp(deps, services), services);
await new Promise<void>((r) => ours.listen(0, '127.0.0.1', () => r()));
const bare = createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'image/gif', 'Content-Length': '43', 'Cache-Control': 'no-store, private', Expires: '0', 'X-Content-Type-Options': 'nosniff' }); res.end(PIXEL_GIF); });
await new Promise<void>((r) => bare.listen(0, '127.0.0.1', () => r()));
const { db } = database;
const [w] = await db.insert(workspaces).values({ name: 'B' }).returning({ id: workspaces.id });
const [c] = await db.insert(campaigns).values({ workspaceId: w!.id, name: 'B', kind: 'marketing', subject: 'B', audience: { contactIds: [] } }).returning({ id: campaigns.id });
await db.insert(campaignLinks).values([{ campaignId: c!.id, linkIndex: 0, url: 'https://x.example.com/' }, { campaignId: c!.id, linkIndex: 1, url: 'https://y.example.com/' }]);
const [r] = await db.insert(recipients).values({ workspaceId: w!.id, email: 'a@b.c' }).returning({ id: recipients.id });
const [s] = await db.insert(campaignSends).values({ workspaceId: w!.id, campaignId: c!.id, step: 0, recipientId: r!.id, email: 'a@b.c', status: 'sent', rfc822MessageId: randomUUID(), sentAt: new Date(Date.now() - 3600_000) }).returning({ id: campaignSends.id });
const pix = new URL(services.tracking.urls.openPixel(s!.id)).pathname;
const clk = new URL(services.tracking.urls.click(s!.id, 0)).pathname;
const port = (x: typeof ours) => (x.address() as AddressInfo).port;
function ac(url: string, secs = 3, rate?: number): Promise<{ rps: number; p99: number }> {
  return new Promise((resolve) => {
    const args = ['-j', '-n', '-d', String(secs), '-c', '10', '-H', 'user-agent=Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'];
    if (rate) args.push('-R', String(rate));
    const child = spawn(path.resolve('node_modules/.bin/autocannon'), [...args, url], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = ''; child.stdout.on('data', (d) => (out += d));
    child.once('exit', () => { const j = JSON.parse(out); resolve({ rps: Math.round(j.requests.total / j.duration), p99: j.latency.p99 }); });
  });
}
const targets = (process.env.CMP_TARGETS ?? 'bare,invalid,pixel,click').split(',');
for (let round = 0; round < Number(process.env.CMP_ROUNDS ?? 2); round++) {
  const line: string[] = [];
  for (const t of targets) {
    const url = t === 'bare' ? `http://127.0.0.1:${port(bare)}/t/o/x.gif` : t === 'invalid' ? `http://127.0.0.1:${port(ours)}/t/o/nope.gif` : t === 'pixel' ? `http://127.0.0.1:${port(ours)}${pix}` : `http://127.0.0.1:${port(ours)}${clk}`;
    const res = await ac(url);
    line.push(`${t} ${res.rps} (p99 ${res.p99})`);
    const pending = services.tracking.pending();
    const t0 = performance.now(); await services.tracking.flush();
    if (pending) line.push(`[backlog ${pending} flushed ${Math.round(performance.now() - t0)}ms]`);
  }
  console.log(`load ${os.loadavg()[0]!.toFixed(1)} | ` + line.join(' | '));
}
ours.close(); bare.close();
await services.tracking.close(); await google.sandbox?.close(); await database.close();
