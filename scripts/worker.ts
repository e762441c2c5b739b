/**
 * `npm run worker`: a worker-only process (ROLE=worker) — campaign sending, Gmail sync and
 * the scheduled jobs, no HTTP listener. Run any number of them, and any number of
 * `ROLE=web npm start`, against one PostgreSQL server (see README "Several processes").
 */
process.env.ROLE = 'worker';
await import('../src/main.js');
