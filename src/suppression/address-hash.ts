import { createHmac } from 'node:crypto';
import { addressKey } from '../contacts/email-address.js';

/**
 * The keyed one-way hash of an address: HMAC-SHA256 under `SUPPRESSION_HASH_KEY` of the
 * address's comparison key (contacts/email-address.ts `addressKey`, trimmed and lowercased).
 * A bare SHA-256 would be reversed by hashing a list of known addresses; without the key
 * nobody can. It is how an opt-out outlives the contact it came from (P-08 after P-13):
 * the purge clears the address and keeps this hash, and contacts, recipients and 1:1
 * sends carry the same hash so the one suppression rule still matches.
 */
export type AddressHasher = (email: string) => string;

export function createAddressHasher(key: string): AddressHasher {
  return (email) => createHmac('sha256', key).update(addressKey(email)).digest('hex');
}
