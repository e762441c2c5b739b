import type { Request, Response } from 'express';
import { AppError, TooManyRequestsError } from '../errors.js';
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

/**
 * A 4xx the person can fix shows on the form they sent; anything else goes to the error page.
 * A throttle's 429 also sets Retry-After on `res`, as the API's error middleware does.
 */
export function formProblem(error: unknown, res?: Response): { status: number; message: string } {
  if (error instanceof AppError && error.status < 500) {
    if (res && error instanceof TooManyRequestsError && error.retryAfterSeconds) res.setHeader('Retry-After', String(error.retryAfterSeconds));
    return { status: error.status, message: error.message };
  }
  throw error;
}

/**
 * Runs a form's action; a 4xx it raises is shown by `show` (the page of the form that was sent,
 * with the message and that status), anything else goes to the error page.
 */
export function formRunner(show: (req: Request, res: Response, problem: { status: number; message: string }) => Promise<void>) {
  return async (req: Request, res: Response, action: () => Promise<void>) => {
    try {
      await action();
    } catch (error) {
      await show(req, res, formProblem(error, res));
    }
  };
}

/** Checkbox groups arrive as a string (one ticked) or an array (several); none ticked is absent. */
export function ticked(req: Request, name: string): string[] {
  const value = ((req.body ?? {}) as Record<string, unknown>)[name];
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** The ` checked` of a box or radio shown ticked (a form re-rendered with what was sent). */
export const checked = (yes: boolean) => (yes ? html` checked` : '');

export const errorNotice = (message: string | undefined, id?: string) =>
  message ? html`<p${id ? html` id="${id}"` : ''} class="notice error" role="alert">${message}</p>` : '';

/** The 4xx of one form on a page of several, and which form it was (the page's own names). */
export interface FormError<Form extends string> {
  form: Form;
  message: string;
}

/**
 * The forms of a page of several, by the page's names for them:
 * - `notice(form)`: the message of a refused form, to put above that form (nothing beside any
 *   other form), with the id `<form>-error`;
 * - `action(path, form)`: that form's action, `path#<form>-error`. A browser keeps the action's
 *   fragment on the page that answers the POST (and on the page a 303 without a fragment of its
 *   own leads to), so a refused form's page opens at its message, where the person was, not at
 *   the top — without JavaScript. The id is on a refused form's message only: a success (a page
 *   with a secret or a `?notice=` at its top) has no such element and opens at the top.
 */
export function pageForms<Form extends string>(error: FormError<Form> | undefined) {
  const id = (form: Form) => `${form}-error`;
  return {
    notice: (form: Form) => (error?.form === form ? errorNotice(error.message, id(form)) : ''),
    action: (path: string, form: Form) => `${path}#${id(form)}`,
  };
}

/**
 * A refused webhook URL as it goes back into the form: without a user name or password (the
 * API refuses URLs carrying them, and a password sent must not come back in a page). Text that
 * is not an http(s) URL keeps no "@", since credentials could hide there in a shape URL cannot read.
 */
export function urlWithoutCredentials(typed: string): string {
  let url: URL | undefined;
  try {
    url = new URL(typed);
  } catch {
    // Not a URL at all (URL.parse would say so without throwing, but only from Node 20.18).
  }
  if (url && (url.protocol === 'http:' || url.protocol === 'https:')) {
    if (url.username === '' && url.password === '') return typed;
    url.username = '';
    url.password = '';
    return url.href;
  }
  return typed.includes('@') ? '' : typed;
}
