import type { ResultsService, SendsOverTime } from '../tracking/results.service.js';
import { html, type SafeHtml } from './html.js';

/*
 * A campaign's results: each chart is a <figure> holding its numbers as a table (readable
 * without JavaScript, and what a screen reader reads) and, for results-charts.js, the same
 * numbers as JSON in a data attribute, drawn with uPlot from our own origin. The canvas is
 * aria-hidden: the table beside it says everything it shows.
 */

type Results = Awaited<ReturnType<ResultsService['campaignResults']>>;

export interface ChartSeries {
  label: string;
  /** A CSS class of the swatch and the colour results-charts.js uses. */
  tone: 'human' | 'machine' | 'unknown' | 'total';
  values: number[];
}

/** What results-charts.js draws: bars per category, the series stacked when there are several. */
export interface ChartModel {
  categories: string[];
  series: ChartSeries[];
}

const CLASSES = ['human', 'machine', 'unknown'] as const;
const CLASS_LABELS = { human: 'People', machine: 'Machines', unknown: 'Unknown' } as const;

function figure(id: string, caption: string, model: ChartModel, table: SafeHtml): SafeHtml {
  const legend =
    model.series.length > 1 ? html`<p class="legend" aria-hidden="true">${model.series.map((s) => html`<span><span class="swatch ${s.tone}"></span>${s.label}</span>`)}</p>` : '';
  return html`<figure class="chart" id="${id}" aria-labelledby="${id}-caption">
<figcaption id="${id}-caption">${caption}</figcaption>
<div>${legend}<div class="chart-canvas" aria-hidden="true" data-chart="${JSON.stringify(model)}"></div></div>
${table}
</figure>`;
}

/** A table of the model: one row per category, one column per series (plus a total when stacked). */
function modelTable(caption: string, model: ChartModel, firstColumn: string, extra?: { label: string; values: (number | string)[] }): SafeHtml {
  const stacked = model.series.length > 1;
  return html`<table class="numbers"><caption class="visually-hidden">${caption}</caption>
<thead><tr><th scope="col">${firstColumn}</th>${model.series.map((s) => html`<th scope="col">${s.label}</th>`)}${stacked ? html`<th scope="col">Total</th>` : ''}${extra ? html`<th scope="col">${extra.label}</th>` : ''}</tr></thead>
<tbody>${model.categories.map(
    (category, i) =>
      html`<tr><th scope="row">${category}</th>${model.series.map((s) => html`<td>${s.values[i]}</td>`)}${stacked ? html`<td>${model.series.reduce((n, s) => n + s.values[i]!, 0)}</td>` : ''}${extra ? html`<td>${extra.values[i]}</td>` : ''}</tr>`,
  )}</tbody></table>`;
}

export function sendsOverTimeModel(sends: SendsOverTime): ChartModel {
  const label = (at: Date) => (sends.unit === 'day' ? at.toISOString().slice(0, 10) : `${at.toISOString().slice(0, 13).replace('T', ' ')}:00`);
  return { categories: sends.points.map((p) => label(p.at)), series: [{ label: 'Messages sent', tone: 'total', values: sends.points.map((p) => p.sent) }] };
}

export function engagementModel(stats: Results['stats']): ChartModel {
  return {
    categories: ['Opens', 'Clicks'],
    series: CLASSES.map((c) => ({ label: CLASS_LABELS[c], tone: c, values: [stats.opens[c], stats.clicks[c]] })),
  };
}

export function linksModel(stats: Results['stats']): ChartModel {
  return {
    categories: stats.links.map((l) => l.url),
    series: CLASSES.map((c) => ({ label: CLASS_LABELS[c], tone: c, values: stats.links.map((l) => l.clicks[c]) })),
  };
}

export function outcomesModel(stats: Results['stats']): ChartModel {
  return {
    categories: ['Replies', 'Automatic replies', 'Hard bounces', 'Soft bounces', 'Unsubscribes'],
    series: [{ label: 'Recipients', tone: 'total', values: [stats.replied, stats.autoReplied, stats.bounces.hard, stats.bounces.soft, stats.unsubscribed] }],
  };
}

export function resultsPage(campaign: { id: string; name: string; status: string }, results: Results): SafeHtml {
  const { stats, sendsOverTime } = results;
  const sends = sendsOverTimeModel(sendsOverTime);
  const engagement = engagementModel(stats);
  const links = linksModel(stats);
  const outcomes = outcomesModel(stats);
  return html`<p class="muted"><a href="/app/campaigns">Campaigns</a> › <a href="/app/campaigns/${campaign.id}">${campaign.name}</a></p>
<h1>Results: ${campaign.name} <span class="status">${campaign.status}</span></h1>
<dl class="facts">
<dt>Sent</dt><dd data-result="sent">${stats.sent}</dd>
<dt>Failed</dt><dd data-result="failed">${stats.failed}</dd>
<dt>Opened by people</dt><dd data-result="unique-human-opens">${stats.opens.uniqueHuman} ${stats.opens.uniqueHuman === 1 ? 'recipient' : 'recipients'}</dd>
<dt>Clicked by people</dt><dd data-result="unique-human-clicks">${stats.clicks.uniqueHuman} ${stats.clicks.uniqueHuman === 1 ? 'recipient' : 'recipients'}</dd>
<dt>Unsubscribed</dt><dd data-result="unsubscribed">${stats.unsubscribed}</dd>
</dl>
<p class="muted">People, machines and unknown are counted apart: machines are mail scanners, link checkers and privacy proxies, which open and click too. An open followed by a person's click counts as a person's.</p>
<div class="actions"><a class="button secondary" href="/app/campaigns/${campaign.id}/results.csv" download>Download per-recipient results (CSV)</a></div>
<div class="chart-grid">
${figure('sends-over-time', `Messages sent per ${sendsOverTime.unit} (UTC)`, sends, sends.categories.length === 0 ? html`<p>Nothing sent yet.</p>` : modelTable('Messages sent over time', sends, sendsOverTime.unit === 'day' ? 'Day' : 'Hour'))}
${figure('opens-clicks', 'Opens and clicks: people and machines', engagement, modelTable('Opens and clicks by who made them', engagement, 'Event', { label: 'People (unique)', values: [stats.opens.uniqueHuman, stats.clicks.uniqueHuman] }))}
${figure('links', 'Clicks per link', links, links.categories.length === 0 ? html`<p>This campaign has no links.</p>` : modelTable('Clicks per link by who made them', links, 'Link'))}
${figure('outcomes', 'Replies, bounces and unsubscribes', outcomes, modelTable('Replies, bounces and unsubscribes', outcomes, 'Outcome'))}
</div>
<link rel="stylesheet" href="/assets/vendor/uplot/uPlot.min.css">
<script src="/assets/vendor/uplot/uPlot.iife.min.js" defer></script>
<script src="/assets/results-charts.js" defer></script>`;
}
