import { z } from 'zod';

const emailShape = z.email();

/**
 * The one way a recipient address is stored: trimmed, the domain lowercased (domains are
 * case-insensitive; local parts are kept as given). Compared, it is `addressKey` (below).
 * Returns undefined for anything that is not a single valid address.
 */
export function normalizeEmailAddress(raw: string): string | undefined {
  const trimmed = raw.trim();
  // Header injection guard: an address never spans lines.
  if (/[\r\n]/.test(trimmed) || trimmed.length > 254) return undefined;
  const at = trimmed.lastIndexOf('@');
  if (at <= 0 || at === trimmed.length - 1) return undefined;
  const normalized = `${trimmed.slice(0, at)}@${trimmed.slice(at + 1).toLowerCase()}`;
  return emailShape.safeParse(normalized).success ? normalized : undefined;
}

/**
 * The one way two addresses are compared: the whole address, trimmed and without case — what
 * `lower(email)` is in SQL of a stored (already trimmed) address: the unique index of live
 * contacts, the suppression list's index, the address locks. Gmail's aliases and the like are
 * other addresses (suppression/README.md). The keyed hash (suppression/address-hash.ts) is of
 * this key, so matching by address and by hash agree.
 */
export const addressKey = (email: string) => email.trim().toLowerCase();

/** A zod field for request bodies: validates and normalizes in one step. */
export const emailAddressField = z.string().transform((raw, ctx) => {
  const normalized = normalizeEmailAddress(raw);
  if (!normalized) {
    ctx.addIssue({ code: 'custom', message: 'must be a valid email address' });
    return z.NEVER;
  }
  return normalized;
});
