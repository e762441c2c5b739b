import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createAccountMailer, type AccountMailer } from './auth/account-mail.js';
import { createAuthThrottle } from './auth/throttle.js';
import { createLoginDevices } from './auth/login-devices.js';
import { createAuthRepo } from './auth/auth.repo.js';
import { createAuthService } from './auth/auth.service.js';
import { createSessionTokens } from './auth/sessions.js';
import { createCampaignsRepo } from './campaigns/campaigns.repo.js';
import { createCampaignsService } from './campaigns/campaigns.service.js';
import { createCancelledSends } from './campaigns/cancelled-sends.js';
import { createCancelledSendsRepo } from './campaigns/cancelled-sends.repo.js';
import { createSendLedgerRepo } from './campaigns/send-ledger.repo.js';
import { createSendWorker } from './campaigns/send-worker.js';
import type { Config } from './config.js';
import { createTokenCodec } from './tracking/tokens.js';
import { createTrackingUrls } from './tracking/urls.js';
import { createTracking } from './tracking/tracking.js';
import { createResultsRepo } from './tracking/results.repo.js';
import { createResultsService } from './tracking/results.service.js';
import { createStatsRepo } from './tracking/stats.repo.js';
import { createContactsRepo } from './contacts/contacts.repo.js';
import { createContactsService } from './contacts/contacts.service.js';
import { createEmbeddedMaintenance } from './db/embedded-maintenance.js';
import type { Database } from './db/connect.js';
import { createGmailClient } from './gmail/gmail-client.js';
import type { ResolvedGoogle } from './gmail/google-settings.js';
import { createMailboxesRepo } from './gmail/mailboxes.repo.js';
import { createMailboxService } from './gmail/mailboxes.service.js';
import { createMessageContentReader } from './gmail/message-content.js';
import { createSqlLimitStore } from './gmail/limit-store.js';
import { MailboxPacer } from './gmail/pacer.js';
import { createSyncLeases } from './gmail/sync-leases.js';
import { createJobSchedule } from './job-schedule.js';
import { processOwner } from './process-owner.js';
import { createPushService } from './gmail/push.service.js';
import { createSyncRepo } from './gmail/sync.repo.js';
import { createSyncService } from './gmail/sync.service.js';
import { createSentCopies } from './gmail/sent-copy.js';
import { createTokenCipher } from './gmail/token-cipher.js';
import { createKeyRotation } from './gmail/key-rotation.js';
import { createKeyRotationRepo } from './gmail/key-rotation.repo.js';
import { createMessagesRepo } from './messages/messages.repo.js';
import { createMessagesService } from './messages/messages.service.js';
import { createSuppressionListRepo } from './suppression/suppression.repo.js';
import { createAddressHasher } from './suppression/address-hash.js';
import { createPurgeRepo } from './privacy/purge.repo.js';
import { createPurgeService } from './privacy/purge.service.js';
import { createAccountClosureRepo } from './privacy/account-closure.repo.js';
import { createAccountClosureService } from './privacy/account-closure.service.js';
import { createRetentionRepo } from './privacy/retention.repo.js';
import { createRetentionService } from './privacy/retention.service.js';
import { createSuppressionService } from './suppression/suppression.service.js';
import { createGmailGuard } from './privacy/gmail-guard.js';
import { createAuditRetention } from './privacy/audit-retention.js';
import { createPolicyVersions } from './privacy/policy-versions.js';
import { createPolicyVersionsRepo } from './privacy/policy-versions.repo.js';
import { createComplianceRepo } from './privacy/compliance.repo.js';
import { createComplianceService } from './privacy/compliance.service.js';
import { createGrantsRepo } from './privacy/grants.repo.js';
import { createGrantsService } from './privacy/grants.service.js';
import { createSelfExportRepo } from './privacy/export.repo.js';
import { createExportService } from './privacy/export.service.js';
import { createLegalRequestsRepo } from './privacy/legal-requests.repo.js';
import { createLegalRequestsService } from './privacy/legal-requests.service.js';
import { createSubjectDataRepo } from './privacy/subject-data.repo.js';
import { createMetrics } from './http/metrics.js';
import { type Logger } from './logger.js';
import { createApiKeysRepo } from './api-keys/api-keys.repo.js';
import { createApiKeysService } from './api-keys/api-keys.service.js';
import { createIdempotencyRepo } from './idempotency/idempotency.repo.js';
import { createIdempotencyService } from './idempotency/idempotency.service.js';
import { createDeliveryWorker } from './webhooks/delivery-worker.js';
import { createWebhookSender } from './webhooks/sender.js';
import { createWebhooksRepo } from './webhooks/webhooks.repo.js';
import { createWebhooksService } from './webhooks/webhooks.service.js';
import { createWebSessionsRepo } from './web/web-sessions.repo.js';
import { createWebSessionsService } from './web/web-sessions.service.js';

