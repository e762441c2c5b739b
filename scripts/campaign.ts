/**
 * `npm run campaign -- <launch|follow|pause|resume|cancel> <campaign id>`
 * Talks to a running inboxtrail over its API: INBOXTRAIL_URL (default http://localhost:3000)
 * and INBOXTRAIL_TOKEN (a bearer token from /api/auth/login). `follow` draws a progress
 * bar on a terminal (plain lines otherwise) until the campaign completes or stops.
 */

const [action, id] = process.argv.slice(2);
const baseUrl = (process.env.INBOXTRAIL_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
const token = process.env.INBOXTRAIL_TOKEN;
const ACTIONS = ['launch', 'follow', 'pause', 'resume', 'cancel'];

function usage(message: string): never {
  console.error(`${message}\nusage: npm run campaign -- <${ACTIONS.join('|')}> <campaign id>   (env INBOXTRAIL_URL, INBOXTRAIL_TOKEN)`);
  process.exit(2);
}

if (!action || !ACTIONS.includes(action) || !id) usage('missing or unknown arguments');
if (!token) usage('INBOXTRAIL_TOKEN is not set (log in with POST /api/auth/login)');

interface Campaign {
  name: string;
  status: string;
  progress: { queued: number; sending: number; sent: number; failed: number; skipped: number; nextSendAt: string | null; waitingFor: string | null };
}

async function call(method: string, path: string): Promise<Campaign> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    body: method === 'POST' ? '{}' : undefined,
  });
  const body = (await response.json()) as Campaign & { error?: { code: string; message: string } };
  if (!response.ok) {
    console.error(`${response.status} ${body.error?.code}: ${body.error?.message}`);
    process.exit(1);
  }
  return body;
}

function progressLine(c: Campaign, width = 30): string {
  const p = c.progress;
  const total = p.queued + p.sending + p.sent + p.failed + p.skipped;
  const done = p.sent + p.failed + p.skipped;
  const ratio = total === 0 ? 1 : done / total;
  const bar = '#'.repeat(Math.round(ratio * width)).padEnd(width, '.');
  const waiting = p.waitingFor ? ` · waiting: ${p.waitingFor}${p.nextSendAt ? ` until ${new Date(p.nextSendAt).toLocaleString()}` : ''}` : '';
  return `[${bar}] ${Math.round(ratio * 100)}% ${c.status} · sent ${p.sent}, failed ${p.failed}, skipped ${p.skipped}, queued ${p.queued}${waiting}`;
}

const FINISHED = new Set(['completed', 'cancelled', 'draft']);

if (action === 'follow') {
  const tty = process.stdout.isTTY;
  let last = '';
  for (;;) {
    const campaign = await call('GET', `/api/campaigns/${id}`);
    const line = progressLine(campaign);
    if (tty) process.stdout.write(`\r${line.padEnd(last.length)}`);
    else if (line !== last) console.log(line);
    last = line;
    if (FINISHED.has(campaign.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  if (tty) process.stdout.write('\n');
} else {
  console.log(progressLine(await call('POST', `/api/campaigns/${id}/${action}`)));
}
