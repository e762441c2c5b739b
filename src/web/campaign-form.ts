import type { CampaignStep, SendingWindow } from '../db/schema.js';
import { tickedIn } from './forms.js';

/*
 * The campaign editor's form ⇄ the API's campaign body. The page posts flat fields (one
 * segment condition or follow-up step per numbered row, so it works without JavaScript);
 * this turns them into exactly the JSON the API takes, and the API's own schema judges it.
 */

export const SEGMENT_FIELDS = ['email', 'firstName', 'lastName'] as const;
export const SEGMENT_OPS = ['eq', 'neq', 'contains', 'in', 'exists'] as const;
/** `erased`: the purge writes it where a value named an erased person (it matches nobody); the editor shows it only on a row that has it. */
export const OP_LABELS: Record<(typeof SEGMENT_OPS)[number] | 'erased', string> = {
  eq: 'is',
  neq: 'is not',
  contains: 'contains',
  in: 'is one of (comma-separated)',
  exists: 'has a value',
  erased: 'named an erased person (matches nobody)',
};
/** Tests that take no value. */
export const VALUELESS_OPS: readonly string[] = ['exists', 'erased'];
export const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;

export interface ConditionRow {
  /** `email`, `firstName`, `lastName` or an attribute name (stored as `attributes.<name>`). */
  field: string;
  op: string;
  value: string;
}

export interface StepRow {
  afterDays: string;
  subject: string;
  text: string;
  html: string;
}

/** Everything the editor shows, as the strings a form holds. */
export interface CampaignFormValues {
  name: string;
  kind: string;
  mailboxId: string;
  subject: string;
  html: string;
  text: string;
  topic: string;
  /** `keep`: a draft whose audience is a list of contacts (API or CSV upload) keeps that list. */
  audience: 'all' | 'segment' | 'keep';
  match: 'all' | 'any';
  conditions: ConditionRow[];
  steps: StepRow[];
  /** `YYYY-MM-DDTHH:mm` in `timeZone`, or empty for "when launched". */
  startAt: string;
  windowEnabled: boolean;
  windowDays: number[];
  windowStart: string;
  windowEnd: string;
  timeZone: string;
}

export type FormBody = Record<string, unknown>;

const text = (body: FormBody, name: string) => (typeof body[name] === 'string' ? (body[name] as string) : '');
const MAX_ROWS = 50;

export function emptyForm(): CampaignFormValues {
  return {
    name: '',
    kind: 'marketing',
    mailboxId: '',
    subject: '',
    html: '',
    text: '',
    topic: '',
    audience: 'all',
    match: 'all',
    conditions: [],
    steps: [],
    startAt: '',
    windowEnabled: false,
    windowDays: [1, 2, 3, 4, 5],
    windowStart: '9',
    windowEnd: '17',
    timeZone: 'UTC',
  };
}

/** The posted form, rows in order; rows left blank are dropped. */
export function readCampaignForm(body: FormBody): CampaignFormValues {
  const conditions: ConditionRow[] = [];
  const steps: StepRow[] = [];
  for (let i = 0; i < MAX_ROWS; i += 1) {
    const condition = { field: text(body, `cond${i}_field`).trim(), op: text(body, `cond${i}_op`), value: text(body, `cond${i}_value`) };
    if (condition.field) conditions.push(condition);
    const step = { afterDays: text(body, `step${i}_afterDays`).trim(), subject: text(body, `step${i}_subject`), text: text(body, `step${i}_text`), html: text(body, `step${i}_html`) };
    if (step.text.trim() || step.html.trim() || step.subject.trim()) steps.push(step);
  }
  return {
    name: text(body, 'name'),
    kind: text(body, 'kind'),
    mailboxId: text(body, 'mailboxId'),
    subject: text(body, 'subject'),
    html: text(body, 'html'),
    text: text(body, 'text'),
    topic: text(body, 'topic'),
    audience: (['segment', 'keep'] as const).find((a) => a === text(body, 'audience')) ?? 'all',
    match: text(body, 'match') === 'any' ? 'any' : 'all',
    conditions,
    steps,
    startAt: text(body, 'startAt'),
    windowEnabled: text(body, 'windowEnabled') === 'on',
    windowDays: tickedIn(body, 'windowDays').map(Number).filter((d) => Number.isInteger(d)),
    windowStart: text(body, 'windowStart'),
    windowEnd: text(body, 'windowEnd'),
    timeZone: text(body, 'timeZone').trim() || 'UTC',
  };
}

const optional = (value: string) => (value.trim() === '' ? undefined : value);
const number = (value: string) => (/^-?\d+$/.test(value.trim()) ? Number(value) : value);

function conditionJson(row: ConditionRow) {
  const field = (SEGMENT_FIELDS as readonly string[]).includes(row.field) ? row.field : `attributes.${row.field.replace(/^attributes\./, '')}`;
  if (VALUELESS_OPS.includes(row.op)) return { field, op: row.op };
  if (row.op === 'in') return { field, op: row.op, value: row.value.split(',').map((v) => v.trim()).filter(Boolean) };
  return { field, op: row.op, value: row.value };
}

