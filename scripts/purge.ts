import { ConfigError, loadConfig } from '../src/config.js';
import { connect } from '../src/db/connect.js';
import { createLogger } from '../src/logger.js';
import { createPurgeRepo } from '../src/privacy/purge.repo.js';
import { createPurgeService } from '../src/privacy/purge.service.js';
import { createAddressHasher } from '../src/suppression/address-hash.js';

/**
 * `npm run purge`: one pass of the purge job (P-13) against the configured database, then
 * exits — the same pass the worker runs daily. Safe to run at any time and as often as
 * wanted: each item is purged in its own transaction, and a run that stops halfway is
 * finished by the next one.
 */
try {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const database = await connect(config.database);
  try {
    await database.migrate();
    const purge = createPurgeService({ repo: createPurgeRepo(database.db), hashAddress: createAddressHasher(config.privacy.suppressionHashKey), logger });
    const counts = await purge.runOnce();
    console.log(`purged: ${Object.entries(counts).map(([kind, n]) => `${n} ${kind}`).join(', ')}`);
  } finally {
    await database.close();
  }
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `purge failed: ${(error as Error).message}`);
  process.exitCode = 1;
}
