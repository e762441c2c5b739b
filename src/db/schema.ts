/*
 * Every table that holds workspace data carries `workspace_id`, and every query of
 * those tables filters by it (invariant 7). Every primary and unique key of such a table
 * includes `workspace_id` or a random UUID, so the tables can be distributed by workspace
 * on Citus (docs/SCALING.md; test/integration/schema-tenancy.test.ts holds new tables to it). Ids are random UUIDs so that they can
 * neither be guessed nor enumerated.
 */

// One file per feature's tables (src/db/schema/); this module is what Drizzle and drizzle-kit read.
export * from './schema/workspace.js';
export * from './schema/contacts.js';
export * from './schema/gmail.js';
export * from './schema/suppression.js';
export * from './schema/campaigns.js';
export * from './schema/tracking.js';
export * from './schema/audit.js';
export * from './schema/jobs.js';
export * from './schema/api.js';
export * from './schema/privacy.js';
export * from './schema/legal.js';
export * from './schema/webhooks.js';
export * from './schema/web.js';
