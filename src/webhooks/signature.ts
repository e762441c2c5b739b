import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/*
 * `Inboxtrail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, with one
 * `v1=` per secret in force: during a rotation's grace period both the new and the old
 * secret sign, so a receiver that still knows only the old one keeps verifying.
 */

export const SIGNATURE_HEADER = 'Inboxtrail-Signature';

/** `whsec_` and 32 random bytes: shown once, then only its sealed form is kept. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

export function signatureOf(secret: string, timestamp: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

export function signatureHeader(secrets: readonly string[], timestamp: number, body: string): string {
  return [`t=${timestamp}`, ...secrets.map((secret) => `v1=${signatureOf(secret, timestamp, body)}`)].join(',');
}

/** What a receiver does (README "Verifying a delivery"): true when one v1 matches and t is recent. */
export function verifySignatureHeader(header: string, secret: string, body: string, options: { nowSeconds?: number; toleranceSeconds?: number } = {}): boolean {
  const parts = header.split(',').map((part) => part.trim().split('='));
  const timestamp = Number(parts.find(([key]) => key === 't')?.[1]);
  if (!Number.isInteger(timestamp)) return false;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(signatureOf(secret, timestamp, body), 'hex');
  return parts
    .filter(([key, value]) => key === 'v1' && value && /^[0-9a-f]{64}$/.test(value))
    .some(([, value]) => timingSafeEqual(Buffer.from(value!, 'hex'), expected));
}
