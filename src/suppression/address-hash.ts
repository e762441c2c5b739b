import { createHmac } from 'node:crypto';

/**
 * The keyed one-way hash of an address: HMAC-SHA256 under `SUPPRESSION_HASH_KEY` of the
 * address trimmed and lowercased (the same normalization every suppression match uses).
 * A bare SHA-256 would be reversed by hashing a list of known addresses; without the key
 * nobody can. It is how an opt-out outlives the contact it came from (P-08 after P-13):
 * the purge clears the address and keeps this hash, and contacts, recipients and 1:1
 * sends carry the same hash so the one suppression rule still matches.
 */
export type AddressHasher = (email: string) => string;

export const normalizeAddress = (email: string) => email.trim().toLowerCase();

export function createAddressHasher(key: string): AddressHasher {
  return (email) => createHmac('sha256', key).update(normalizeAddress(email)).digest('hex');
}
