import { z } from 'zod';
import { API_SCOPES } from './api-spec.js';
import { campaignKindEnum, campaignStatusEnum, classificationEnum, consentStatusEnum, mailboxKindEnum, mailboxStatusEnum, mailEventTypeEnum, messageDirectionEnum, messageStatusEnum, roleEnum, sendStatusEnum, suppressionReasonEnum, trackingEventTypeEnum } from '../db/schema.js';
import { SIGNAL_KINDS, SKIP_REASONS } from '../gmail/sync-health.js';
import { SEND_STATES } from '../campaigns/send-counts.repo.js';
import { segmentSchema } from '../campaigns/segment.js';
import { DATA_KINDS } from '../privacy/export.service.js';
import {
  webhookDeliveryLogResponse,
  webhookEndpointListResponse,
  webhookEndpointResponse,
  webhookEndpointWithSecretResponse,
  webhookRedeliveryResponse,
} from '../webhooks/webhooks.schemas.js';

/*
 * What the JSON routes answer, as zod schemas the OpenAPI document turns into output JSON Schema
 * (openapi.ts). They describe the JSON on the wire: a Date the service returns is an ISO 8601
 * string here, a column that may be null is `.nullable()`. Objects are closed (output JSON
 * Schema says `additionalProperties: false`), so test/integration/openapi-responses.test.ts
 * fails when a handler answers a field these do not name, or drops one they require.
 * Enums come from the database's own enums where there is one, so the two cannot drift apart.
 */

/** `Date.prototype.toJSON`: UTC, milliseconds, `Z`. */
const instant = z.iso.datetime();
const id = z.uuid();
const count = z.number().int().min(0);
const countsBy = <K extends string>(keys: readonly K[]) => z.object(Object.fromEntries(keys.map((k) => [k, count])) as Record<K, typeof count>);

/** The cursor pagination every list of a growing table answers with: `null` on the last page. */
const page = <K extends string, T extends z.ZodType>(key: K, item: T) => z.object({ [key]: z.array(item), nextCursor: z.string().nullable() } as Record<K, z.ZodArray<T>> & { nextCursor: z.ZodNullable<z.ZodString> });

// Operations

export const healthResponse = z.object({ status: z.literal('ok') });
export const readyResponse = z.object({ status: z.literal('ready'), database: z.literal('ok') });
export const notReadyResponse = z.object({ status: z.literal('unavailable'), database: z.literal('unreachable') });

// Accounts (src/auth)

const role = z.enum(roleEnum.enumValues);
export const user = z.object({ id, email: z.string(), name: z.string().nullable(), createdAt: instant });
export const workspace = z.object({ id, name: z.string(), postalAddress: z.string().nullable(), createdAt: instant });
const verificationSent = z.object({ status: z.literal('verification_sent'), message: z.string() });
export const signupResponse = verificationSent;
export const sessionResponse = z.object({ token: z.string(), user, workspace, role });
export const loginResponse = z.object({
  token: z.string(),
  deviceToken: z.string().describe('send it as `deviceToken` with later logins from this client: they are throttled per device, so failures of others never lock it out'),
});
/** An account in no workspace making one of its own: the session and device token of a login, and what it now belongs to. */
export const ownWorkspaceResponse = sessionResponse.extend({ deviceToken: loginResponse.shape.deviceToken });
export const meResponse = z.object({
  user,
  workspace,
  role,
  /** P-18: the policy version in force and the one the member accepted (their latest Gmail connection's). */
  policy: z
    .object({
      currentVersion: z.string(),
      acceptedVersion: z.string().nullable(),
      mailboxes: z.array(z.object({ mailboxId: id, email: z.string(), version: z.string(), connectedAt: instant })),
    })
    .optional(),
});
/**
 * `email` only when a new address was asked for: it changes once the mailed code comes back.
 * `token` only after a password change made with a session token: that change ended every
 * session of the user granted before it (its session version), the caller's too, so the caller
 * continues with this one.
 */
