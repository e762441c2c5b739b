import { Router, type Request, type RequestHandler } from 'express';
import { z } from 'zod';
import { authOf } from '../auth/auth.middleware.js';
import { AppError, UnsupportedMediaTypeError } from '../errors.js';
import { pageCursorField } from '../http/cursor.js';
import { parseId } from '../http/params.js';
import { parseInput } from '../http/validate.js';
import { MAX_IMPORT_BYTES } from './contacts-import.js';
import { MAX_CONTACT_ATTRIBUTES } from './contact-columns.js';
import type { ContactsService } from './contacts.service.js';
import { emailAddressField } from './email-address.js';
import { ATTRIBUTE_NAME, ATTRIBUTE_NAME_RULE } from './import-columns.js';

const name = z.string().trim().min(1).max(200);
const attributes = z
  .record(
    z.string().regex(ATTRIBUTE_NAME, `attribute names are ${ATTRIBUTE_NAME_RULE}`),
    z.union([z.string().max(2000), z.number(), z.boolean(), z.null()]),
  )
  .refine((value) => Object.keys(value).length <= MAX_CONTACT_ATTRIBUTES, `at most ${MAX_CONTACT_ATTRIBUTES} attributes`);

export const createContactBody = z.object({ email: emailAddressField, firstName: name.optional(), lastName: name.optional(), attributes: attributes.optional() });
export const patchContactBody = z
  .object({ email: emailAddressField, firstName: name.nullable(), lastName: name.nullable(), attributes })
  .partial()
  .strict()
  .refine((value) => Object.keys(value).length > 0, 'give at least one field to change');
export const listContactsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: pageCursorField.optional(),
  q: z.string().trim().min(1).max(200).optional(),
});
export const listConsentsQuery = z.object({
  // 200 by default: the contact page's share of the history; before paging the answer held it all.
  limit: z.coerce.number().int().min(1).max(1000).default(200),
  cursor: pageCursorField.optional(),
});
export const consentBody = z.object({
  status: z.enum(['opted_in', 'opted_out']),
  source: z.string().trim().min(1).max(200),
  policyVersion: z.string().trim().min(1).max(50).optional(),
});

/**
 * A CSV upload: the right content type, and a declared size within the limit (a quick
 * refusal; the limit itself is enforced on the stream by the importer, chunked or not).
 */
export function assertCsvUpload(req: Request): void {
  if (!req.is(['text/csv', 'application/csv'])) throw new UnsupportedMediaTypeError('text/csv');
  if (Number(req.headers['content-length'] ?? 0) > MAX_IMPORT_BYTES) {
    throw new AppError('payload_too_large', 413, `A CSV file may be at most ${MAX_IMPORT_BYTES / 1024 / 1024} MB`);
  }
}

export function contactsRoutes(contacts: ContactsService, authenticated: RequestHandler): Router {
  const router = Router();
  router.use('/contacts', authenticated);

  router.post('/contacts/import', async (req, res) => {
    assertCsvUpload(req);
    res.json(await contacts.importCsv(authOf(req), req));
  });
  router.get('/contacts', async (req, res) => {
    res.json(await contacts.list(authOf(req), parseInput(listContactsQuery, req.query, '(query)')));
  });
  router.post('/contacts', async (req, res) => {
    res.status(201).json(await contacts.create(authOf(req), parseInput(createContactBody, req.body)));
  });
  router.get('/contacts/:id', async (req, res) => {
    res.json(await contacts.get(authOf(req), parseId(req.params.id, 'Contact')));
  });
  router.patch('/contacts/:id', async (req, res) => {
    const id = parseId(req.params.id, 'Contact');
    res.json(await contacts.update(authOf(req), id, parseInput(patchContactBody, req.body)));
  });
  router.delete('/contacts/:id', async (req, res) => {
    await contacts.remove(authOf(req), parseId(req.params.id, 'Contact'));
    res.status(204).end();
  });
  router.get('/contacts/:id/consents', async (req, res) => {
    res.json(await contacts.listConsents(authOf(req), parseId(req.params.id, 'Contact'), parseInput(listConsentsQuery, req.query, '(query)')));
  });
  router.post('/contacts/:id/consents', async (req, res) => {
    const id = parseId(req.params.id, 'Contact');
    res.status(201).json(await contacts.recordConsent(authOf(req), id, parseInput(consentBody, req.body)));
  });
  return router;
}
