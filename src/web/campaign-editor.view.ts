import { html, type SafeHtml } from './html.js';
import { csrfField } from './layout.js';
import { OP_LABELS, SEGMENT_FIELDS, SEGMENT_OPS, WEEKDAYS, type CampaignFormValues, type ConditionRow, type StepRow } from './campaign-form.js';
import { checked, errorNotice } from './forms.js';

/*
 * The campaign editor: one form that works without JavaScript (numbered rows, a "more rows"
 * button that re-renders it), and a preview frame beside it. The Preview button posts the
 * form into the frame (formtarget), so the preview shows unsaved edits; with JavaScript on,
 * campaign-editor.js presses it as you type.
 */

export interface EditorView {
  csrfToken: string;
  /** Where Save posts: /app/campaigns (new) or /app/campaigns/:id (edit). */
  action: string;
  values: CampaignFormValues & { contactIds?: string[] };
  mailboxes: { id: string; email: string; status: string }[];
  /** Contacts the preview can be rendered for. */
  contacts: { id: string; email: string; firstName: string | null; lastName: string | null }[];
  previewContactId?: string;
  error?: string;
}

export const PREVIEW_FRAME = 'campaign-preview';

const selected = (yes: boolean) => (yes ? html` selected` : '');

function input(label: string, name: string, value: string, options: { type?: string; hint?: string; required?: boolean; attrs?: SafeHtml } = {}) {
  return html`<label>${label}${options.hint ? html` <span class="muted">${options.hint}</span>` : ''}
<input name="${name}" type="${options.type ?? 'text'}" value="${value}"${options.required ? html` required` : ''}${options.attrs ?? ''}></label>`;
}

function textarea(label: string, name: string, value: string, hint?: string) {
  return html`<label>${label}${hint ? html` <span class="muted">${hint}</span>` : ''}<textarea name="${name}">${value}</textarea></label>`;
}

function conditionRow(row: ConditionRow, i: number) {
  return html`<div class="row" role="group" aria-label="Condition ${i + 1}">
${input('Field', `cond${i}_field`, row.field, { attrs: html` list="segment-fields" autocomplete="off"` })}
<label>Test<select name="cond${i}_op">${[...SEGMENT_OPS, ...(row.op === 'erased' ? (['erased'] as const) : [])].map((op) => html`<option value="${op}"${selected(row.op === op)}>${OP_LABELS[op]}</option>`)}</select></label>
${input('Value', `cond${i}_value`, row.value)}
</div>`;
}

function stepRow(row: StepRow, i: number) {
  return html`<fieldset class="step"><legend>Follow-up ${i + 1}</legend>
${input('Days after the previous mail', `step${i}_afterDays`, row.afterDays, { type: 'number', attrs: html` min="0" max="365"` })}
${input('Subject', `step${i}_subject`, row.subject, { hint: '(empty: "Re:" the first subject, in the same thread)' })}
${textarea('Text', `step${i}_text`, row.text)}
${textarea('HTML', `step${i}_html`, row.html, '(optional)')}
</fieldset>`;
}

const blankCondition: ConditionRow = { field: '', op: 'eq', value: '' };
const blankStep: StepRow = { afterDays: '3', subject: '', text: '', html: '' };