export const profileResponse = z.object({
  user,
  token: z
    .string()
    .describe('Only after a new password, when the caller used a session token: its successor. Every session token of the user granted before the change (the one that made it too, and any signed later by a login that checked the old password) is refused from now on, and every web session is signed out; API keys stay.')
    .optional(),
  email: verificationSent.optional(),
});
export const emailConfirmedResponse = z.object({ user });
export const membersResponse = z.object({ members: z.array(z.object({ userId: id, email: z.string(), name: z.string().nullable(), role, since: instant })) });
export const memberRoleResponse = z.object({ userId: id, role });
const invitation = z.object({ id, email: z.string(), role, expiresAt: instant, acceptedAt: instant.nullable(), createdAt: instant });
export const invitationsResponse = z.object({ invitations: z.array(invitation) });
export const invitationCreatedResponse = z.object({ invitation, token: z.string() });

// API keys (src/api-keys)

export const apiKey = z.object({
  id,
  name: z.string(),
  scopes: z.array(z.enum(API_SCOPES)),
  /** The first characters of the key (`itk_` and six more), to recognise it; never the key. */
  prefix: z.string(),
  createdBy: id.nullable(),
  createdAt: instant,
  lastUsedAt: instant.nullable(),
  revokedAt: instant.nullable(),
});
/** Creation only: the key itself, never shown again. */
export const apiKeyCreatedResponse = apiKey.extend({ key: z.string() });
export const apiKeysResponse = z.object({ apiKeys: z.array(apiKey) });

// Contacts (src/contacts)

export const consent = z.object({ id, status: z.enum(consentStatusEnum.enumValues), source: z.string(), policyVersion: z.string(), actor: z.string(), at: instant });
export const contact = z.object({
  id,
  email: z.string(),
  firstName: z.string().nullable(),
  lastName: z.string().nullable(),
  /** A null in a patch removes the key, so a stored value is never null. */
  attributes: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  /** The latest consent record (P-11); null before any. */
  consent: consent.nullable(),
  createdAt: instant,
  updatedAt: instant,
});
export const contactsPage = page('contacts', contact);
export const consentsResponse = page('consents', consent);

/** Human opens or clicks first, machine and unknown beside them (src/tracking/stats.service.ts). */
export const engagementCounts = z.object({ human: count, machine: count, unknown: count, uniqueHuman: count });
const classification = z.enum(classificationEnum.enumValues);

const timelineEntry = z.discriminatedUnion('type', [
  z.object({ type: z.literal('consent'), at: instant, status: z.enum(consentStatusEnum.enumValues), source: z.string(), actor: z.string() }),
  z.object({
    type: z.literal('message'),
    at: instant,
    messageId: id,
    direction: z.enum(messageDirectionEnum.enumValues),
    status: z.enum(messageStatusEnum.enumValues),
    from: z.string(),
    to: z.array(z.string()),
    cc: z.array(z.string()),
    /** P-03: the subject is content; null unless the caller sent it or owns the mailbox. */
    subject: z.string().nullable(),
    events: z.array(
      z.object({
        type: z.enum(mailEventTypeEnum.enumValues),
        at: instant,
        /** Bounces and delays only: `hard`/`soft`, and the status the notice gave. */
        kind: z.string().nullable().optional(),
        status: z.string().nullable().optional(),
      }),
    ),
  }),
]);
const campaignMailEntry = z.object({
  type: z.literal('campaign_mail'),
  at: instant,
  campaignId: id,
  campaignName: z.string(),
  step: count,
  status: z.enum(sendStatusEnum.enumValues),
  opens: engagementCounts,
  clicks: engagementCounts,
  events: z.array(
    z.object({
      type: z.enum(trackingEventTypeEnum.enumValues),
      at: instant,
      classification,
      reasons: z.array(z.string()),
      /** Clicks only. */
      linkIndex: count.nullable().optional(),
      url: z.string().nullable().optional(),
    }),
  ),
});
/** `GET /api/contacts/:id`: the contact, its timeline (consents and mail, newest first) and its campaign mail. */
export const contactDetail = contact.extend({ timeline: z.array(timelineEntry), campaignMail: z.array(campaignMailEntry) });

