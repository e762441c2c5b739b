import { ValidationError } from '../errors.js';

/** Keyset pagination: an opaque cursor naming the last row's (created_at, id). */
export interface PageCursor {
  createdAt: Date;
  id: string;
}

export const encodeCursor = (row: PageCursor) => Buffer.from(`${row.createdAt.toISOString()}|${row.id}`).toString('base64url');

export function decodeCursor(cursor: string): PageCursor {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const createdAt = new Date(at ?? '');
  if (!id || !/^[0-9a-f-]{36}$/.test(id) || Number.isNaN(createdAt.getTime())) {
    throw new ValidationError([{ field: 'cursor', message: 'is not a cursor this API returned' }]);
  }
  return { createdAt, id };
}
