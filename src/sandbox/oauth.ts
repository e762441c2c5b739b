import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { OAuthError } from './google-errors.js';
import type { SigningKeys } from './signing.js';
import type { Mailbox, MailboxKind, MailStore } from './store.js';

/**
 * Google OAuth 2.0 as the service meets it: consent, codes, grants, access and refresh
 * tokens, revocation. A grant is one mailbox's consent to one client; revoking any of
 * its tokens revokes the grant, and with it every token it issued, as Google does.
 */

export const CODE_TTL_MS = 10 * 60_000;
const PENDING_TTL_MS = 30 * 60_000;
const ID_TOKEN_SCOPES = new Set(['openid', 'email', 'profile', 'https://www.googleapis.com/auth/userinfo.email', 'https://www.googleapis.com/auth/userinfo.profile']);

export interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  scopes: string[];
  state?: string;
  accessType: 'online' | 'offline';
  includeGrantedScopes: boolean;
  prompt: string[];
  loginHint?: string;
  nonce?: string;
  codeChallenge?: string;
  codeChallengeMethod?: 'S256' | 'plain';
}

interface Grant {
  id: string;
  email: string;
  clientId: string;
  scopes: Set<string>;
  revoked: boolean;
}

interface AccessTokenRecord {
  grant: Grant;
  scopes: string[];
  expiresAt: number;
}

interface RefreshTokenRecord {
  grant: Grant;
  scopes: string[];
}

interface AuthCodeRecord {
  grant: Grant;
  request: AuthorizationRequest;
  scopes: string[];
  issueRefreshToken: boolean;
  expiresAt: number;
  used: boolean;
}

export interface QueuedDecision {
  decision: 'allow' | 'deny';
  /** The mailbox that approves; created when new. Defaults to the request's login_hint. */
  email?: string;
  kind?: MailboxKind;
}

export interface TokenResponse {
  access_token: string;
  expires_in: number;
  refresh_token?: string;
  scope: string;
  token_type: 'Bearer';
  id_token?: string;
}

export interface AccessTokenInfo {
  email: string;
  clientId: string;
  scopes: string[];
  expiresAt: number;
}

export interface OAuthOptions {
  clientId?: string;
  clientSecret?: string;
  redirectUris?: string[];
  accessTokenTtlSeconds: number;
  now: () => Date;
  issuer: string;
}

function secureEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

function token(prefix: string, bytes = 32): string {
  return `${prefix}${randomBytes(bytes).toString('base64url')}`;
}

export class OAuthState {
  private grants = new Map<string, Grant>();
  private accessTokens = new Map<string, AccessTokenRecord>();
  private refreshTokens = new Map<string, RefreshTokenRecord>();
  private codes = new Map<string, AuthCodeRecord>();
  private pending = new Map<string, { request: AuthorizationRequest; expiresAt: number }>();
  private queued: QueuedDecision[] = [];
  private nextGrant = 1;

  constructor(
    private readonly options: OAuthOptions,
    private readonly store: MailStore,
    private readonly keys: SigningKeys,
  ) {}

  get clientId(): string | undefined {
    return this.options.clientId;
  }

  private nowMs(): number {
    return this.options.now().getTime();
  }

  private grantKey(email: string, clientId: string): string {
    return `${email.toLowerCase()}\n${clientId}`;
  }

  private activeGrant(email: string, clientId: string): Grant | undefined {
    const grant = this.grants.get(this.grantKey(email, clientId));
    return grant && !grant.revoked ? grant : undefined;
  }

  /**
   * Checks what Google checks before showing consent; problems here are shown to the
   * person, never redirected (the redirect_uri itself may be the problem).
   */
  validateClientAndRedirect(clientId: string | undefined, redirectUri: string | undefined): { status: number; error: string; description: string } | undefined {
    if (!clientId) return { status: 400, error: 'invalid_request', description: 'Missing required parameter: client_id' };
    if (this.options.clientId && clientId !== this.options.clientId) {
      return { status: 401, error: 'invalid_client', description: 'The OAuth client was not found.' };
    }
    if (!redirectUri) return { status: 400, error: 'invalid_request', description: 'Missing required parameter: redirect_uri' };
    let parsed: URL;
    try {
      parsed = new URL(redirectUri);
    } catch {
      return { status: 400, error: 'invalid_request', description: 'Invalid parameter value for redirect_uri: Not an absolute URI' };
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      return { status: 400, error: 'invalid_request', description: 'Invalid parameter value for redirect_uri: must be http or https' };
    }
    if (this.options.redirectUris && !this.options.redirectUris.includes(redirectUri)) {
      return { status: 400, error: 'redirect_uri_mismatch', description: `The redirect URI in the request, ${redirectUri}, does not match the ones authorized for the OAuth client.` };
    }
    return undefined;
  }

  queueDecision(decision: QueuedDecision): void {
    this.queued.push(decision);
  }

  takeQueuedDecision(): QueuedDecision | undefined {
    return this.queued.shift();
  }

  hasActiveGrant(email: string, clientId: string): boolean {
    return Boolean(this.activeGrant(email, clientId));
  }