export const importReport = z.object({
  rows: count,
  created: count,
  updated: count,
  unchanged: count,
  consents: count,
  optOutsKept: count,
  failed: count,
  errors: z.array(
    z.object({
      line: z.number().int().min(1),
      code: z.enum(['invalid_email', 'value_too_long', 'malformed_row', 'invalid_text', 'invalid_consent', 'invalid_consent_at', 'too_many_attributes']),
      message: z.string(),
    }),
  ),
  errorsTruncated: z.boolean(),
});

// Mailboxes (src/gmail)

export const mailbox = z.object({
  id,
  email: z.string(),
  kind: z.enum(mailboxKindEnum.enumValues),
  status: z.enum(mailboxStatusEnum.enumValues),
  statusReason: z.string().nullable(),
  scopes: z.array(z.string()),
  disclosureVersion: z.string(),
  /** P-18: the policy version it was connected under (the disclosure shown was that version's). */
  policyVersion: z.string(),
  dailyBudget: count,
  sentToday: count,
  ownerUserId: id,
  connectedAt: instant,
  sync: z.object({
    enabled: z.boolean(),
    lastSuccessAt: instant.nullable(),
    lastError: z.string().nullable(),
    messagesSeen: count,
    watchExpiresAt: instant.nullable(),
    health: z.object({ read: count, kept: count, resyncGaps: count, signals: countsBy(SIGNAL_KINDS), skipped: countsBy(SKIP_REASONS) }),
    /** The latest resync that could not read everything since the last sync; kept after later syncs (that mail stays unread). */
    lastGap: z.object({ at: instant, since: instant, read: count }).nullable(),
  }),
});
export const mailboxesResponse = z.object({ mailboxes: z.array(mailbox) });

// Mail (src/messages)

/** One outbound message: `pending` until Gmail confirms, `outcome_unknown` when it never did and the mailbox could not tell (send-only, or more sent since than recovery reads). */
export const message = z.object({
  id,
  status: z.enum(['pending', 'outcome_unknown', 'sent', 'failed']),
  mailboxId: id.nullable(),
  /** Our RFC 822 Message-ID, without angle brackets. */
  messageId: z.string().nullable(),
  gmailMessageId: z.string().nullable(),
  threadId: z.string().nullable(),
  from: z.string(),
  to: z.array(z.string()),
  cc: z.array(z.string()),
  subject: z.string().nullable(),
  at: instant,
});

/** A message's body, read from Gmail through the privacy guard (P-03), never stored. */
const contentAddress = z.object({ name: z.string(), address: z.string() });
export const messageContent = z.object({
  id,
  subject: z.string().nullable(),
  from: contentAddress.nullable(),
  to: z.array(contentAddress),
  cc: z.array(contentAddress),
  date: instant.nullable(),
  text: z.string().nullable(),
  html: z.string().nullable(),
});

// Suppressions (src/suppression)

export const suppression = z.object({
  id,
  /** Null once the address is erased (P-13): the entry keeps working by its keyed hash. */
  email: z.string().nullable(),
  scope: z.string(),
  reason: z.enum(suppressionReasonEnum.enumValues),
  source: z.string().nullable(),
  createdBy: id.nullable(),
  createdAt: instant,
  /** A user's complaint or manual reason over the recipient's own opt-out: the recipient can no longer undo it. */
  heldReason: z.enum(suppressionReasonEnum.enumValues).nullable(),
});
export const suppressionsPage = page('suppressions', suppression);

// Campaigns (src/campaigns; stats from src/tracking)

