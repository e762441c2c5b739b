import type { Request, Response } from 'express';
import type { FaultBook, SandboxEndpoint } from './faults.js';
import { GoogleApiError, type OAuthError } from './google-errors.js';
import type { OAuthState } from './oauth.js';
import type { PushHub } from './push.js';
import type { SigningKeys } from './signing.js';
import type { MailStore } from './store.js';

/** Everything the sandbox's routers share: one in-memory world per sandbox. */
export interface SandboxContext {
  store: MailStore;
  oauth: OAuthState;
  faults: FaultBook;
  push: PushHub;
  keys: SigningKeys;
  now: () => Date;
  autoApprove: boolean;
  enforceScopes: boolean;
  /** `iss` of id tokens the sandbox signs. */
  issuer: string;
}

/** Counts the call once the response is finished, with whatever mailbox it ended up acting for. */
export function trackCall(ctx: SandboxContext, res: Response, endpoint: SandboxEndpoint): { mailbox?: string; faulted: boolean; messageId?: string } {
  const call: { mailbox?: string; faulted: boolean; messageId?: string } = { faulted: false };
  const receivedAt = ctx.now().toISOString();
  res.on('finish', () => {
    ctx.faults.record({
      endpoint,
      mailbox: call.mailbox,
      status: res.statusCode,
      faulted: call.faulted,
      at: ctx.now().toISOString(),
      receivedAt,
      ...(call.messageId ? { messageId: call.messageId } : {}),
    });
  });
  return call;
}

export function sendGoogleError(res: Response, error: GoogleApiError | OAuthError): void {
  res
    .status(error.status)
    .set(error instanceof GoogleApiError ? error.headers() : error.headers)
    .json(error.toBody());
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A query value that may repeat (`labelIds=A&labelIds=B`) as a list. */
export function queryList(req: Request, name: string): string[] {
  const value = req.query[name];
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.filter((v): v is string => typeof v === 'string').flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

export function queryString(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (Array.isArray(value)) return typeof value[0] === 'string' ? value[0] : undefined;
  return typeof value === 'string' ? value : undefined;
}