export function campaignEditor(view: EditorView): SafeHtml {
  const v = view.values;
  const audienceChoice = (value: CampaignFormValues['audience'], label: string | SafeHtml) =>
    html`<label class="choice"><input type="radio" name="audience" value="${value}"${checked(v.audience === value)}> ${label}</label>`;
  const contactName = (c: EditorView['contacts'][number]) => [c.firstName, c.lastName].filter(Boolean).join(' ') || c.email;

  return html`${errorNotice(view.error)}
<div class="editor">
<form id="campaign-form" class="campaign-form" method="post" action="${view.action}" data-live-preview>
${csrfField(view.csrfToken)}
<fieldset><legend>Campaign</legend>
${input('Name', 'name', v.name, { required: true })}
<div class="choices" role="radiogroup" aria-label="Kind">
<label class="choice"><input type="radio" name="kind" value="marketing"${checked(v.kind !== 'transactional')}> Marketing <span class="muted">— needs each contact's opt-in; tracked; unsubscribe footer</span></label>
<label class="choice"><input type="radio" name="kind" value="transactional"${checked(v.kind === 'transactional')}> Transactional <span class="muted">— receipts and notices; no tracking, no footer</span></label>
</div>
<label>Send from<select name="mailboxId" required>
${view.mailboxes.length === 0 ? html`<option value="">No mailbox connected</option>` : ''}
${view.mailboxes.map((m) => html`<option value="${m.id}"${selected(m.id === v.mailboxId)}>${m.email}${m.status === 'active' ? '' : ` (${m.status})`}</option>`)}
</select></label>
${input('Topic', 'topic', v.topic, { hint: '(optional: recipients can opt out of one topic in their preferences)' })}
</fieldset>

<fieldset><legend>Message</legend>
<p class="muted">Merge fields: <code>{{firstName}}</code>, <code>{{lastName}}</code>, <code>{{email}}</code>, any contact attribute such as <code>{{company}}</code>, and a default with <code>{{firstName | "there"}}</code>.</p>
${input('Subject', 'subject', v.subject, { required: true })}
${textarea('HTML body', 'html', v.html, '(links are tracked in marketing mail)')}
${textarea('Text body', 'text', v.text, '(empty: made from the HTML)')}
</fieldset>

<fieldset><legend>Audience</legend>
<div class="choices">
${audienceChoice('all', 'Every contact')}
${v.contactIds ? audienceChoice('keep', `The ${v.contactIds.length} contacts chosen for this draft (API or CSV upload)`) : ''}
${audienceChoice('segment', html`Contacts matching
<select name="match" aria-label="Which conditions must hold"><option value="all"${selected(v.match === 'all')}>all</option><option value="any"${selected(v.match === 'any')}>any</option></select> of these conditions:`)}
</div>
<datalist id="segment-fields">${SEGMENT_FIELDS.map((f) => html`<option value="${f}">`)}</datalist>
<p class="muted">Field: <code>email</code>, <code>firstName</code>, <code>lastName</code> or an attribute name (e.g. <code>plan</code>). Leave a row's field empty to drop it.</p>
${[...v.conditions, blankCondition].map(conditionRow)}
</fieldset>

<fieldset><legend>Follow-up steps</legend>
<p class="muted">Sent in the same thread to those who have not replied. A step with no text and no HTML is dropped.</p>
${[...v.steps, blankStep].map(stepRow)}
</fieldset>

<fieldset><legend>Schedule</legend>
${input('Start', 'startAt', v.startAt, { type: 'datetime-local', hint: '(empty: when you launch)' })}
${input('Time zone', 'timeZone', v.timeZone, { hint: '(IANA name, e.g. Europe/Paris)' })}
<label class="choice"><input type="checkbox" name="windowEnabled"${checked(v.windowEnabled)}> Send only inside a window</label>
<div class="choices" role="group" aria-label="Days of the window">
${WEEKDAYS.map((day, i) => html`<label class="choice"><input type="checkbox" name="windowDays" value="${i + 1}"${checked(v.windowDays.includes(i + 1))}> ${day}</label>`)}
</div>
<div class="row">
${input('From hour', 'windowStart', v.windowStart, { type: 'number', attrs: html` min="0" max="23"` })}
${input('Until hour', 'windowEnd', v.windowEnd, { type: 'number', attrs: html` min="1" max="24"` })}
</div>
</fieldset>

<div class="actions">
<button type="submit" name="intent" value="save">Save draft</button>
<button type="submit" name="intent" value="more" class="secondary" formnovalidate>More rows</button>
</div>
</form>
<aside class="preview-panel" aria-labelledby="preview-heading">
<h2 id="preview-heading">Preview</h2>
${
  view.contacts.length === 0
    ? html`<p class="muted">Add contacts to preview the message as one of them receives it.</p>`
    : html`<label>As received by<select name="previewContactId" form="campaign-form">
${view.contacts.map((c) => html`<option value="${c.id}"${selected(c.id === view.previewContactId)}>${contactName(c)} &lt;${c.email}&gt;</option>`)}
</select></label>
<div class="actions"><button type="submit" form="campaign-form" class="secondary" formaction="/app/campaigns/preview" formtarget="${PREVIEW_FRAME}" formnovalidate data-preview-button>Preview</button></div>`
}
<iframe class="mail preview" name="${PREVIEW_FRAME}" title="Preview of the message" sandbox src="about:blank"></iframe>
</aside>
</div>
<script src="/assets/campaign-editor.js" defer></script>`;
}
