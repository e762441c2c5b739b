import { defineConfig } from 'vitest/config';

/**
 * Files that start processes of their own (the service, a worker, a private PostgreSQL cluster, a
 * browser) or hold a wall-clock promise to a bound of a few seconds (a stop within 5 s, an answer
 * within 1 s). They run one at a time, after the rest, with the machine to themselves: beside
 * another test file on a 2-core machine their bounds measure the neighbour, not the service.
 */
const ALONE = [
  'test/integration/startup.test.ts',
  'test/integration/embedded-dir-lock.test.ts',
  'test/integration/shutdown-long-statement.test.ts',
  'test/integration/processes.test.ts',
  'test/integration/tracking-outage.test.ts',
  'test/integration/tracking-shutdown-held-clicks.test.ts',
  'test/integration/tracking-rollup-pass.test.ts',
  'test/integration/tracking-recording.test.ts',
  'test/integration/send-kill.test.ts',
  'test/integration/send-gate.test.ts',
  'test/integration/idempotency-kill.test.ts',
  'test/integration/webhooks-kill.test.ts',
  'test/integration/webhooks-dns.test.ts',
  'test/integration/webhooks-ssrf.test.ts',
  'test/integration/webhooks-fairness.test.ts',
  'test/integration/webhooks-https-required.test.ts',
  'test/integration/gmail-resync-kill.test.ts',
  'test/integration/campaign-cli.test.ts',
  'test/integration/rotate-keys.test.ts',
  'test/integration/docker-compose-env.test.ts',
  'test/integration/mailbox-signals.test.ts',
  'test/browser/**/*.test.ts',
  'src/db/pglite-thread.test.ts',
  'src/http/edge-cost.test.ts',
  'src/http/multipart.test.ts',
  'src/tracking/event-writer.test.ts',
  'src/tracking/apple-mpp.test.ts',
  'src/tracking/rollup-runner.test.ts',
];

const shared = {
  testTimeout: 30_000,
  hookTimeout: 60_000,
  pool: 'forks' as const,
};

export default defineConfig({
  test: {
    // Migrates one template database per run; each test file gets its own copy (both projects).
    globalSetup: ['test/helpers/global-setup.ts'],
    projects: [
      {
        // Two files at a time: most of a file's time is spent waiting (its database, the Gmail
        // sandbox, a socket), so two share the machine's two cores well.
        test: { ...shared, name: 'shared', include: ['src/**/*.test.ts', 'test/**/*.test.ts'], exclude: ALONE, maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        test: { ...shared, name: 'alone', include: ALONE, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
