import { get } from 'node:http';
import { describe, expect, it } from 'vitest';
import { seedSentCampaign } from '../helpers/seed-campaign.js';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, useAppWithOwner } from '../helpers/test-app.js';

/*
 * A campaign's results beyond the stats: sends over time and the per-recipient CSV
 * download (GET /api/campaigns/:id/results.csv), streamed a page at a time, with the same
 * human/machine judgement as the stats and no cell a spreadsheet would run as a formula.
 */

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));

/**
 * A GET on a new connection. Seeding 1,100 rows blocks this process's event loop (PGlite is
 * in-process) past the keep-alive timeout, and a reused idle socket would then be reset.
 */
function freshGet(url: string, token: string): Promise<{ status: number; chunked: boolean; text: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, chunked: res.headers['transfer-encoding'] === 'chunked', text }));
    }).on('error', reject);
  });
}

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (cell += '"'), (i += 1);
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(cell), (cell = '');
    else if (ch === '\n') row.push(cell.replace(/\r$/, '')), rows.push(row), (row = []), (cell = '');
    else cell += ch;
  }
  return rows;
}

describe('campaign results', () => {
  it('P-07 the CSV lists every send with its opens, clicks and unsubscribe, formulas neutralised', async () => {
    const { app, owner } = ctx;
    await app.api('PATCH', '/api/workspace', { token: owner.token, json: { name: 'Acme', postalAddress: '1 Main St, Springfield' } });
    const mailbox = await connectedMailbox(app, owner.token, `sender-${Date.now()}@acme.test`);
    const [first, second] = await fixtures.audience(2);
    await app.api('PATCH', `/api/contacts/${first!.id}`, { token: owner.token, json: { firstName: '=HYPERLINK("http://evil.test")' } });
    const campaignId = await fixtures.launched(mailbox.id, 'Results 1', [first!.id, second!.id]);
    await app.services.sendWorker.runUntilIdle();

    // The first recipient opens, clicks (as a person: well after sending) and unsubscribes with one click.
    const mail = app.sandbox.control.listMessages(first!.email).find((m) => m.subject === 'Results 1');
    expect(mail).toBeDefined();
    const body = app.sandbox.control.getMessage(first!.email, mail!.id).raw;
    const decoded = body.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    const path = (pattern: RegExp) => new URL(pattern.exec(decoded)![0]).pathname;
    const pixel = path(/http:\/\/127\.0\.0\.1:1\/t\/o\/[A-Za-z0-9_-]+\.gif/);
    const click = path(/http:\/\/127\.0\.0\.1:1\/t\/c\/[A-Za-z0-9_-]+/);
    const unsubscribe = path(/http:\/\/127\.0\.0\.1:1\/u\/[A-Za-z0-9_-]+/);
    const person = { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36' };
    expect((await app.api('GET', pixel, { headers: person })).status).toBe(200);
    expect((await app.api('GET', click, { headers: person })).status).toBe(302);
    const optOut = await app.api('POST', unsubscribe, { body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(optOut.status).toBe(200);
    await app.services.tracking.flush();

    const res = await app.api('GET', `/api/campaigns/${campaignId}/results.csv`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/csv');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="campaign-${campaignId}-results.csv"`);
    const [header, ...rows] = parseCsv(res.text);
    expect(header).toContain('opens_human');
    const byEmail = new Map(rows.map((r) => [r[0], Object.fromEntries(header!.map((h, i) => [h, r[i]]))]));
    expect(byEmail.size).toBe(2);
    const one = byEmail.get(first!.email)!;
    expect(one.first_name).toBe(`'=HYPERLINK("http://evil.test")`);
    expect(one.status).toBe('sent');
    expect(Number(one.opens_human) + Number(one.opens_machine) + Number(one.opens_unknown)).toBe(1);
    expect(Number(one.clicks_human) + Number(one.clicks_machine) + Number(one.clicks_unknown)).toBe(1);
    expect(one.unsubscribed).toBe('true');
    const two = byEmail.get(second!.email)!;
    expect([two.opens_human, two.clicks_human, two.unsubscribed]).toEqual(['0', '0', 'false']);

    // Sends over time: both sends in the current hour.
    const results = await app.services.results.campaignResults({ userId: owner.userId, workspaceId: owner.workspaceId, role: 'owner' }, campaignId);
    expect(results.sendsOverTime.points.reduce((n, p) => n + p.sent, 0)).toBe(2);
    expect(results.stats.unsubscribed).toBe(1);

    // P-13: a deleted contact leaves the download at once, before the purge.
    expect((await app.api('DELETE', `/api/contacts/${second!.id}`, { token: owner.token })).status).toBe(204);
    const after = parseCsv((await app.api('GET', `/api/campaigns/${campaignId}/results.csv`, { token: owner.token })).text);
    expect(after.slice(1).map((r) => r[0])).toEqual([first!.email]);
  });

  it('pages through a large campaign: every send once, in one streamed download', async () => {
    const { app, owner } = ctx;
    const seeded = await seedSentCampaign(app.database.db, owner.workspaceId, { recipients: 1100, links: 1 });
    const res = await freshGet(`${app.baseUrl}/api/campaigns/${seeded.campaignId}/results.csv`, owner.token);
    expect(res.status).toBe(200);
    // Streamed: no Content-Length, chunked as the pages are read.
    expect(res.chunked).toBe(true);
    const rows = parseCsv(res.text).slice(1);
    expect(rows).toHaveLength(1100);
    expect(new Set(rows.map((r) => r[0])).size).toBe(1100);
  });

  it('another workspace’s campaign, or no campaign, is a 404 before any byte of CSV; no token is a 401', async () => {
    const { app, owner } = ctx;
    const seeded = await seedSentCampaign(app.database.db, owner.workspaceId, { recipients: 1, links: 1 });
    const stranger = await signUp(app);
    const foreign = await app.api('GET', `/api/campaigns/${seeded.campaignId}/results.csv`, { token: stranger.token });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe('not_found');
    expect((await app.api('GET', `/api/campaigns/not-an-id/results.csv`, { token: owner.token })).status).toBe(404);
    expect((await app.api('GET', `/api/campaigns/${seeded.campaignId}/results.csv`)).status).toBe(401);
  });
});
