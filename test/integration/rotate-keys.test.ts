import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog, mailboxes } from '../../src/db/schema.js';
import { createKeyRotation, describeRotation } from '../../src/gmail/key-rotation.js';
import { createKeyRotationRepo, type KeyRotationRepo } from '../../src/gmail/key-rotation.repo.js';
import { createTokenCipher, tokenContext } from '../../src/gmail/token-cipher.js';
import { connectedMailbox } from '../helpers/gmail.js';
import { signUp, startTestApp, TEST_ENV, type TestApp } from '../helpers/test-app.js';

/*
 * Key rotation (invariant 6, P-06): `npm run rotate-keys` re-encrypts every stored OAuth
 * token under the newest key while the service runs. A bad row is reported and skipped; a
 * reconnect that writes in the middle of the pass is never overwritten.
 */

const V1 = TEST_ENV.TOKEN_ENCRYPTION_KEYS;
const V2 = `v2:${Buffer.alloc(32, 11).toString('base64')}`;
const keysOf = (list: string) =>
  list.split(',').map((entry) => {
    const [version, key] = entry.split(':') as [string, string];
    return { version, key: Buffer.from(key, 'base64') };
  });
const oldCipher = createTokenCipher(keysOf(V1));
const bothCipher = createTokenCipher(keysOf(`${V1},${V2}`));

let app: TestApp;
let owner: Awaited<ReturnType<typeof signUp>>;
const db = () => app.database.db;

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp(app, { workspaceName: 'Rotate Co' });
});
afterAll(async () => {
  await app.close();
});

async function tokensOf(id: string) {
  const [row] = await db().select({ refresh: mailboxes.refreshTokenEnc, access: mailboxes.accessTokenEnc }).from(mailboxes).where(eq(mailboxes.id, id));
  return row!;
}
const plain = (cipher: typeof oldCipher, id: string, sealed: { refresh: string; access: string | null }) => ({
  refresh: cipher.decrypt(sealed.refresh, tokenContext(id, 'refresh')),
  access: sealed.access && cipher.decrypt(sealed.access, tokenContext(id, 'access')),
});

describe('npm run rotate-keys', () => {
  it('re-encrypts row by row under the newest key, reports a bad row without stopping, and never overwrites a concurrent reconnect', async () => {
    const steady = await connectedMailbox(app, owner.token, `steady-${randomUUID()}@gmail.test`);
    const racing = await connectedMailbox(app, owner.token, `racing-${randomUUID()}@gmail.test`);
    const broken = await connectedMailbox(app, owner.token, `broken-${randomUUID()}@gmail.test`);
    const steadyBefore = plain(oldCipher, steady.id, await tokensOf(steady.id));
    // A row sealed under a key of the same name but other bytes: it cannot be decrypted.
    const impostor = createTokenCipher([{ version: 'v1', key: Buffer.alloc(32, 99) }]);
    await db().update(mailboxes).set({ refreshTokenEnc: impostor.encrypt('stolen', tokenContext(broken.id, 'refresh')) }).where(eq(mailboxes.id, broken.id));
    const brokenStored = await tokensOf(broken.id);

    // The reconnect lands after the pass read the racing row and before its conditional update.
    const real = createKeyRotationRepo(db());
    let reconnected: { refresh: string; access: string | null } | undefined;
    const repo: KeyRotationRepo = {
      ...real,
      async replaceIfUnchanged(read, next) {
        if (read.id === racing.id && !reconnected) {
          await connectedMailbox(app, owner.token, racing.email);
          reconnected = plain(oldCipher, racing.id, await tokensOf(racing.id));
        }
        return real.replaceIfUnchanged(read, next);
      },
    };
    const rotation = createKeyRotation({ repo, cipher: bothCipher, configuredVersions: ['v1', 'v2'] });
    const report = await rotation.rotate({ actor: 'system:test' });

    expect(report.scanned).toBeGreaterThanOrEqual(3);
    expect(report.rewritten).toBeGreaterThanOrEqual(2);
    expect(report.concurrentWrites).toBe(1);
    expect(report.failed).toEqual([{ mailboxId: broken.id, workspaceId: owner.workspaceId, reason: 'authentication_failed' }]);

    const steadyAfter = await tokensOf(steady.id);
    expect(steadyAfter.refresh.startsWith('v2.')).toBe(true);
    expect(plain(bothCipher, steady.id, steadyAfter)).toEqual(steadyBefore);
    // The reconnect's tokens survived (re-encrypted, not replaced by the ones read before it).
    const racingAfter = await tokensOf(racing.id);
    expect(racingAfter.refresh.startsWith('v2.')).toBe(true);
    expect(plain(bothCipher, racing.id, racingAfter)).toEqual(reconnected);
    // The bad row is left exactly as it was.
    expect(await tokensOf(broken.id)).toEqual(brokenStored);

    // Old key still in use by the bad row: not removable yet, and the report says so.
    expect(report.tokensByVersion.v1).toBeGreaterThanOrEqual(1);
    expect(report.removableVersions).toEqual([]);
    const words = describeRotation(report, ['v1', 'v2']).join('\n');
    expect(words).toMatch(/key v1: still used by \d+ stored token/);
    expect(words).toContain(broken.id);
    expect(words).not.toContain(brokenStored.refresh);

    const audit = await db().select().from(auditLog).where(and(eq(auditLog.workspaceId, owner.workspaceId), eq(auditLog.action, 'keys.rotated')));
    expect(audit).toEqual([
      expect.objectContaining({ actor: 'system:test', subjectId: 'v2', detail: expect.objectContaining({ toVersion: 'v2', failedMailboxIds: [broken.id] }) }),
    ]);

    // The owner reconnects the broken mailbox under the new keys: then nothing uses v1, and the pass says it can go.
    const newKeysApp = await startTestApp({ database: app.database, env: { TOKEN_ENCRYPTION_KEYS: `${V1},${V2}` } });
    try {
      newKeysApp.sandbox.control.createMailbox({ email: broken.email });
      await connectedMailbox(newKeysApp, owner.token, broken.email);
    } finally {
      await newKeysApp.close();
    }
    const second = await createKeyRotation({ repo: real, cipher: bothCipher, configuredVersions: ['v1', 'v2'] }).rotate();
    expect(second.rewritten).toBe(0);
    expect(second.failed).toEqual([]);
    expect(second.tokensByVersion.v1 ?? 0).toBe(0);
    expect(second.removableVersions).toEqual(['v1']);
    expect(describeRotation(second, ['v1', 'v2']).join('\n')).toContain('key v1: no stored token uses it any more; it can be removed');
    // The app keeps working with its mailboxes under the new key.
    expect((await app.api('GET', '/api/mailboxes', { token: owner.token })).status).toBe(200);
  });

  it.runIf(Boolean(process.env.TEST_DATABASE_URL))('the npm script runs as its own process against the server while the app serves, and prints the counts', async () => {
    const url = (app.database as { url?: string }).url!;
    await connectedMailbox(app, owner.token, `script-${randomUUID()}@gmail.test`);
    const run = await promisify(execFile)('npx', ['tsx', 'scripts/rotate-keys.ts'], {
      env: { ...process.env, ...TEST_ENV, DATABASE_URL: url, TOKEN_ENCRYPTION_KEYS: `${V1},${V2}` },
      timeout: 60_000,
    }).catch((error: { stdout: string; code: number }) => ({ stdout: error.stdout, code: error.code }));
    expect(run.stdout).toMatch(/mailboxes scanned: \d+; re-encrypted: [1-9]/);
    expect(run.stdout).toContain('current key: v2');
  });
});
