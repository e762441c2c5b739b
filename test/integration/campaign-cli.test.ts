import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { campaignFixtures } from '../helpers/campaign-fixtures.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { useAppWithOwner } from '../helpers/test-app.js';

/* `npm run campaign` as a real process, against a started app and against a closed port. */

const ctx = useAppWithOwner();
const fixtures = campaignFixtures(() => ({ app: ctx.app, token: ctx.owner.token, workspaceId: ctx.owner.workspaceId }));

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const { INBOXTRAIL_URL: _url, INBOXTRAIL_TOKEN: _token, INBOXTRAIL_API_KEY: _key, PORT: _port, ...inherited } = process.env;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/campaign.ts', ...args], { env: { ...inherited, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A port nothing listens on: bound, read, closed. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('npm run campaign', () => {
  it('launches with an API key from INBOXTRAIL_API_KEY, then follows with INBOXTRAIL_TOKEN to completion', async () => {
    const mailbox = await connectedMailbox(ctx.app, ctx.owner.token, 'cli-sender@acme.test');
    const contacts = await fixtures.audience(1);
    const created = await ctx.app.api('POST', '/api/campaigns', {
      token: ctx.owner.token,
      json: { name: 'CLI', kind: 'transactional', mailboxId: mailbox.id, subject: 'From the CLI', text: 'Hi', contactIds: contacts.map((c) => c.id) },
    });
    const key = (await ctx.app.api('POST', '/api/api-keys', { token: ctx.owner.token, json: { name: 'cli', scopes: ['send', 'read'] } })).body.key;
    const port = new URL(ctx.app.baseUrl).port;
    const launched = await runCli(['launch', created.body.id], { INBOXTRAIL_URL: `http://127.0.0.1:${port}`, INBOXTRAIL_API_KEY: key });
    expect(launched.stderr).toBe('');
    expect(launched.code).toBe(0);
    expect(launched.stdout).toMatch(/running|scheduled|sending|completed/);
    await fixtures.drain(created.body.id);
    const followed = await runCli(['follow', created.body.id], { INBOXTRAIL_URL: `http://127.0.0.1:${port}/`, INBOXTRAIL_TOKEN: ctx.owner.token });
    expect(followed.code).toBe(0);
    expect(followed.stdout).toContain('100% completed');
  });

  it('without INBOXTRAIL_URL, PORT names the service on localhost', async () => {
    const port = await closedPort();
    const result = await runCli(['follow', '00000000-0000-4000-8000-000000000000'], { PORT: String(port), INBOXTRAIL_TOKEN: 'x' });
    expect(result.stderr).toContain(`http://localhost:${port}`);
  });

  it('a closed port gets one clear line and exit code 3, no stack trace', async () => {
    const port = await closedPort();
    const result = await runCli(['launch', '00000000-0000-4000-8000-000000000000'], { INBOXTRAIL_URL: `http://127.0.0.1:${port}`, INBOXTRAIL_API_KEY: 'itk_x' });
    expect(result.code).toBe(3);
    expect(result.stderr.trim()).toBe(`inboxtrail is not reachable at http://127.0.0.1:${port} (connection refused). Is it running? Point INBOXTRAIL_URL (or PORT) at it.`);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('a refused key and missing settings are plain messages too', async () => {
    const refused = await runCli(['pause', '00000000-0000-4000-8000-000000000000'], { INBOXTRAIL_URL: ctx.app.baseUrl, INBOXTRAIL_API_KEY: `itk_${'A'.repeat(43)}` });
    expect([refused.code, refused.stderr.trim()]).toEqual([1, '401 invalid_token: The API key is not valid']);
    const missing = await runCli(['launch', 'x'], {});
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('INBOXTRAIL_API_KEY');
  });
});
