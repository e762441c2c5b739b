import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { z } from 'zod';
import { ConfigError, loadConfig } from '../src/config.js';
import { connect } from '../src/db/connect.js';
import { createPolicyVersions } from '../src/privacy/policy-versions.js';
import { createPolicyVersionsRepo } from '../src/privacy/policy-versions.repo.js';

/**
 * `npm run publish-policy -- <version> <disclosure.json>`: publishes a new policy version and
 * the Limited Use disclosure shown under it (P-18), once and for good (policy_versions is
 * append-only). It becomes the version in force when the processes run with POLICY_VERSION=<version>.
 * The file: {"title": "…", "points": ["…", …]}.
 */
const disclosureFile = z.object({ title: z.string().trim().min(1).max(200), points: z.array(z.string().trim().min(1).max(2000)).min(1).max(50) }).strict();

const [version, file] = process.argv.slice(2);
try {
  if (!version || !/^[A-Za-z0-9._-]{1,50}$/.test(version) || !file) {
    throw new Error('usage: npm run publish-policy -- <version> <disclosure.json>  (version: letters, digits, . _ -)');
  }
  const disclosure = disclosureFile.parse(JSON.parse(readFileSync(file, 'utf8')));
  const config = loadConfig();
  const database = await connect(config.database);
  try {
    await database.migrate();
    const policies = createPolicyVersions({ repo: createPolicyVersionsRepo(database.db), currentVersion: config.policyVersion });
    if (!(await policies.publish(version, disclosure, `operator:${userInfo().username}`))) {
      throw new Error(`policy version ${version} is published already; published versions never change — choose a new version`);
    }
    console.log(`policy version ${version} published; set POLICY_VERSION=${version} on every process to put it in force`);
  } finally {
    await database.close();
  }
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `publish failed: ${(error as Error).message}`);
  process.exitCode = 1;
}
