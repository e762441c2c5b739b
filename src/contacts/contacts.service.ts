import { actorOf } from '../auth/actor.js';
import { keysetPage, type PageCursor } from '../http/cursor.js';
import type { AuthContext } from '../auth/auth.service.js';
import type { ConsentStatus } from '../db/schema.js';
import { BusyError, ConflictError, NotFoundError, ValidationError } from '../errors.js';
import { ADDRESS_CHANGE_WAIT_SECONDS } from '../suppression/address-lock.js';
import type { Readable } from 'node:stream';
import { importContactsCsv } from './contacts-import.js';
import type { ColumnMapping } from './import-columns.js';
import { MAX_CONTACT_ATTRIBUTES, TIMELINE_ENTRIES } from './contact-columns.js';
import { deletionRequested, purgeDate, requesterOf } from '../privacy/deletion.js';
import { seesMessageSubject } from '../privacy/gmail-guard.js';
import type { ConsentRow, ContactFields, ContactRow, ContactsRepo } from './contacts.repo.js';

export type AttributeValue = string | number | boolean | null;

function presentConsent(consent: ConsentRow | undefined) {
  if (!consent) return null;
  return { id: consent.id, status: consent.status, source: consent.source, policyVersion: consent.policyVersion, actor: consent.actor, at: consent.at };
}

function presentContact(contact: ContactRow, consent: ConsentRow | undefined) {
  return {
    id: contact.id,
    email: contact.email,
    firstName: contact.firstName,
    lastName: contact.lastName,
    attributes: contact.attributes,
    consent: presentConsent(consent),
    createdAt: contact.createdAt,
    updatedAt: contact.updatedAt,
  };
}


