import { z } from 'zod';
import { createApiKeyBody } from '../api-keys/api-keys.routes.js';
import { acceptBody, emailCodeBody, inviteBody, profileBody, roleBody, loginBody, ownWorkspaceBody, signupBody, verifyBody, workspaceBody } from '../auth/auth.routes.js';
import { campaignBody, launchBody, listCampaignsQuery } from '../campaigns/campaigns.routes.js';
import { consentBody, createContactBody, listContactsQuery, patchContactBody } from '../contacts/contacts.routes.js';
import { callbackQuery, connectQuery, patchMailboxBody } from '../gmail/gmail.routes.js';
import { contentQuery, sendMessageBody } from '../messages/messages.routes.js';
import { closeBody } from '../privacy/account-closure.routes.js';
import { reportQuery } from '../privacy/compliance.routes.js';
import { legalRequestBody, recipientQuery } from '../privacy/privacy.routes.js';
import { grantBody, listGrantsQuery } from '../privacy/grants.routes.js';
import { addSuppressionBody, listSuppressionsQuery, removeSuppressionBody } from '../suppression/suppression.routes.js';
import { webhookEventCatalogue } from '../webhooks/events.js';
import { createWebhookBody, updateWebhookBody, webhookDeliveriesQuery } from '../webhooks/webhooks.schemas.js';
import { json, route, type ApiRoute } from './api-spec.js';
import * as R from './response-schemas.js';

/*
 * Every route the app serves, one line each (see api-spec.ts). Adding a route to a router
 * without adding it here fails test/integration/openapi.test.ts, and API keys are refused on it.
 * The scope and tenant-isolation tests walk this list: an /api route added here fails them, named,
 * until it has its expected scope (api-keys.test.ts) and its isolation check (tenant-isolation.test.ts).
 * Scopes: `read` reads; `send` writes contacts, consents, campaigns and suppressions and sends
 * mail; `admin` changes the workspace, its members and mailboxes, and removes suppressions.
 */
const mailboxDailyBudget = { 200: json('the mailbox', R.mailbox) };
const campaignState = { 200: json('the campaign with its progress', R.campaignWithProgress) };
const lifecycle = (action: 'pause' | 'resume' | 'cancel', errors: string[]) =>
  route('post', `/api/campaigns/:id/${action}`, { tag: 'campaigns', summary: `${action[0]!.toUpperCase()}${action.slice(1)} a campaign`, access: 'send', responses: campaignState, errors });

