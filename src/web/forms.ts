import type { Request, Response } from 'express';
import { AppError, TooManyRequestsError, ValidationError } from '../errors.js';
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

/**
 * The checkbox groups of our forms: the only fields a page sends more than once. Every other field
 * is one value, and a page reads it as one (formInput, the CSRF check); sent twice, the parsers
 * gave either the last value (multipart) or a list the page then dropped as "not a string"
 * (urlencoded: an optional field lost, a required one "missing", two CSRF tokens "out of date").
 * `refuseRepeatedFields` refuses that (400) for both encodings; a new group is added here, and
 * `ticked` takes only these names, so a group cannot be read without being allowed to repeat.
 */
export const CHECKBOX_GROUPS = ['scopes', 'eventTypes', 'mailboxIds', 'kinds', 'windowDays'] as const;
export type CheckboxGroup = (typeof CHECKBOX_GROUPS)[number];
const isCheckboxGroup = (name: string): name is CheckboxGroup => (CHECKBOX_GROUPS as readonly string[]).includes(name);

/**
 * A posted form (urlencoded or multipart, parsed to one value or a list of the values of a name):
 * a field other than a checkbox group given more than once is a 400 `validation_failed` naming it,
 * before the CSRF check or any page reads the form. Browsers never send one such form of ours.
 */
export function assertSingleValuedFields(body: unknown): void {
  if (body === null || typeof body !== 'object') return;
  const repeated = Object.entries(body as Record<string, unknown>).filter(([name, value]) => Array.isArray(value) && !isCheckboxGroup(name));
  if (repeated.length) throw new ValidationError(repeated.map(([field]) => ({ field, message: 'was sent more than once (a form field takes one value)' })));
}

/** Checkbox groups arrive as a string (one ticked) or an array (several); none ticked is absent. */
export const ticked = (req: Request, name: CheckboxGroup): string[] => tickedIn(req.body, name);

/** `ticked` of a posted body (the campaign editor reads its form as a body). */
export function tickedIn(body: unknown, name: CheckboxGroup): string[] {
  const value = ((body ?? {}) as Record<string, unknown>)[name];
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
