import { contacts } from '../db/schema.js';

/*
 * The contact columns other features read, named once: what a template merges and the
 * recipient's "don't track me" choice (campaigns), and what the data-subject export shows
 * (privacy). A column added to what a person is told about themselves belongs here.
 */

/** Attributes one contact may hold: a request may name as many (contacts.routes.ts), an import's columns too (import-columns.ts). */
export const MAX_CONTACT_ATTRIBUTES = 100;

/** Who the contact is and what a template may merge (`{{firstName}}`, `{{attributes.x}}`). */
export const contactMergeColumns = {
  id: contacts.id,
  email: contacts.email,
  firstName: contacts.firstName,
  lastName: contacts.lastName,
  attributes: contacts.attributes,
} as const;

/** What a send needs of its recipient: the merge fields, and "don't track my opens and clicks" (their mail goes out untracked). */
export const contactRecipientColumns = { ...contactMergeColumns, trackingRefusedAt: contacts.trackingRefusedAt } as const;

/** A contact as the data-subject export and legal disclosures show it. */
export const contactRecordColumns = { ...contactRecipientColumns, createdAt: contacts.createdAt, updatedAt: contacts.updatedAt } as const;

/** How many of the newest consent records, and of the newest messages, a contact's page shows (its timeline). */
export const TIMELINE_ENTRIES = 200;