export const API_ROUTES: ApiRoute[] = [
  // Operations
  route('get', '/healthz', { tag: 'operations', summary: 'Liveness', access: 'public', responses: { 200: json('alive', R.healthResponse) } }),
  route('get', '/readyz', { tag: 'operations', summary: 'Readiness: the database answers', access: 'public', responses: { 200: json('ready', R.readyResponse), 503: json('the database is unreachable', R.notReadyResponse) } }),
  route('get', '/metrics', { tag: 'operations', summary: 'Prometheus metrics (Bearer METRICS_TOKEN; 404 when unset)', access: 'public', produces: 'text/plain', responses: { 200: 'metrics' }, errors: ['unauthorized', 'route_not_found'] }),
  route('get', '/api/openapi.json', { tag: 'operations', summary: 'This OpenAPI 3.1 document', access: 'public', responses: { 200: 'the document' } }),
  route('get', '/api/docs', { tag: 'operations', summary: 'The API reference as a page', access: 'public', produces: 'text/html', responses: { 200: 'the page' } }),

  // Accounts
  route('post', '/api/auth/signup', { tag: 'auth', summary: 'Sign up (a confirmation code is mailed)', access: 'public', body: signupBody, responses: { 202: json('the same answer whether or not the address has an account', R.signupResponse) }, errors: ['too_many_requests', 'email_undeliverable', 'account_mail_unavailable'] }),
  route('post', '/api/auth/signup/verify', { tag: 'auth', summary: 'Confirm a signup, or an invitation accepted by a new address', access: 'public', body: verifyBody, responses: { 201: json('a session in the new workspace, or the one the invitation joins', R.sessionResponse) }, errors: ['signup_code_invalid', 'invitation_not_found', 'email_taken'] }),
  route('post', '/api/auth/login', { tag: 'auth', summary: 'Log in', access: 'public', body: loginBody, responses: { 200: json('a session token', R.loginResponse) }, errors: ['invalid_credentials', 'no_workspace', 'too_many_requests'] }),
  route('post', '/api/auth/workspaces', { tag: 'auth', summary: 'An account in no workspace (removed from its last one) makes one of its own; proven by its password, throttled like a login', access: 'public', body: ownWorkspaceBody, responses: { 201: json('a session in the new workspace, as owner', R.ownWorkspaceResponse) }, errors: ['invalid_credentials', 'has_workspace', 'too_many_requests'] }),
  route('post', '/api/invitations/accept', { tag: 'auth', summary: "Accept an invitation: an existing account gives its password; otherwise the invited address is mailed its next step (a new address: a confirmation code for POST /api/auth/signup/verify). The answer never tells whether the address has an account", access: 'public', body: acceptBody, responses: { 201: json("an existing account's right password: a session in the workspace joined", R.sessionResponse), 202: json('no account proven (no password, a wrong one, or no account): the address was mailed a code (new address) or how to join with its account', R.signupResponse) }, errors: ['invitation_not_found', 'invalid_credentials', 'already_member', 'too_many_requests', 'email_undeliverable', 'account_mail_unavailable'] }),
  route('get', '/api/me', { tag: 'auth', summary: 'The caller, their workspace and role', access: 'read', responses: { 200: json('the caller, their workspace, role and policy versions', R.meResponse) } }),
  route('patch', '/api/me', { tag: 'auth', summary: 'Correct your own profile; a new password or address needs the current password (P-12). A new password ends every other session of yours (API keys stay)', access: 'session', body: profileBody, responses: { 200: json('the profile; after a new password, `token`: the session token to continue with (the one used is ended)', R.profileResponse) }, errors: ['password_incorrect', 'too_many_requests', 'email_taken', 'email_undeliverable', 'account_mail_unavailable'] }),
  route('post', '/api/me/email/verify', { tag: 'auth', summary: 'Confirm a new login address with the mailed code', access: 'session', body: emailCodeBody, responses: { 200: json('the profile', R.emailConfirmedResponse) }, errors: ['email_code_invalid', 'email_code_expired', 'email_taken'] }),
  route('get', '/api/members', { tag: 'auth', summary: "The workspace's members", access: 'read', responses: { 200: json('the members', R.membersResponse) } }),
  route('patch', '/api/workspace', { tag: 'auth', summary: 'Rename the workspace or set its postal address', access: 'admin', roles: ['owner', 'admin'], body: workspaceBody, responses: { 200: json('the workspace', R.workspace) }, errors: ['postal_address_in_use'] }),
  route('patch', '/api/members/:id', { tag: 'auth', summary: "Change a member's role (audited)", access: 'admin', roles: ['owner', 'admin'], body: roleBody, responses: { 200: json('the member and their role', R.memberRoleResponse) }, errors: ['last_owner'] }),
  route('delete', '/api/members/me', { tag: 'auth', summary: 'Leave the workspace (audited): the mailboxes you connected here are disconnected, the API keys you made here revoked; its last owner cannot', access: 'session', responses: { 204: 'left' }, errors: ['last_owner'] }),
  route('delete', '/api/members/:id', { tag: 'auth', summary: 'Remove a member (audited)', access: 'admin', roles: ['owner', 'admin'], responses: { 204: 'removed' }, errors: ['last_owner'] }),
  route('get', '/api/invitations', { tag: 'auth', summary: 'Open invitations', access: 'admin', roles: ['owner', 'admin'], responses: { 200: json('open invitations', R.invitationsResponse) } }),
  route('post', '/api/invitations', { tag: 'auth', summary: 'Invite someone (the token is shown once)', access: 'admin', roles: ['owner', 'admin'], body: inviteBody, responses: { 201: json('the invitation and its one-time token', R.invitationCreatedResponse) }, errors: ['already_member', 'too_many_requests'] }),
  route('delete', '/api/invitations/:id', { tag: 'auth', summary: 'Revoke an invitation', access: 'admin', roles: ['owner', 'admin'], responses: { 204: 'revoked' } }),

  // API keys
  route('post', '/api/api-keys', { tag: 'api-keys', summary: 'Create an API key (the key is shown once)', access: 'session', roles: ['owner', 'admin'], body: createApiKeyBody, responses: { 201: json('the key, with the key itself (this answer only)', R.apiKeyCreatedResponse) } }),
  route('get', '/api/api-keys', { tag: 'api-keys', summary: "The workspace's API keys (never the keys themselves)", access: 'session', roles: ['owner', 'admin'], responses: { 200: json('the keys', R.apiKeysResponse) } }),
  route('delete', '/api/api-keys/:id', { tag: 'api-keys', summary: 'Revoke an API key (refused from the next request on)', access: 'session', roles: ['owner', 'admin'], responses: { 204: 'revoked' } }),

  // Contacts
  route('get', '/api/contacts', { tag: 'contacts', summary: 'List contacts', access: 'read', query: listContactsQuery, responses: { 200: json('a page of contacts, newest first', R.contactsPage) } }),
  route('post', '/api/contacts', { tag: 'contacts', summary: 'Create a contact', access: 'send', body: createContactBody, responses: { 201: json('the contact', R.contact) }, errors: ['contact_exists'] }),
  route('post', '/api/contacts/import', { tag: 'contacts', summary: 'Import a CSV file (optional consent column)', access: 'send', body: 'csv', responses: { 200: json('the import report', R.importReport) }, errors: ['request_aborted'] }),
  route('get', '/api/contacts/:id', { tag: 'contacts', summary: 'A contact with its timeline', access: 'read', responses: { 200: json('the contact with its timeline and campaign mail', R.contactDetail) } }),
  route('patch', '/api/contacts/:id', { tag: 'contacts', summary: 'Change a contact', access: 'send', body: patchContactBody, responses: { 200: json('the contact', R.contact) }, errors: ['contact_exists', 'audience_being_launched'] }),
  route('delete', '/api/contacts/:id', { tag: 'contacts', summary: 'Delete a contact', access: 'send', responses: { 204: 'deleted' } }),
  route('get', '/api/contacts/:id/consents', { tag: 'contacts', summary: "A contact's consent history", access: 'read', responses: { 200: json('the consent history, newest first', R.consentsResponse) } }),
  route('post', '/api/contacts/:id/consents', { tag: 'contacts', summary: 'Append a consent record', access: 'send', body: consentBody, responses: { 201: json('the consent record', R.consent) } }),

  // Gmail
  route('get', '/api/gmail/connect', { tag: 'gmail', summary: 'Limited Use disclosure, then Google consent', access: 'session', query: connectQuery, produces: 'text/html', responses: { 200: 'the disclosure page, or {disclosure,scopes,url} as JSON', 302: "to Google's consent" } }),
  route('get', '/api/gmail/callback', { tag: 'gmail', summary: 'Google comes back here', access: 'public', query: callbackQuery, produces: 'text/html', responses: { 200: 'a page', 201: 'the mailbox (JSON)' }, errors: ['connection_not_started_here', 'code_exchange_failed', 'consent_denied', 'invalid_state', 'scope_not_granted', 'no_refresh_token', 'google_unavailable', 'google_client_misconfigured', 'mailbox_connected_by_another'] }),
  route('get', '/api/mailboxes', { tag: 'gmail', summary: 'Connected mailboxes', access: 'read', responses: { 200: json('the mailboxes', R.mailboxesResponse) } }),
  route('patch', '/api/mailboxes/:id', { tag: 'gmail', summary: "Set a mailbox's daily budget", access: 'admin', body: patchMailboxBody, responses: mailboxDailyBudget }),
  route('delete', '/api/mailboxes/:id', { tag: 'gmail', summary: 'Disconnect (revokes at Google, deletes synced data)', access: 'admin', responses: { 204: 'disconnected' } }),
  route('post', '/webhooks/gmail', { tag: 'gmail', summary: 'Gmail push (Pub/Sub OIDC token verified)', access: 'public', responses: { 204: 'accepted' }, errors: ['invalid_push_token', 'invalid_push_message', 'push_verification_unavailable'] }),

  // Mail
  route('post', '/api/messages', { tag: 'messages', summary: 'Send 1:1 mail now', access: 'send', body: sendMessageBody, idempotent: true, responses: { 201: json('sent', R.message), 202: json('status pending or outcome_unknown: the outcome follows on GET /api/messages/:id. A retry whose Idempotency-Key a crash left in progress answers the claimed message as it stands now (201 sent; 202 pending, outcome_unknown or failed: not sent), with Idempotent-Replayed: true; 409 idempotency_in_progress names it in details.messageId while the first request may still run. A crash before the claim linked no message: once the key lease of that request is over, a retry takes the key over and sends (201/202, not replayed)', R.message) }, errors: ['not_found', 'recipient_suppressed', 'mailbox_needs_reconnect', 'send_taken_over', 'too_many_requests', 'message_too_large', 'gmail_rejected', 'gmail_unavailable'] }),
  route('get', '/api/messages/:id', { tag: 'messages', summary: 'One outbound message and its status', access: 'read', responses: { 200: json('the message', R.message) } }),
  route('get', '/api/messages/:id/content', { tag: 'messages', summary: "A message's body through the privacy guard: its mailbox's owner, or a stated basis (grant; security/legal with a case reference) (P-03)", access: 'session', query: contentQuery, responses: { 200: json('the content, parsed in memory and not kept', R.messageContent) }, errors: ['read_access_not_granted', 'gmail_error', 'access_basis_required', 'basis_needs_admin', 'basis_not_allowed', 'case_reference_required', 'no_active_grant', 'purpose_refused', 'aggregate_has_no_content'] }),

  // Privacy: access grants and the evidence report
  route('post', '/api/grants', { tag: 'privacy', summary: "The mailbox's owner lets one member read one message until a date", access: 'session', body: grantBody, responses: { 201: json('the grant', R.grant) }, errors: ['grant_to_self', 'grantee_not_member', 'invalid_grant_expiry'] }),
  route('get', '/api/grants', { tag: 'privacy', summary: 'Grants the caller gave or holds', access: 'session', query: listGrantsQuery, responses: { 200: json('grants given and received', R.grantsResponse) } }),
  route('delete', '/api/grants/:id', { tag: 'privacy', summary: 'Revoke a grant', access: 'session', responses: { 204: 'revoked' }, errors: ['grant_already_revoked'] }),
  route('post', '/api/privacy/delete-account', { tag: 'privacy', summary: 'Close your account: Google access revoked and sessions ended at once, everything purged by the date answered (P-13)', access: 'session', body: closeBody, responses: { 200: json('closed', R.accountClosedResponse) }, errors: ['password_incorrect', 'too_many_requests', 'workspace_has_members'] }),
  route('get', '/api/privacy/export', { tag: 'privacy', summary: 'Everything held about the caller, one JSON document, streamed (P-12)', access: 'session', responses: { 200: 'the export' } }),
  route('get', '/api/privacy/recipients/export', { tag: 'privacy', summary: 'A data subject request: everything held about one recipient address (P-12)', access: 'admin', roles: ['owner', 'admin'], query: recipientQuery, responses: { 200: 'the export' } }),
  route('post', '/api/privacy/legal-requests', { tag: 'privacy', summary: 'Record a legal request with its exact scope (P-16)', access: 'session', roles: ['owner', 'admin'], body: legalRequestBody, responses: { 201: json('the request', R.legalRequest) }, errors: ['unknown_contact', 'unknown_mailbox'] }),
  route('get', '/api/privacy/legal-requests', { tag: 'privacy', summary: 'Legal requests recorded', access: 'session', roles: ['owner', 'admin'], responses: { 200: json('the requests', R.legalRequestsResponse) } }),
  route('get', '/api/privacy/legal-requests/:id', { tag: 'privacy', summary: 'One legal request', access: 'session', roles: ['owner', 'admin'], responses: { 200: json('the request', R.legalRequest) } }),
  route('get', '/api/privacy/legal-requests/:id/disclosure', { tag: 'privacy', summary: "Exactly the request's scope, streamed; audited (P-16)", access: 'session', roles: ['owner', 'admin'], responses: { 200: 'the disclosure' } }),
  route('get', '/api/compliance/report', { tag: 'privacy', summary: 'The evidence report from the audit log (JSON, or CSV with format=csv)', access: 'admin', roles: ['owner', 'admin'], query: reportQuery, produces: 'application/json', responses: { 200: 'the report' } }),

  // Campaigns
  route('post', '/api/campaigns', { tag: 'campaigns', summary: 'Create a draft', access: 'send', body: campaignBody, idempotent: true, responses: { 201: json('the draft', R.campaign) }, errors: ['unknown_merge_field', 'unknown_contacts', 'mailbox_missing', 'too_many_links'] }),
  route('get', '/api/campaigns', { tag: 'campaigns', summary: 'List campaigns, newest first, a page at a time (`limit`, `cursor`: the `nextCursor` of the page before)', access: 'read', query: listCampaignsQuery, responses: { 200: json('a page of campaigns and the next page\'s cursor (null: the last)', R.campaignsResponse) } }),
  route('get', '/api/campaigns/:id', { tag: 'campaigns', summary: 'A campaign and its progress', access: 'read', responses: campaignState }),
  route('patch', '/api/campaigns/:id', { tag: 'campaigns', summary: 'Change a draft', access: 'send', body: campaignBody, responses: { 200: json('the draft', R.campaign) }, errors: ['campaign_not_editable', 'unknown_merge_field', 'unknown_contacts', 'mailbox_missing', 'too_many_links'] }),
  route('delete', '/api/campaigns/:id', { tag: 'campaigns', summary: 'Delete a campaign: a running one is cancelled, it disappears at once and is purged later (P-13)', access: 'send', responses: { 204: 'deleted' } }),
  route('post', '/api/campaigns/:id/recipients', { tag: 'campaigns', summary: "A draft's audience from a CSV file", access: 'send', body: 'csv', responses: { 200: json('the contacts import report and the audience size', R.recipientsImportResponse) }, errors: ['campaign_not_editable', 'request_aborted', 'no_recipients'] }),
  route('post', '/api/campaigns/:id/preflight', { tag: 'campaigns', summary: 'Count eligible / suppressed / missing consent / invalid', access: 'read', responses: { 200: json('the counts and one rendered sample', R.preflightResponse) } }),
  route('post', '/api/campaigns/:id/launch', { tag: 'campaigns', summary: 'Launch a draft', access: 'send', body: launchBody, idempotent: true, responses: campaignState, errors: ['campaign_not_draft', 'campaign_changed', 'postal_address_required', 'mailbox_needs_reconnect', 'follow_ups_need_sync'] }),
  lifecycle('pause', ['campaign_not_running']),
  lifecycle('resume', ['campaign_not_paused', 'mailbox_needs_reconnect', 'follow_ups_need_sync', 'mailbox_disconnected']),
  lifecycle('cancel', ['campaign_finished']),
  route('get', '/api/campaigns/:id/results.csv', { tag: 'campaigns', summary: 'Per-recipient results as CSV, streamed (cells that a spreadsheet would run as a formula are quoted)', access: 'read', produces: 'text/csv', responses: { 200: 'the CSV' } }),
  route('get', '/api/campaigns/:id/stats', { tag: 'campaigns', summary: 'Campaign stats (human first, machine beside)', access: 'read', responses: { 200: json('the stats', R.campaignStats) } }),

  // Outbound webhooks (src/webhooks/README.md)
  route('post', '/api/webhooks', { tag: 'webhooks', summary: 'Add an endpoint (its signing secret is in this answer only)', access: 'admin', roles: ['owner', 'admin'], body: createWebhookBody, responses: { 201: json('the endpoint with its secret', R.webhookEndpointWithSecretResponse) }, errors: ['webhook_target_not_allowed', 'webhook_endpoint_limit'] }),
  route('get', '/api/webhooks', { tag: 'webhooks', summary: "The workspace's endpoints", access: 'admin', roles: ['owner', 'admin'], responses: { 200: json('the endpoints', R.webhookEndpointListResponse) } }),
  route('get', '/api/webhooks/:id', { tag: 'webhooks', summary: 'One endpoint', access: 'admin', roles: ['owner', 'admin'], responses: { 200: json('the endpoint', R.webhookEndpointResponse) }, errors: ['webhook_not_found'] }),
  route('patch', '/api/webhooks/:id', { tag: 'webhooks', summary: 'Change an endpoint (URL, event types, enabled)', access: 'admin', roles: ['owner', 'admin'], body: updateWebhookBody, responses: { 200: json('the endpoint', R.webhookEndpointResponse) }, errors: ['webhook_not_found', 'webhook_target_not_allowed'] }),
  route('delete', '/api/webhooks/:id', { tag: 'webhooks', summary: 'Delete an endpoint', access: 'admin', roles: ['owner', 'admin'], responses: { 204: 'deleted' }, errors: ['webhook_not_found'] }),
  route('post', '/api/webhooks/:id/rotate-secret', { tag: 'webhooks', summary: 'A new signing secret; the old one keeps signing for the grace period', access: 'admin', roles: ['owner', 'admin'], responses: { 200: json('the endpoint with its new secret', R.webhookEndpointWithSecretResponse) }, errors: ['webhook_not_found'] }),
  route('get', '/api/webhooks/:id/deliveries', { tag: 'webhooks', summary: "The endpoint's delivery log, every attempt", access: 'admin', roles: ['owner', 'admin'], query: webhookDeliveriesQuery, responses: { 200: json('a page of deliveries with every attempt, newest first', R.webhookDeliveryLogResponse) }, errors: ['webhook_not_found'] }),
  route('post', '/api/webhooks/:id/events/:eventId/redeliver', { tag: 'webhooks', summary: 'Deliver one event again (same event id)', access: 'admin', roles: ['owner', 'admin'], responses: { 202: json('the new delivery, queued', R.webhookRedeliveryResponse) }, errors: ['webhook_not_found', 'webhook_event_not_found', 'webhook_endpoint_disabled'] }),

  // Suppressions and recipients' pages
  route('get', '/api/suppressions', { tag: 'suppressions', summary: 'The suppression list', access: 'read', query: listSuppressionsQuery, responses: { 200: json('a page of the list, newest first', R.suppressionsPage) } }),
  route('post', '/api/suppressions', { tag: 'suppressions', summary: 'Suppress an address', access: 'send', body: addSuppressionBody, responses: { 200: json('already suppressed: the existing entry', R.suppression), 201: json('the suppression', R.suppression) } }),
  route('delete', '/api/suppressions/:id', { tag: 'suppressions', summary: 'Remove a suppression (audited)', access: 'admin', roles: ['owner', 'admin'], body: removeSuppressionBody, responses: { 204: 'removed' } }),
  route('get', '/u/:token', { tag: 'recipients', summary: 'Unsubscribe page (changes nothing)', access: 'public', produces: 'text/html', responses: { 200: 'the page' } }),
  route('post', '/u/:token', { tag: 'recipients', summary: 'Unsubscribe, RFC 8058 one-click', access: 'public', produces: 'text/html', responses: { 200: 'unsubscribed (committed first)' } }),
  route('get', '/p/:token', { tag: 'recipients', summary: 'Preference center', access: 'public', produces: 'text/html', responses: { 200: 'the page' } }),
  route('post', '/p/:token', { tag: 'recipients', summary: 'Save preferences (opt-outs at once; undoing one mails the address a link to confirm)', access: 'public', produces: 'text/html', responses: { 200: 'the page (an undo: "confirm with the link we mailed")', 503: 'the page: the rest saved, the confirmation mail not sent' } }),
  route('get', '/p/confirm/:token', { tag: 'recipients', summary: 'The mailed link that confirms undoing an opt-out: a page with one button (changes nothing)', access: 'public', produces: 'text/html', responses: { 200: 'the page', 410: 'expired (a page; nothing changed)' } }),
  route('post', '/p/confirm/:token', { tag: 'recipients', summary: 'Undo exactly the opt-outs the mailed link names (once; again changes nothing)', access: 'public', produces: 'text/html', responses: { 200: 'done, or nothing left to do (the page)', 409: 'held by the sender or a bounce (a page; nothing changed)', 410: 'expired (a page; nothing changed)' } }),
  route('get', '/t/o/:token', { tag: 'recipients', summary: 'Open pixel (always a 43-byte GIF)', access: 'public', produces: 'image/gif', responses: { 200: 'the pixel' } }),
  route('get', '/t/c/:token', { tag: 'recipients', summary: 'Click redirect (only to the stored link)', access: 'public', produces: 'text/html', responses: { 302: 'to the link', 404: 'unknown link' } }),
];

/**
 * Webhook payloads (OpenAPI `webhooks`): event type → zod schema of its body. The webhooks
 * feature registers its events here, one line each.
 */
export const API_WEBHOOKS: Record<string, { summary: string; payload: z.ZodType }> = { ...webhookEventCatalogue };