  remember(request: AuthorizationRequest): string {
    const id = token('', 18);
    const now = this.nowMs();
    for (const [key, entry] of this.pending) if (entry.expiresAt < now) this.pending.delete(key);
    this.pending.set(id, { request, expiresAt: now + PENDING_TTL_MS });
    return id;
  }

  recall(id: string): AuthorizationRequest | undefined {
    const entry = this.pending.get(id);
    if (!entry || entry.expiresAt < this.nowMs()) return undefined;
    this.pending.delete(id);
    return entry.request;
  }

  /** Consent given: records the grant and returns a single-use code. */
  approve(request: AuthorizationRequest, email: string, kind?: MailboxKind): { code: string; mailbox: Mailbox; scopes: string[] } {
    const mailbox = this.store.createMailbox({ email, kind });
    const existing = this.activeGrant(mailbox.email, request.clientId);
    const hadRefreshToken = existing ? [...this.refreshTokens.values()].some((r) => r.grant === existing) : false;
    const grant: Grant = existing ?? { id: `grant-${this.nextGrant++}`, email: mailbox.email, clientId: request.clientId, scopes: new Set(), revoked: false };
    const scopes = request.includeGrantedScopes ? [...new Set([...grant.scopes, ...request.scopes])] : [...new Set(request.scopes)];
    request.scopes.forEach((s) => grant.scopes.add(s));
    this.grants.set(this.grantKey(mailbox.email, request.clientId), grant);

    const code = token('4/0Sbx', 30);
    this.codes.set(code, {
      grant,
      request,
      scopes,
      // Google hands out a refresh token on first consent only, unless prompt=consent forces a new one.
      issueRefreshToken: request.accessType === 'offline' && (!hadRefreshToken || request.prompt.includes('consent')),
      expiresAt: this.nowMs() + CODE_TTL_MS,
      used: false,
    });
    return { code, mailbox, scopes };
  }

  /** The mailbox a token-endpoint request acts for, so faults can target it before it runs. */
  mailboxForTokenRequest(body: Record<string, string | undefined>): string | undefined {
    if (body['grant_type'] === 'authorization_code' && body['code']) return this.codes.get(body['code'])?.grant.email;
    if (body['grant_type'] === 'refresh_token' && body['refresh_token']) return this.refreshTokens.get(body['refresh_token'])?.grant.email;
    return undefined;
  }

  private authenticateClient(body: Record<string, string | undefined>, authorization: string | undefined): string {
    let clientId = body['client_id'];
    let clientSecret = body['client_secret'];
    const basic = /^Basic\s+(.+)$/i.exec(authorization ?? '');
    if (basic) {
      const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      clientId = decodeURIComponent(decoded.slice(0, colon));
      clientSecret = decodeURIComponent(decoded.slice(colon + 1));
    }
    if (!clientId) throw new OAuthError(400, 'invalid_request', 'Could not determine client ID from request.');
    if (this.options.clientId && clientId !== this.options.clientId) throw new OAuthError(401, 'invalid_client', 'The OAuth client was not found.');
    if (this.options.clientSecret && !(clientSecret && secureEqual(clientSecret, this.options.clientSecret))) {
      throw new OAuthError(401, 'invalid_client', 'Unauthorized');
    }
    return clientId;
  }

  private issueAccessToken(grant: Grant, scopes: string[]): { accessToken: string; expiresIn: number } {
    const accessToken = token('ya29.sandbox-', 48);
    const expiresIn = this.options.accessTokenTtlSeconds;
    this.accessTokens.set(accessToken, { grant, scopes, expiresAt: this.nowMs() + expiresIn * 1000 });
    return { accessToken, expiresIn };
  }

  private idToken(grant: Grant, scopes: string[], nonce: string | undefined): string | undefined {
    if (!scopes.some((s) => ID_TOKEN_SCOPES.has(s))) return undefined;
    const mailbox = this.store.find(grant.email);
    const iat = Math.floor(this.nowMs() / 1000);
    return this.keys.signJwt({
      iss: this.options.issuer,
      azp: grant.clientId,
      aud: grant.clientId,
      sub: mailbox?.sub ?? grant.email,
      email: grant.email,
      email_verified: true,
      ...(mailbox?.kind === 'workspace' ? { hd: grant.email.split('@')[1] } : {}),
      ...(nonce ? { nonce } : {}),
      iat,
      exp: iat + 3600,
    });
  }