export const campaign = z.object({
  id,
  name: z.string(),
  kind: z.enum(campaignKindEnum.enumValues),
  status: z.enum(campaignStatusEnum.enumValues),
  statusReason: z.string().nullable(),
  mailboxId: id.nullable(),
  subject: z.string(),
  html: z.string().nullable(),
  text: z.string().nullable(),
  topic: z.string().nullable(),
  audience: z.union([z.object({ contactIds: z.array(id) }), z.object({ segment: segmentSchema })]),
  steps: z.array(z.object({ afterDays: count, subject: z.string().optional(), html: z.string().optional(), text: z.string().optional() })),
  startAt: instant.nullable(),
  sendingWindow: z.object({ days: z.array(z.number().int().min(1).max(7)), startHour: count, endHour: count, timeZone: z.string() }).nullable(),
  launchedAt: instant.nullable(),
  completedAt: instant.nullable(),
  createdAt: instant,
});
export const campaignsResponse = page('campaigns', campaign);
/** The campaign with its progress: sends by state, skips by reason, the next send time and why it waits. */
export const campaignWithProgress = campaign.extend({
  progress: countsBy(SEND_STATES).extend({
    skippedBecause: z.record(z.string(), count),
    nextSendAt: instant.nullable(),
    /** `start_time`, `sending_window`, `daily_budget`, `mailbox_needs_reconnect`, `follow_ups_need_sync`, `mailbox_syncing`, `gmail_rate_limit`, `next_step_schedule`, a pause reason …; null when sending. */
    waitingFor: z.string().nullable(),
  }),
});
export const preflightResponse = z.object({
  total: count,
  eligible: count,
  suppressed: count,
  missingConsent: count,
  invalid: count,
  /** Marketing cannot launch without the workspace's postal address. */
  postalAddressMissing: z.boolean(),
  /** The first message as the first contact of the audience gets it; null for an empty audience. */
  sample: z.object({ contactId: id, subject: z.string(), html: z.string().nullable(), text: z.string() }).nullable(),
});
export const recipientsImportResponse = z.object({ import: importReport, recipients: count });
export const campaignStats = z.object({
  campaignId: id,
  sent: count,
  failed: count,
  bounced: count,
  bounces: z.object({ hard: count, soft: count, delayed: count }),
  replied: count,
  autoReplied: count,
  unsubscribed: count,
  opens: engagementCounts,
  clicks: engagementCounts,
  links: z.array(z.object({ index: count, url: z.string(), clicks: engagementCounts })),
});

// Privacy (src/privacy)

/** An access grant, seen by the owner who `given` it or the member who `received` it. */
export const grant = z.object({
  id,
  messageId: id,
  grantedBy: id,
  granteeUserId: id,
  reason: z.string().nullable(),
  expiresAt: instant,
  revokedAt: instant.nullable(),
  createdAt: instant,
  status: z.enum(['active', 'expired', 'revoked']),
  direction: z.enum(['given', 'received']),
});
export const grantsResponse = z.object({ grants: z.array(grant) });

export const legalRequest = z.object({
  id,
  authority: z.string(),
  legalBasis: z.string(),
  reference: z.string(),
  scope: z.object({
    contactIds: z.array(id),
    addresses: z.array(z.string()),
    /** Addresses whose contact was purged since (P-13): counted, kept only as keyed hashes. */
    erasedAddresses: count,
    mailboxIds: z.array(id),
    from: instant,
    to: instant,
    kinds: z.array(z.enum(DATA_KINDS)),
  }),
  recordedBy: id.nullable(),
  createdAt: instant,
  lastDisclosedAt: instant.nullable(),
});
export const legalRequestsResponse = z.object({ legalRequests: z.array(legalRequest) });

export const accountClosedResponse = z.object({ status: z.literal('closed'), purgeAfter: instant, closedWorkspaceIds: z.array(id) });

/**
 * Schemas shared by several answers, named: the document puts them under
 * `components.schemas` and refers to them, so a generated client gets one type for each.
 */
export const RESPONSE_COMPONENTS: Record<string, z.ZodType> = {
  User: user,
  Workspace: workspace,
  VerificationSent: verificationSent,
  ApiKey: apiKey,
  Consent: consent,
  Contact: contact,
  EngagementCounts: engagementCounts,
  ImportReport: importReport,
  Mailbox: mailbox,
  Message: message,
  Suppression: suppression,
  Campaign: campaign,
  CampaignWithProgress: campaignWithProgress,
  Grant: grant,
  LegalRequest: legalRequest,
  WebhookEndpoint: webhookEndpointResponse,
  WebhookEndpointWithSecret: webhookEndpointWithSecretResponse,
};

export { webhookDeliveryLogResponse, webhookEndpointListResponse, webhookEndpointResponse, webhookEndpointWithSecretResponse, webhookRedeliveryResponse };