export interface AppDeps {
  config: Config;
  database: Database;
  logger: Logger;
  /** Where Gmail is: Google, or the sandbox standing in for it (see gmail/google-settings.ts). */
  google: ResolvedGoogle;
  /** One pacer per process, shared by every Gmail call; its limits live in PostgreSQL, shared by every process. Tests may pass their own. */
  pacer?: MailboxPacer;
  /** Account mail (signup confirmations); by default from config (SMTP, a file, or memory in tests). */
  accountMailer?: AccountMailer;
  now?: () => Date;
}

/**
 * The one composition root: every repo and service, built from its dependencies by
 * plain constructor injection. The HTTP app and the background jobs both use these.
 */
export function createServices(deps: AppDeps) {
  const { config, database, logger } = deps;
  const { db } = database;

  const sessions = createSessionTokens(config.jwt);
  // P-18: the policy version in force and its disclosure text, as published in the database.
  const policyVersionsRepo = createPolicyVersionsRepo(db);
  const policyVersions = createPolicyVersions({ repo: policyVersionsRepo, currentVersion: config.policyVersion });
  const compliance = createComplianceService({ repo: createComplianceRepo(db), policies: policyVersionsRepo, now: deps.now });
  // Deletion and retention (privacy/): the keyed address hash every suppression match also uses.
  const hashAddress = createAddressHasher(config.privacy.suppressionHashKey);
  const accountMailer =
    deps.accountMailer ??
    createAccountMailer({ smtpUrl: config.accountMail.smtpUrl, from: config.accountMail.from, env: config.env, dataDir: config.dataDir, logger });
  const throttle = createAuthThrottle(
    db,
    {
      login: {
        maxPerAccount: config.login.maxFailures,
        windowSeconds: config.login.windowSeconds,
        maxPerAddress: config.login.maxAttemptsPerAddress,
        addressWindowSeconds: config.login.addressWindowSeconds,
      },
      signup: config.signup,
    },
    // Attempts' subjects (addresses, client IPs) are keyed like the suppression hashes, under a key derived from the same secret.
    config.privacy.suppressionHashKey,
    deps.now,
  );
  const auth = createAuthService({ repo: createAuthRepo(db), sessions, throttle, devices: createLoginDevices(config.jwt), mailer: accountMailer, config, now: deps.now, policyOf: (caller) => policyVersions.acceptedBy(caller),
    // `mailboxes` is made below; a member leaving calls it long after.
    memberMailboxes: {
      removeWithin: (tx, owner, actor, requestId) => mailboxes.removeMemberMailboxesWithin(tx, owner, actor, requestId),
      revokeRemoved: (removed) => mailboxes.revokeRemoved(removed),
    } });
  // One metrics registry per app instance; the tracking paths count into it without Express.
  const metrics = createMetrics();
  const tracking = createTracking({ config, database, logger, registry: metrics.registry, requests: metrics.requests });
  const contacts = createContactsService({
    repo: createContactsRepo(db, hashAddress),
    policyVersion: config.policyVersion,
    purgeAfterDays: config.privacy.purgeAfterDays,
    now: deps.now,
    campaignEngagement: (workspaceId, contactId) => tracking.stats.contactTimeline(workspaceId, contactId),
    // `apiKeys` and `webSessions` are made below; an import asks long after. A browser's import
    // also stops when that browser signs out (its web session row is gone).
    recheckCaller: (caller) => (caller.apiKeyId ? apiKeys.recheck(caller) : caller.session?.kind === 'web' ? webSessions.recheck(caller) : auth.recheck(caller)),
  });
  const pacer = deps.pacer ?? new MailboxPacer({
      store: createSqlLimitStore(db),
      unitsPerMinute: config.gmail.quotaUnitsPerMinute,
      sendsPerMinute: config.gmail.sendsPerMinute,
    });
  const gmail = createGmailClient(deps.google.settings, pacer);
  // Privacy guard (P-02/P-03/P-04): every read of Gmail content, by a person or by sync, passes it.
  const grantsRepo = createGrantsRepo(db);
  const contentGuard = createGmailGuard({ repo: grantsRepo, registry: metrics.registry, now: deps.now });
  const grants = createGrantsService({ repo: grantsRepo, now: deps.now });
  const auditRetention = createAuditRetention({ db, retentionDays: config.audit.retentionDays, now: deps.now });
  const mailboxesRepo = createMailboxesRepo(db);
  const messagesRepo = createMessagesRepo(db, hashAddress);
  const mailboxes = createMailboxService({
    repo: mailboxesRepo,
    gmail,
    pacer,
    cipher: createTokenCipher(config.tokenEncryptionKeys),
    config,
    logger,
    now: deps.now,
    currentDisclosure: () => policyVersions.currentDisclosure(),
    // Push from the first minute: a mailbox connected with sync is watched at once (sync is built just below).
    onConnected: (mailbox, how) => sync.mailboxConnected(mailbox, how),
  });
  // One name per process on every lease it holds (campaign sends and 1:1 sends alike).
  const workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const sendGate = { workerId, leaseMs: config.sending.leaseMs, resolveDelayMs: config.sending.resolveDelayMs };
  const syncRepo = createSyncRepo(db, hashAddress);
  // Recovery's "did Gmail store it": the search, what sync saw, and on the last look the sent mail itself (sync is built just below).
  const sentCopies = createSentCopies({
    withGmail: (mailbox, work) => mailboxes.withGmail(mailbox, work),
    seenBySync: (messageRowId) => syncRepo.seenSend(messageRowId),
    claimedAt: (messageRowId) => syncRepo.sendClaimedAt(messageRowId),
    heldGmailIds: (mailboxId, gmailIds) => syncRepo.heldGmailIds(mailboxId, gmailIds),
    requestSync: (mailboxId) => sync.syncInBackground(mailboxId),
    logger,
    now: deps.now,
  });
  const messages = createMessagesService({ repo: messagesRepo, mailboxes, mailboxRepo: mailboxesRepo, sentCopies, logger, ...sendGate, now: deps.now });
  const sync = createSyncService({
    repo: syncRepo,
    mailboxesRepo,
    mailboxes,
    pacer,
    config,
    leases: createSyncLeases(db, processOwner),
    guard: contentGuard,
    pushTopic: deps.google.pushTopic,
    logger,
    now: deps.now,
  });
  const push = createPushService({
    gmail,
    audience: deps.google.pushAudience,
    serviceAccount: config.gmail.pushServiceAccount,
    requireServiceAccount: config.env === 'production',
    mailboxesRepo,
    sync,
    logger,
  });
  const messageContent = createMessageContentReader({ messagesRepo, mailboxesRepo, mailboxes, guard: contentGuard });
  const tokenCodec = createTokenCodec(config.trackingSecrets);
  const trackingUrls = createTrackingUrls(tokenCodec, config.publicBaseUrl);
  const campaignsRepo = createCampaignsRepo(db);
  const cancelledSends = createCancelledSends({ repo: createCancelledSendsRepo(db), logger });
  const campaigns = createCampaignsService({
    repo: campaignsRepo,
    contacts,
    mailboxRepo: mailboxesRepo,
    mailboxes,
    pacer,
    cancelledSends,
    publicBaseUrl: config.publicBaseUrl,
    logger,
    purgeAfterDays: config.privacy.purgeAfterDays,
    now: deps.now,
  });
  const sendWorker = createSendWorker({
    repo: campaignsRepo,
    ledger: createSendLedgerRepo(db, { serializedEngine: database.kind === 'pglite', autoReplyDelayDays: config.signals.autoReplyFollowUpDelayDays }),
    mailboxRepo: mailboxesRepo,
    mailboxes,
    pacer,
    urls: trackingUrls,
    logger,
    ...sendGate,
    sentCopies,
    alsoRecover: (asOf, round) => messages.recoverExpired(asOf, round),
    now: deps.now,
  });
  const suppressions = createSuppressionService({
    repo: createSuppressionListRepo(db, hashAddress),
    codec: tokenCodec,
    policyVersion: config.policyVersion,
    // Undoing an opt-out through a link is confirmed by mail to the address (account mail, capped per address).
    resubscribe: { jwt: config.jwt, mailer: accountMailer, throttle, publicBaseUrl: config.publicBaseUrl },
    now: deps.now,
  });
  // P-13: the purge job removes for real what was deleted more than PURGE_AFTER_DAYS ago.
  const purge = createPurgeService({ repo: createPurgeRepo(db), hashAddress, now: deps.now, logger });
  // The web app's browser sessions (src/web/): a cookie per browser, checked against the same memberships as bearer tokens.
  const webSessions = createWebSessionsService({ repo: createWebSessionsRepo(db), auth, ttlMs: config.web.sessionTtlMs, now: deps.now });
  const accountClosure = createAccountClosureService({
    repo: createAccountClosureRepo(db),
    mailboxes,
    throttle,
    endWebSessions: (userId) => webSessions.endAllForUser(userId),
    purgeAfterDays: config.privacy.purgeAfterDays,
    now: deps.now,
  });
  const retention = createRetentionService({ repo: createRetentionRepo(db), closure: accountClosure, mailer: accountMailer, settings: config.privacy, now: deps.now, logger });
  // Periodic jobs run once per period across every process sharing the database.
  const jobSchedule = createJobSchedule(db, processOwner);
  const embeddedMaintenance = createEmbeddedMaintenance(database);
  // Server-to-server callers: API keys, and Idempotency-Key answers kept for replay.
  const apiKeys = createApiKeysService({ repo: createApiKeysRepo(db), authRepo: createAuthRepo(db), now: deps.now });
  const idempotency = createIdempotencyService({ repo: createIdempotencyRepo(db), now: deps.now, leaseMs: config.sending.leaseMs });
  // Privacy: exports (P-12) and legal requests (P-16) read one subject-data repo.
  const subjectData = createSubjectDataRepo(db);
  const privacyExports = createExportService({ self: createSelfExportRepo(db), subjects: subjectData, now: deps.now });
  const legalRequests = createLegalRequestsService({ repo: createLegalRequestsRepo(db), subjects: subjectData, now: deps.now });
  // Key rotation (npm run rotate-keys, and the worker's pass after a new key is configured).
  const keyRotation = createKeyRotation({
    repo: createKeyRotationRepo(db),
    cipher: createTokenCipher(config.tokenEncryptionKeys),
    configuredVersions: config.tokenEncryptionKeys.map((k) => k.version),
    logger,
  });
  // Outbound webhooks (src/webhooks/): endpoints behind /api/webhooks; the delivery worker runs in worker processes.
  const webhooksRepo = createWebhooksRepo(db);
  const webhookSecrets = createTokenCipher(config.tokenEncryptionKeys);
  const webhooks = createWebhooksService({
    repo: webhooksRepo,
    cipher: webhookSecrets,
    allowPrivateTargets: config.webhooks.allowPrivateTargets,
    requireHttps: config.webhooks.requireHttps,
    maxEndpointsPerWorkspace: config.webhooks.maxEndpointsPerWorkspace,
    secretGraceMs: config.webhooks.secretGraceMs,
    now: deps.now,
  });
  const webhookDelivery = createDeliveryWorker({
    repo: webhooksRepo,
    cipher: webhookSecrets,
    send: createWebhookSender({
      timeoutMs: config.webhooks.timeoutMs,
      maxResponseBytes: 64 * 1024,
      allowPrivateTargets: config.webhooks.allowPrivateTargets,
      requireHttps: config.webhooks.requireHttps,
    }),
    logger: logger.child({ component: 'webhooks' }),
    mailer: accountMailer,
    workerId,
    ...config.webhooks,
    now: deps.now,
  });
  // A campaign's results page and per-recipient CSV (the web app and the API alike).
  const results = createResultsService({ repo: createResultsRepo(db), statsRepo: createStatsRepo(db), stats: tracking.stats });
  return { auth, throttle, accountMailer, contacts, mailboxes, messages, sentCopies, sync, push, messageContent, campaigns, cancelledSends, sendWorker, trackingUrls, suppressions, pacer, metrics, tracking, jobSchedule, apiKeys, idempotency, contentGuard, grants, auditRetention, policyVersions, compliance, privacyExports, legalRequests, keyRotation, purge, accountClosure, retention, webhooks, webhookDelivery, webSessions, results, embeddedMaintenance };
}

export type Services = ReturnType<typeof createServices>;
