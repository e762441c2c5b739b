import { ConfigError, loadConfig } from '../src/config.js';
import { connect } from '../src/db/connect.js';
import { createKeyRotation, describeRotation } from '../src/gmail/key-rotation.js';
import { createKeyRotationRepo } from '../src/gmail/key-rotation.repo.js';
import { createTokenCipher } from '../src/gmail/token-cipher.js';

/**
 * `npm run rotate-keys`: re-encrypts every stored OAuth token under the newest
 * TOKEN_ENCRYPTION_KEYS version while the service keeps running (src/gmail/key-rotation.ts),
 * prints the counts, and says which old keys can be removed. Exit code 2 when some rows
 * failed (they are listed by mailbox id), so a deploy script does not drop a key too early.
 */
try {
  const config = loadConfig();
  const database = await connect(config.database);
  try {
    const configuredVersions = config.tokenEncryptionKeys.map((k) => k.version);
    const rotation = createKeyRotation({ repo: createKeyRotationRepo(database.db), cipher: createTokenCipher(config.tokenEncryptionKeys), configuredVersions });
    const report = await rotation.rotate({ actor: 'system:rotate-keys' });
    for (const line of describeRotation(report, configuredVersions)) console.log(line);
    if (report.failed.length > 0 || report.leftForNextPass > 0) process.exitCode = 2;
  } finally {
    await database.close();
  }
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `key rotation failed: ${(error as Error).message}`);
  process.exitCode = 1;
}
