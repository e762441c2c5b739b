import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { connect } from '../../src/db/connect.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** PGlite: a dump of a freshly migrated data dir, loaded by every test file. */
    pgliteTemplateDump: string;
    /** Server: name of a migrated database each test file clones with CREATE DATABASE … TEMPLATE. */
    serverTemplateDatabase: string;
  }
}

/**
 * Migrates once per run. With TEST_DATABASE_URL the template is a database on that
 * server (named per run, so concurrent runs never collide); otherwise a PGlite dump.
 */
export default async function setup(project: TestProject) {
  const serverUrl = process.env.TEST_DATABASE_URL;
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'inboxtrail-test-'));

  const pgliteDb = await connect({ kind: 'pglite', dir: 'memory://' });
  await pgliteDb.migrate();
  const dump = await pgliteDb.dumpDataDir!('none');
  const dumpFile = path.join(workDir, 'template.tar');
  writeFileSync(dumpFile, Buffer.from(await dump.arrayBuffer()));
  await pgliteDb.close();
  project.provide('pgliteTemplateDump', dumpFile);

  let templateName = '';
  if (serverUrl) {
    templateName = `inboxtrail_tpl_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`create database ${templateName}`);
    await admin.end();
    const template = await connect({ kind: 'postgres', url: withDatabase(serverUrl, templateName), poolSize: 1 });
    await template.migrate();
    await template.close();
  }
  project.provide('serverTemplateDatabase', templateName);

  return async () => {
    rmSync(workDir, { recursive: true, force: true });
    if (serverUrl && templateName) {
      const admin = new pg.Client({ connectionString: serverUrl });
      await admin.connect();
      await admin.query(`drop database if exists ${templateName} with (force)`);
      await admin.end();
    }
  };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
