import type { z } from 'zod';
import type { Role } from '../db/schema.js';

/**
 * The route registry: every HTTP route the app serves, declared once with the zod schemas
 * that validate it. Two things read it: the OpenAPI document (openapi.ts) and API-key scope
 * enforcement (requireAuth asks `accessOf` what a key needs for the route it is calling).
 * A route missing here is refused to every API key, and the OpenAPI test fails.
 */

export const API_SCOPES = ['read', 'send', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

/**
 * Who may call a route:
 * - `public`: anyone (the route authenticates otherwise, or not at all);
 * - `session`: a member's session token only — browser flows and Gmail content (P-03) stay with people;
 * - a scope: a member's session, or an API key holding that scope (or `admin`).
 */
export type Access = 'public' | 'session' | ApiScope;

export type HttpMethod = 'get' | 'post' | 'patch' | 'delete';

export interface ApiRoute {
  method: HttpMethod;
  /** The Express path as registered, e.g. `/api/contacts/:id`. Path parameters are ids (UUIDs). */
  path: string;
  tag: string;
  summary: string;
  access: Access;
  /** Roles a session needs beyond membership (documentation; the service enforces it). */
  roles?: Role[];
  query?: z.ZodType;
  /** A JSON body schema, or `'csv'` for a text/csv upload. */
  body?: z.ZodType | 'csv';
  /** Takes an `Idempotency-Key` header (see src/idempotency/idempotency.middleware.ts). */
  idempotent?: boolean;
  /**
   * Success statuses and what each returns: words, or words and the zod schema of the JSON
   * body (`json(...)`), which the document emits as output JSON Schema.
   */
  responses: Record<number, string | ApiResponse>;
  /** Error codes this route itself may answer (the common ones are added by access). */
  errors?: string[];
  /** The content type of a non-JSON answer (the docs page, the pixel …). */
  produces?: string;
}

/** A success answer with a JSON body: what it is in words, and the schema of exactly what is sent. */
export interface ApiResponse {
  description: string;
  schema: z.ZodType;
}

/** `200: json('the contact', contact)`. */
export const json = (description: string, schema: z.ZodType): ApiResponse => ({ description, schema });

/** One line per route: `route('get', '/api/contacts/:id', {...})`. */
export function route(method: HttpMethod, path: string, spec: Omit<ApiRoute, 'method' | 'path'>): ApiRoute {
  return { method, path, ...spec };
}

/** Every stable error code, with the status it is answered with. */
export const ERROR_STATUS: Record<string, number> = {
  validation_failed: 400,
  invalid_json: 400,
  invalid_text: 400,
  bad_request: 400,
  request_aborted: 400,
  invalid_body_encoding: 400,
  unsupported_encoding: 415,
  unsupported_charset: 415,
  connection_not_started_here: 400,
  code_exchange_failed: 400,
  consent_denied: 400,
  scope_not_granted: 400,
  no_refresh_token: 400,
  invalid_state: 400,
  invalid_push_message: 400,
  unauthorized: 401,
  invalid_token: 401,
  invalid_credentials: 401,
  invalid_push_token: 401,
  api_key_revoked: 401,
  forbidden: 403,
  api_key_scope_missing: 403,
  password_incorrect: 403,
  access_basis_required: 403,
  basis_needs_admin: 403,
  basis_not_allowed: 403,
  case_reference_required: 403,
  purpose_refused: 403,
  no_active_grant: 403,
  aggregate_has_no_content: 403,
  // The web app's downloads (web/fetch-site.ts): a session-cookie GET another site started.
  cross_site_download: 403,
  not_found: 404,
  route_not_found: 404,
  signup_code_invalid: 404,
  webhook_not_found: 404,
  webhook_event_not_found: 404,
  email_code_invalid: 404,
  email_code_expired: 404,
  invitation_not_found: 404,
  link_not_found: 404,
  contact_exists: 409,
  audience_being_launched: 409,
  email_taken: 409,
  already_member: 409,
  has_workspace: 409,
  no_workspace: 403,
  recipient_suppressed: 409,
  mailbox_needs_reconnect: 409,
  mailbox_connected_by_another: 409,
  grant_already_revoked: 409,
  webhook_endpoint_disabled: 409,
  webhook_endpoint_limit: 409,
  last_owner: 409,
  postal_address_in_use: 409,
  workspace_has_members: 409,
  campaign_not_editable: 409,
  campaign_not_draft: 409,
  campaign_changed: 409,
  campaign_not_running: 409,
  campaign_not_paused: 409,
  campaign_finished: 409,
  read_access_not_granted: 409,
  send_taken_over: 409,
  mailbox_disconnected: 409,
  idempotency_in_progress: 409,
  concurrent_change: 409,
  resubscribe_not_allowed: 409,
  confirmation_expired: 410,
  payload_too_large: 413,
  message_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  grant_to_self: 422,
  webhook_target_not_allowed: 422,
  unknown_contact: 422,
  unknown_mailbox: 422,
  grantee_not_member: 422,
  invalid_grant_expiry: 422,
  unknown_merge_field: 422,
  unknown_contacts: 422,
  no_recipients: 422,
  too_many_links: 422,
  follow_ups_need_sync: 422,
  postal_address_required: 422,
  mailbox_missing: 422,
  gmail_rejected: 422,
  email_undeliverable: 422,
  too_many_requests: 429,
  internal_error: 500,
  gmail_error: 502,
  gmail_unavailable: 503,
  account_mail_unavailable: 503,
  push_verification_unavailable: 503,
  google_client_misconfigured: 503,
  google_unavailable: 503,
};

/** Codes any route of that access may answer, on top of its own. */
export function commonErrors(route: ApiRoute): string[] {
  const codes = ['invalid_text', 'internal_error', 'concurrent_change'];
  if (route.body || route.query) codes.push('validation_failed');
  // What the body parser answers: JSON that does not parse, too large, a Content-Encoding or
  // charset it cannot read, a compressed body that does not inflate, a body cut short.
  if (route.body && route.body !== 'csv') {
    codes.push('invalid_json', 'payload_too_large', 'unsupported_encoding', 'unsupported_charset', 'invalid_body_encoding', 'request_aborted');
  }
  if (route.body === 'csv') codes.push('unsupported_media_type', 'payload_too_large');
  if (route.access !== 'public') codes.push('unauthorized', 'invalid_token', 'api_key_revoked', 'forbidden');
  if (route.access !== 'public' && route.access !== 'session') codes.push('api_key_scope_missing');
  if (route.path.includes('/:')) codes.push('not_found');
  if (route.idempotent) codes.push('idempotency_key_reused', 'idempotency_in_progress');
  return codes;
}

/** `/api/contacts/:id` → its segments; a `:name` segment matches any one segment. */
const segmentsOf = (path: string) => path.split('/').filter(Boolean);

/**
 * What a request needs, from the registry: the access of the route that matches its method
 * and path, literal segments winning over parameters (`/contacts/import` before `/contacts/:id`).
 * Undefined when no route matches.
 */
export function createAccessLookup(routes: readonly ApiRoute[]): (method: string, path: string) => Access | undefined {
  const compiled = routes
    .map((r) => ({ method: r.method.toUpperCase(), segments: segmentsOf(r.path), access: r.access }))
    .sort((a, b) => a.segments.filter((s) => s.startsWith(':')).length - b.segments.filter((s) => s.startsWith(':')).length);
  return (method, path) => {
    // Express matches paths case-insensitively; so does this (registered paths are lowercase).
    const wanted = segmentsOf(path);
    // Express answers HEAD with the GET route.
    const asked = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
    const found = compiled.find(
      (r) => r.method === asked && r.segments.length === wanted.length && r.segments.every((s, i) => s.startsWith(':') || s === wanted[i]!.toLowerCase()),
    );
    return found?.access;
  };
}
