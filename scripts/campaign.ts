/**
 * `npm run campaign -- <launch|follow|pause|resume|cancel> <campaign id>`
 * Talks to a running inboxtrail over its API. Where: INBOXTRAIL_URL, else
 * http://localhost:$PORT (PORT as the service uses it, default 3000). Who: INBOXTRAIL_API_KEY
 * (an `itk_…` key with the `send` scope, for servers and cron jobs) or INBOXTRAIL_TOKEN (a
 * session token from /api/auth/login; it expires). `follow` draws a progress bar on a
 * terminal (plain lines otherwise) until the campaign completes or stops.
 * Exit codes: 0 done, 1 the service refused, 2 usage, 3 the service could not be reached.
 */
const [action, id] = process.argv.slice(2);
const port = process.env.PORT?.trim() || '3000';
const baseUrl = (process.env.INBOXTRAIL_URL?.trim() || `http://localhost:${port}`).replace(/\/+$/, '');
const credential = process.env.INBOXTRAIL_API_KEY?.trim() || process.env.INBOXTRAIL_TOKEN?.trim();
const ACTIONS = ['launch', 'follow', 'pause', 'resume', 'cancel'];

function usage(message: string): never {
  console.error(
    `${message}\nusage: npm run campaign -- <${ACTIONS.join('|')}> <campaign id>   (env INBOXTRAIL_URL or PORT, and INBOXTRAIL_API_KEY or INBOXTRAIL_TOKEN)`,
  );
  process.exit(2);
}

if (!action || !ACTIONS.includes(action) || !id) usage('missing or unknown arguments');
if (!credential) usage('set INBOXTRAIL_API_KEY (an API key with the send scope) or INBOXTRAIL_TOKEN (from POST /api/auth/login)');
if (!URL.canParse(baseUrl)) usage(`INBOXTRAIL_URL is not a URL: ${baseUrl}`);

interface Campaign {
  name: string;
  status: string;
  progress: { queued: number; sending: number; sent: number; failed: number; skipped: number; nextSendAt: string | null; waitingFor: string | null };
}

/** Why a request never got an answer, in words (fetch's own error is "fetch failed"). */
function unreachable(error: unknown): never {
  const cause = (error as { cause?: { code?: string } }).cause?.code;
  const reason =
    cause === 'ECONNREFUSED' ? 'connection refused' : cause === 'ENOTFOUND' ? 'unknown host' : cause === 'UND_ERR_CONNECT_TIMEOUT' ? 'timed out' : (cause ?? 'no answer');
  console.error(`inboxtrail is not reachable at ${baseUrl} (${reason}). Is it running? Point INBOXTRAIL_URL (or PORT) at it.`);
  process.exit(3);
}

// One key per campaign: a rerun after a dropped connection (within 24 h) gets the first launch's answer instead of launching again.
const launchKey = `cli-launch-${id}`;

async function call(method: string, path: string): Promise<Campaign> {
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${credential}`,
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
        ...(path.endsWith('/launch') ? { 'idempotency-key': launchKey } : {}),
      },
      body: method === 'POST' ? '{}' : undefined,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    unreachable(error);
  }
  const text = await response.text();
  let body: (Campaign & { error?: { code: string; message: string } }) | undefined;
  try {
    body = JSON.parse(text);
  } catch {
    console.error(`${baseUrl} answered ${response.status} with something that is not inboxtrail's API (is INBOXTRAIL_URL right?)`);
    process.exit(1);
  }
  if (!response.ok) {
    console.error(`${response.status} ${body?.error?.code}: ${body?.error?.message}`);
    process.exit(1);
  }
  return body!;
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