/** "Everyone" is a segment too: every contact has an address. */
const EVERYONE = { all: [{ field: 'email', op: 'exists' }] };

/**
 * The API's campaign body from the form. Values are passed through as typed (numbers as
 * numbers when they look like one) so that the API schema's messages name the real problem.
 */
export function campaignBodyFromForm(form: CampaignFormValues, keptContactIds?: string[]): Record<string, unknown> {
  const audience =
    form.audience === 'keep' && keptContactIds
      ? { contactIds: keptContactIds }
      : { segment: form.audience === 'segment' ? { [form.match]: form.conditions.map(conditionJson) } : EVERYONE };
  return {
    name: form.name,
    kind: form.kind,
    mailboxId: form.mailboxId,
    subject: form.subject,
    html: optional(form.html),
    text: optional(form.text),
    topic: optional(form.topic),
    ...audience,
    steps: form.steps.map((s) => ({ afterDays: number(s.afterDays), subject: optional(s.subject), text: optional(s.text), html: optional(s.html) })),
    startAt: form.startAt ? zonedTimeToInstant(form.startAt, form.timeZone) ?? form.startAt : undefined,
    sendingWindow: form.windowEnabled
      ? { days: form.windowDays, startHour: number(form.windowStart), endHour: number(form.windowEnd), timeZone: form.timeZone }
      : undefined,
  };
}

/** A saved campaign back into the form (to edit it). */
export function formFromCampaign(campaign: {
  name: string;
  kind: string;
  mailboxId: string | null;
  subject: string;
  html: string | null;
  text: string | null;
  topic: string | null;
  audience: { contactIds: string[] } | { segment: Record<string, unknown> };
  steps: CampaignStep[];
  startAt: Date | null;
  sendingWindow: SendingWindow | null;
}): CampaignFormValues & { contactIds?: string[] } {
  const form = emptyForm();
  const window = campaign.sendingWindow;
  Object.assign(form, {
    name: campaign.name,
    kind: campaign.kind,
    mailboxId: campaign.mailboxId ?? '',
    subject: campaign.subject,
    html: campaign.html ?? '',
    text: campaign.text ?? '',
    topic: campaign.topic ?? '',
    steps: campaign.steps.map((s) => ({ afterDays: String(s.afterDays), subject: s.subject ?? '', text: s.text ?? '', html: s.html ?? '' })),
    timeZone: window?.timeZone ?? 'UTC',
  });
  if (window) Object.assign(form, { windowEnabled: true, windowDays: window.days, windowStart: String(window.startHour), windowEnd: String(window.endHour) });
  if (campaign.startAt) form.startAt = instantToZonedTime(campaign.startAt, form.timeZone);
  if ('segment' in campaign.audience) {
    const segment = campaign.audience.segment as { all?: { field: string; op: string; value?: unknown }[]; any?: { field: string; op: string; value?: unknown }[] };
    const isEveryone = JSON.stringify(segment) === JSON.stringify(EVERYONE);
    if (!isEveryone) {
      form.audience = 'segment';
      form.match = segment.any?.length ? 'any' : 'all';
      form.conditions = (segment.any?.length ? segment.any : (segment.all ?? [])).map((c) => ({
        field: c.field.replace(/^attributes\./, ''),
        op: c.op,
        value: Array.isArray(c.value) ? c.value.join(', ') : c.value === undefined ? '' : String(c.value),
      }));
    }
    return form;
  }
  return { ...form, audience: 'keep', contactIds: campaign.audience.contactIds };
}

/** The UTC offset of `timeZone` at `at`, in minutes (e.g. +60 for Paris in winter). */
function offsetMinutes(at: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)!.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - Math.floor(at.getTime() / 1000) * 1000) / 60_000);
}

/** `2026-12-02T09:30` on the wall clock of `timeZone` → the ISO instant, or null when either is not valid. */
export function zonedTimeToInstant(local: string, timeZone: string): string | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(local);
  if (!match) return null;
  try {
    const wall = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]), Number(match[4]), Number(match[5]));
    // Two passes settle the offset across a daylight-saving change.
    let instant = wall - offsetMinutes(new Date(wall), timeZone) * 60_000;
    instant = wall - offsetMinutes(new Date(instant), timeZone) * 60_000;
    const date = new Date(instant);
    return Number.isNaN(date.getTime()) ? null : date.toISOString();
  } catch {
    return null;
  }
}

/** The inverse: an instant as `YYYY-MM-DDTHH:mm` on the wall clock of `timeZone`. */
export function instantToZonedTime(at: Date, timeZone: string): string {
  const shifted = new Date(at.getTime() + offsetMinutes(at, timeZone) * 60_000);
  return shifted.toISOString().slice(0, 16);
}
