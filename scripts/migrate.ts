import { ConfigError, loadConfig } from '../src/config.js';
import { connect } from '../src/db/connect.js';

/** `npm run migrate`: applies pending migrations to the configured database and exits. */
try {
  const config = loadConfig();
  const database = await connect(config.database);
  try {
    await database.migrate();
    console.log(`migrations applied (${config.database.kind === 'pglite' ? config.database.dir : 'PostgreSQL server'})`);
  } finally {
    await database.close();
  }
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `migration failed: ${(error as Error).message}`);
  process.exitCode = 1;
}