/** JSON merge patch (RFC 7396) for attributes: a null value removes the key. */
function mergeAttributes(current: Record<string, unknown>, patch: Record<string, AttributeValue>) {
  const merged: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

export function createContactsService(deps: {
  repo: ContactsRepo;
  policyVersion: string;
  /** P-13: days between a deletion and its purge. */
  purgeAfterDays: number;
  now?: () => Date;
  /** Opens and clicks of each campaign mail the contact got, human numbers first (from tracking). */
  campaignEngagement?: (workspaceId: string, contactId: string) => Promise<unknown[]>;
  /** Throws when the caller no longer may act (a key revoked, a member removed): asked before each batch of an import. */
  recheckCaller?: (auth: AuthContext) => Promise<void>;
}) {
  const { repo } = deps;
  const now = deps.now ?? (() => new Date());

  async function requireContact(auth: AuthContext, id: string): Promise<ContactRow> {
    const contact = await repo.findById(auth.workspaceId, id);
    if (!contact) throw new NotFoundError('Contact');
    return contact;
  }

  const duplicate = (email: string) => new ConflictError('contact_exists', `A contact with the address ${email} already exists`);

  return {
    async create(auth: AuthContext, input: { email: string; firstName?: string; lastName?: string; attributes?: Record<string, AttributeValue> }) {
      const fields: ContactFields = {
        email: input.email,
        firstName: input.firstName ?? null,
        lastName: input.lastName ?? null,
        attributes: mergeAttributes({}, input.attributes ?? {}),
      };
      const contact = await repo.insert(auth.workspaceId, fields);
      if (!contact) throw duplicate(input.email);
      return presentContact(contact, undefined);
    },

    async list(auth: AuthContext, query: { limit: number; cursor?: PageCursor; q?: string }) {
      const rows = await repo.list(auth.workspaceId, {
        limit: query.limit + 1,
        before: query.cursor,
        search: query.q,
      });
      const { page, nextCursor } = keysetPage(rows, query.limit);
      const latest = await repo.latestConsents(auth.workspaceId, page.map((c) => c.id));
      return { contacts: page.map((c) => presentContact(c, latest.get(c.id))), nextCursor };
    },

    /** One contact with its timeline: everything that happened to it, newest first. */
    async get(auth: AuthContext, id: string) {
      const contact = await requireContact(auth, id);
      // The newest of each, as the messages always were: a long consent history (one record per
      // import that changed it, per preference-center visit) pages on GET …/consents instead.
      const [history, mail] = await Promise.all([repo.listConsents(auth.workspaceId, id, { limit: TIMELINE_ENTRIES }), repo.listMessagesOfContact(auth.workspaceId, id)]);
      const consentEntries = history.map((c) => ({ type: 'consent' as const, at: c.at, status: c.status, source: c.source, actor: c.actor }));
      const messageEntries = mail.map((m) => {
        return {
          type: 'message' as const,
          at: m.at,
          messageId: m.id,
          direction: m.direction,
          status: m.status,
          from: m.fromAddress,
          to: m.toAddresses,
          cc: m.ccAddresses,
          subject: seesMessageSubject(auth, m) ? m.subject : null,
          events: m.events.map((e) => ({
            type: e.type,
            at: new Date(e.at),
            ...(e.type === 'bounce' || e.type === 'delay' ? { kind: e.kind, status: e.status } : {}),
          })),
        };
      });
      const timeline = [...consentEntries, ...messageEntries].sort((a, b) => b.at.getTime() - a.at.getTime());
      const campaignMail = deps.campaignEngagement ? await deps.campaignEngagement(auth.workspaceId, id) : [];
      return { ...presentContact(contact, history[0]), timeline, campaignMail };
    },

    async update(
      auth: AuthContext,
      id: string,
      patch: { email?: string; firstName?: string | null; lastName?: string | null; attributes?: Record<string, AttributeValue> },
    ) {
      const existing = await requireContact(auth, id);
      const { attributes, ...rest } = patch;
      const merged = attributes ? mergeAttributes(existing.attributes, attributes) : undefined;
      // The request's own limit is per request; this one is the contact's, whatever patches came
      // before. A patch that does not add to a contact already past it (a CSV import merges without
      // this check) still goes through: removing some must stay possible.
      const count = merged ? Object.keys(merged).length : 0;
      if (merged && count > MAX_CONTACT_ATTRIBUTES && count > Object.keys(existing.attributes).length) {
        throw new ValidationError([{ field: 'attributes', message: `a contact has at most ${MAX_CONTACT_ATTRIBUTES} attributes; remove some (a null value removes one)` }]);
      }
      const updated = await repo.update(auth.workspaceId, id, { ...rest, ...(merged ? { attributes: merged } : {}) });
      if (updated === 'conflict') throw duplicate(patch.email!);
      if (updated === 'busy') {
        throw new BusyError('audience_being_launched', 'A campaign launch is writing this workspace\'s audience; change the address again in a few seconds', ADDRESS_CHANGE_WAIT_SECONDS);
      }
      if (!updated) throw new NotFoundError('Contact');
      const latest = await repo.latestConsents(auth.workspaceId, [id]);
      return presentContact(updated, latest.get(id));
    },

    /**
     * P-13: the contact disappears from every API at once and is purged for real after
     * `purgeAfterDays` (privacy/purge.service.ts). Its opt-outs stay in the suppression list.
     */
    async remove(auth: AuthContext, id: string) {
      const at = now();
      const purgeAfter = purgeDate(at, deps.purgeAfterDays);
      await repo.transaction(async (tx) => {
        if (!(await tx.markDeleted(auth.workspaceId, id, at, purgeAfter))) throw new NotFoundError('Contact');
        await tx.audit(deletionRequested(requesterOf(auth), 'contact', id, purgeAfter));
      });
      return { purgeAfter };
    },

    /** Consent is history (P-11): a new record is appended, none is ever edited. */
    async recordConsent(auth: AuthContext, contactId: string, input: { status: ConsentStatus; source: string; policyVersion?: string }) {
      await requireContact(auth, contactId);
      const consent = await repo.appendConsent(
        {
          workspaceId: auth.workspaceId,
          contactId,
          status: input.status,
          source: input.source,
          policyVersion: input.policyVersion ?? deps.policyVersion,
          actor: actorOf(auth),
        },
        { actor: actorOf(auth), requestId: auth.requestId },
      );
      return presentConsent(consent);
    },

    /**
     * A CSV file of contacts, and their consents where it has a consent column (P-10), recorded
     * as `import:<who imported>` under the policy version in force. `mapping`: column header →
     * meaning, for an import UI that lets a person map columns (see import-columns.ts).
     */
    importCsv(auth: AuthContext, csv: Readable, options: { onAddress?: (email: string) => void; mapping?: ColumnMapping } = {}) {
      // No transaction around the file: see contacts-import.ts (batches, each atomic and idempotent).
      // A key revoked or a member removed while the file is written stops it at the next batch.
      const { recheckCaller } = deps;
      return importContactsCsv(repo, auth.workspaceId, csv, {
        ...options,
        consent: { policyVersion: deps.policyVersion, actor: `import:${actorOf(auth)}` },
        beforeBatch: recheckCaller && (() => recheckCaller(auth)),
      });
    },

    /** The consent history, newest first, a page at a time (`nextCursor` null on the last). */
    async listConsents(auth: AuthContext, contactId: string, query: { limit: number; cursor?: PageCursor }) {
      await requireContact(auth, contactId);
      const { page, nextCursor } = keysetPage(await repo.listConsents(auth.workspaceId, contactId, { limit: query.limit + 1, before: query.cursor }), query.limit);
      return { consents: page.map((c) => presentConsent(c)!), nextCursor };
    },
  };
}

export type ContactsService = ReturnType<typeof createContactsService>;
