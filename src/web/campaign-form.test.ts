import { describe, expect, it } from 'vitest';
import { campaignBody } from '../campaigns/campaigns.routes.js';
import { campaignEditor } from './campaign-editor.view.js';
import { campaignBodyFromForm, formFromCampaign, instantToZonedTime, readCampaignForm, zonedTimeToInstant } from './campaign-form.js';

const MAILBOX = '0b7c1f43-5d0e-4c52-9a1e-2f3f1b6a9c11';

describe('campaign editor form', () => {
  it('turns the posted rows into the API body, which the API schema accepts', () => {
    const form = readCampaignForm({
      name: 'Spring',
      kind: 'marketing',
      mailboxId: MAILBOX,
      subject: 'Hi {{firstName}}',
      html: '<p>Hello</p>',
      text: '',
      audience: 'segment',
      match: 'any',
      cond0_field: 'plan',
      cond0_op: 'in',
      cond0_value: 'pro, team',
      cond1_field: '',
      cond2_field: 'email',
      cond2_op: 'contains',
      cond2_value: '@example.com',
      step0_afterDays: '3',
      step0_text: 'Following up',
      step1_afterDays: '',
      startAt: '2030-03-30T09:30',
      timeZone: 'Europe/Paris',
      windowEnabled: 'on',
      windowDays: ['1', '3'],
      windowStart: '9',
      windowEnd: '17',
    });
    const body = campaignBodyFromForm(form);
    expect(body.segment).toEqual({
      any: [
        { field: 'attributes.plan', op: 'in', value: ['pro', 'team'] },
        { field: 'email', op: 'contains', value: '@example.com' },
      ],
    });
    expect(body.steps).toEqual([{ afterDays: 3, subject: undefined, text: 'Following up', html: undefined }]);
    // 09:30 in Paris the day before summer time starts (31 March 2030) is 08:30 UTC.
    expect(body.startAt).toBe('2030-03-30T08:30:00.000Z');
    expect(body.sendingWindow).toEqual({ days: [1, 3], startHour: 9, endHour: 17, timeZone: 'Europe/Paris' });
    const parsed = campaignBody.safeParse(body);
    expect(parsed.success).toBe(true);
  });

  it('“everyone” is a segment every contact matches, and a saved campaign comes back as the same form', () => {
    const form = readCampaignForm({ name: 'All', kind: 'transactional', mailboxId: MAILBOX, subject: 'x', text: 'y', audience: 'all' });
    const body = campaignBodyFromForm(form) as { segment: Record<string, unknown> };
    expect(body.segment).toEqual({ all: [{ field: 'email', op: 'exists' }] });
    const back = formFromCampaign({
      name: 'All',
      kind: 'transactional',
      mailboxId: MAILBOX,
      subject: 'x',
      html: null,
      text: 'y',
      topic: null,
      audience: { segment: body.segment },
      steps: [{ afterDays: 2, text: 'again' }],
      startAt: new Date('2030-01-15T08:00:00Z'),
      sendingWindow: { days: [2], startHour: 8, endHour: 12, timeZone: 'America/New_York' },
    });
    expect(back.audience).toBe('all');
    expect(back.steps).toEqual([{ afterDays: '2', subject: '', text: 'again', html: '' }]);
    expect(back.startAt).toBe('2030-01-15T03:00');
    expect(back.windowEnabled).toBe(true);
  });

  it('a condition the purge erased (P-13) comes back into the editor and is saved as it was: it matches nobody, never everyone', () => {
    const segment = { all: [{ field: 'attributes.plan', op: 'eq', value: 'pro' }, { field: 'email', op: 'erased' }] };
    const form = formFromCampaign({ name: 'Draft', kind: 'transactional', mailboxId: MAILBOX, subject: 'x', html: null, text: 'y', topic: null, audience: { segment }, steps: [], startAt: null, sendingWindow: null });
    expect(form.conditions[1]).toEqual({ field: 'email', op: 'erased', value: '' });
    const body = campaignBodyFromForm(form);
    expect(body.segment).toEqual(segment);
    expect(campaignBody.safeParse(body).success).toBe(true);
    expect(String(campaignEditor({ csrfToken: 't', action: '/app/campaigns/x', values: form, mailboxes: [], contacts: [] }))).toContain('<option value="erased" selected>');
  });

  it('bad values reach the API schema as typed, so its message names the field', () => {
    const body = campaignBodyFromForm(readCampaignForm({ name: '', kind: 'marketing', mailboxId: 'nope', subject: 'x', text: 'y', windowEnabled: 'on', windowStart: 'nine', windowEnd: '17', timeZone: 'Mars/Base' }));
    const parsed = campaignBody.safeParse(body);
    expect(parsed.success).toBe(false);
    const paths = parsed.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['name', 'mailboxId', 'sendingWindow.startHour', 'sendingWindow.timeZone']));
  });

  it('wall-clock times convert both ways and refuse nonsense', () => {
    expect(zonedTimeToInstant('2030-07-01T12:00', 'UTC')).toBe('2030-07-01T12:00:00.000Z');
    expect(zonedTimeToInstant('2030-07-01T12:00', 'Asia/Tokyo')).toBe('2030-07-01T03:00:00.000Z');
    expect(zonedTimeToInstant('tomorrow', 'UTC')).toBeNull();
    expect(zonedTimeToInstant('2030-07-01T12:00', 'Not/AZone')).toBeNull();
    expect(instantToZonedTime(new Date('2030-07-01T03:00:00Z'), 'Asia/Tokyo')).toBe('2030-07-01T12:00');
  });
});