  exchange(body: Record<string, string | undefined>, authorization: string | undefined): TokenResponse {
    const grantType = body['grant_type'];
    if (grantType === 'authorization_code') return this.exchangeCode(body, authorization);
    if (grantType === 'refresh_token') return this.refresh(body, authorization);
    throw new OAuthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grantType ?? ''}`);
  }

  private exchangeCode(body: Record<string, string | undefined>, authorization: string | undefined): TokenResponse {
    const clientId = this.authenticateClient(body, authorization);
    const code = body['code'];
    if (!code) throw new OAuthError(400, 'invalid_request', 'Missing required parameter: code');
    const record = this.codes.get(code);
    if (!record) throw new OAuthError(400, 'invalid_grant', 'Malformed auth code.');
    if (record.used) throw new OAuthError(400, 'invalid_grant', 'Bad Request: the authorization code was already redeemed.');
    if (record.expiresAt < this.nowMs()) throw new OAuthError(400, 'invalid_grant', 'Bad Request: the authorization code has expired.');
    if (record.request.clientId !== clientId) throw new OAuthError(400, 'invalid_grant', 'Bad Request: the code was issued to another client.');
    if (body['redirect_uri'] !== record.request.redirectUri) throw new OAuthError(400, 'redirect_uri_mismatch', 'Bad Request');
    if (record.request.codeChallenge) {
      const verifier = body['code_verifier'];
      if (!verifier) throw new OAuthError(400, 'invalid_grant', 'Missing code verifier.');
      const computed = record.request.codeChallengeMethod === 'plain' ? verifier : createHash('sha256').update(verifier).digest('base64url');
      if (!secureEqual(computed, record.request.codeChallenge)) throw new OAuthError(400, 'invalid_grant', 'Invalid code verifier.');
    }
    if (record.grant.revoked) throw new OAuthError(400, 'invalid_grant', 'Token has been expired or revoked.');
    record.used = true;

    const { accessToken, expiresIn } = this.issueAccessToken(record.grant, record.scopes);
    const response: TokenResponse = { access_token: accessToken, expires_in: expiresIn, scope: record.scopes.join(' '), token_type: 'Bearer' };
    if (record.issueRefreshToken) {
      const refreshToken = token('1//sbx', 48);
      this.refreshTokens.set(refreshToken, { grant: record.grant, scopes: record.scopes });
      response.refresh_token = refreshToken;
    }
    const idToken = this.idToken(record.grant, record.scopes, record.request.nonce);
    if (idToken) response.id_token = idToken;
    return response;
  }

  private refresh(body: Record<string, string | undefined>, authorization: string | undefined): TokenResponse {
    const clientId = this.authenticateClient(body, authorization);
    const refreshToken = body['refresh_token'];
    if (!refreshToken) throw new OAuthError(400, 'invalid_request', 'Missing required parameter: refresh_token');
    const record = this.refreshTokens.get(refreshToken);
    if (!record || record.grant.revoked) throw new OAuthError(400, 'invalid_grant', 'Token has been expired or revoked.');
    if (record.grant.clientId !== clientId) throw new OAuthError(401, 'unauthorized_client', 'Unauthorized');
    const { accessToken, expiresIn } = this.issueAccessToken(record.grant, record.scopes);
    const response: TokenResponse = { access_token: accessToken, expires_in: expiresIn, scope: record.scopes.join(' '), token_type: 'Bearer' };
    const idToken = this.idToken(record.grant, record.scopes, undefined);
    if (idToken) response.id_token = idToken;
    return response;
  }

  /** Revoking any token of a grant revokes the whole grant. False when the token is unknown or already dead. */
  revokeToken(value: string): boolean {
    const grant = this.accessTokens.get(value)?.grant ?? this.refreshTokens.get(value)?.grant;
    if (!grant || grant.revoked) return false;
    this.revokeGrant(grant);
    return true;
  }

  private revokeGrant(grant: Grant): void {
    grant.revoked = true;
    this.grants.delete(this.grantKey(grant.email, grant.clientId));
    for (const [value, record] of this.accessTokens) if (record.grant === grant) this.accessTokens.delete(value);
    for (const [value, record] of this.refreshTokens) if (record.grant === grant) this.refreshTokens.delete(value);
  }

  /** As when the person removes the app from their Google account: every grant of that mailbox ends. */
  revokeMailbox(email: string, clientId?: string): number {
    const targets = [...this.grants.values()].filter((g) => g.email === email.toLowerCase() && (!clientId || g.clientId === clientId));
    targets.forEach((g) => this.revokeGrant(g));
    return targets.length;
  }

  /** Makes live access tokens expire now (all, or one mailbox's); refresh tokens keep working. */
  expireAccessTokens(email?: string): number {
    let count = 0;
    const past = this.nowMs() - 1;
    for (const record of this.accessTokens.values()) {
      if (email && record.grant.email !== email.toLowerCase()) continue;
      if (record.expiresAt > past) {
        record.expiresAt = past;
        count++;
      }
    }
    return count;
  }

  authenticate(accessToken: string | undefined): AccessTokenInfo | undefined {
    if (!accessToken) return undefined;
    const record = this.accessTokens.get(accessToken);
    if (!record || record.grant.revoked || record.expiresAt <= this.nowMs()) return undefined;
    return { email: record.grant.email, clientId: record.grant.clientId, scopes: record.scopes, expiresAt: record.expiresAt };
  }

  grantsOf(email: string): { clientId: string; scopes: string[] }[] {
    return [...this.grants.values()].filter((g) => g.email === email.toLowerCase()).map((g) => ({ clientId: g.clientId, scopes: [...g.scopes] }));
  }

  reset(): void {
    this.grants.clear();
    this.accessTokens.clear();
    this.refreshTokens.clear();
    this.codes.clear();
    this.pending.clear();
    this.queued = [];
  }
}
