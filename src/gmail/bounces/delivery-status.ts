import type { RawRecipient } from './types.js';

/*
 * RFC 3464 `message/delivery-status`: a per-message block, then one block per recipient
 * (Final-Recipient, Action, Status, Diagnostic-Code). Field names are case-insensitive and
 * values may be folded; Exchange and others write `Action: Failed`, `rfc822;addr`, `<addr>`.
 */

/** Unfolded `Name: value` fields of one RFC 822-style block, names lowercased (the first of each wins). */
export function parseFields(block: string): Map<string, string> {
  const fields = new Map<string, string>();
  const unfolded = block.replace(/\r?\n[ \t]+/g, ' ');
  for (const line of unfolded.split(/\r?\n/)) {
    const match = /^([A-Za-z0-9-]+)\s*:\s*(.*)$/.exec(line);
    if (match && !fields.has(match[1]!.toLowerCase())) fields.set(match[1]!.toLowerCase(), match[2]!.trim());
  }
  return fields;
}

/** `rfc822; Bob@Example.com` / `<bob@example.com>` / `bob@example.com` → bob@example.com. */
export function addressOfField(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const address = value
    .replace(/^[^;]*;\s*/, '')
    .replace(/^<|>$/g, '')
    .trim()
    .toLowerCase();
  return /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/.test(address) ? address : undefined;
}

/**
 * The recipients a delivery-status body reports as failed or delayed. Success reports
 * (`delivered`, `relayed`, `expanded`) are not bounces and are left out.
 */
export function parseDeliveryStatus(text: string): RawRecipient[] {
  const blocks = text.split(/\r?\n[ \t]*\r?\n/).map(parseFields);
  const recipients: RawRecipient[] = [];
  for (const fields of blocks) {
    const address = addressOfField(fields.get('final-recipient')) ?? addressOfField(fields.get('original-recipient'));
    if (!address) continue;
    const originalRecipient = addressOfField(fields.get('original-recipient'));
    const action = fields.get('action')?.toLowerCase().trim();
    const status = /^([245])\.\d{1,3}\.\d{1,3}/.exec(fields.get('status') ?? '')?.[0];
    if (action && action !== 'failed' && action !== 'delayed') continue;
    if (!action && status?.startsWith('2')) continue;
    recipients.push({
      address,
      ...(originalRecipient && originalRecipient !== address ? { originalRecipient } : {}),
      // No Action field: a 4.x.x status is still being retried, anything else failed.
      action: action === 'delayed' || (!action && status?.startsWith('4')) ? 'delayed' : 'failed',
      ...(status ? { status } : {}),
      ...(fields.get('diagnostic-code') ? { diagnostic: fields.get('diagnostic-code')!.replace(/^[a-z0-9-]+;\s*/i, '') } : {}),
    });
  }
  return recipients;
}
