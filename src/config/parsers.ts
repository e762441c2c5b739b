import { z } from 'zod';

/**
 * Value parsers of the environment schema (src/config/schema.ts): each turns one variable's text
 * into a typed value or a problem naming the rule, never the value (some of these are secrets).
 */

/** `v1:<base64 of 32 bytes>,v2:…` — the last key encrypts, every key decrypts. */
export const encryptionKeyList = z.string().transform((raw, ctx) => {
  const keys: { version: string; key: Buffer }[] = [];
  for (const entry of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const match = /^(v\d+):(.+)$/.exec(entry);
    const key = match ? Buffer.from(match[2]!, 'base64') : undefined;
    if (!match || !key || key.length !== 32) {
      ctx.addIssue({ code: 'custom', message: 'each entry must be vN:<base64 of exactly 32 bytes>' });
      return z.NEVER;
    }
    keys.push({ version: match[1]!, key });
  }
  if (keys.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'at least one key is required' });
    return z.NEVER;
  }
  if (new Set(keys.map((k) => k.version)).size !== keys.length) {
    ctx.addIssue({ code: 'custom', message: 'key versions must be unique' });
    return z.NEVER;
  }
  return keys;
});

/**
 * `v1:<secret>,v2:<secret>` or bare secrets (taken as v1, v2… in order); the last one signs, all
 * verify. A link carries its key's version, so a list that gives one version twice, or mixes
 * named and bare entries (whose positions then name versions too), could silently stop old links
 * working — unsubscribe links included: refused at boot.
 */
export const signingSecretList = z.string().transform((raw, ctx) => {
  const entries = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const named = entries.map((entry) => /^v(\d+):(.+)$/.exec(entry));
  const secrets = entries.map((entry, index) => {
    const match = named[index];
    return match ? { version: `v${Number(match[1])}`, secret: match[2]! } : { version: `v${index + 1}`, secret: entry };
  });
  const problem =
    secrets.length === 0 || secrets.some((s) => s.secret.length < 32)
      ? 'each secret must be at least 32 characters'
      : named.some(Boolean) && !named.every(Boolean)
        ? 'name every version (v1:…,v2:…) or none: a bare secret beside named ones takes its position as its version'
        : secrets.some((s) => Number(s.version.slice(1)) > 255)
          ? 'versions go from v0 to v255'
          : new Set(secrets.map((s) => s.version)).size !== secrets.length
            ? 'each version may be given once'
            : undefined;
  if (problem) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  return secrets;
});

export const optionalUrl = z.url({ protocol: /^https?$/ }).optional();
export const emptyAsUndefined = (value: unknown) => (value === '' ? undefined : value);
