import type { Request } from 'express';
import { AppError } from '../errors.js';
import { html } from './html.js';

/**
 * A posted form as the API's schemas expect it: the CSRF field dropped and empty fields
 * absent (a browser sends "" for a field left blank, where a JSON client would omit it).
 */
export function formInput(req: Request): Record<string, string> {
  const body = (req.body ?? {}) as Record<string, unknown>;
  const fields: Record<string, string> = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === '_csrf' || typeof value !== 'string' || value.trim() === '') continue;
    fields[key] = value;
  }
  return fields;
}

/** A 4xx the person can fix shows on the form they sent; anything else goes to the error page. */
export function formProblem(error: unknown): { status: number; message: string } {
  if (error instanceof AppError && error.status < 500) {
    return { status: error.status, message: error.message };
  }
  throw error;
}

export const errorNotice = (message: string | undefined) => (message ? html`<p class="notice error" role="alert">${message}</p>` : '');
