// Draws the results page's charts with uPlot (served from our own origin). Each chart's
// numbers are also in the table beside it; without JavaScript only the tables show.
(function () {
  'use strict';
  if (typeof window.uPlot !== 'function') return;
  var uPlot = window.uPlot;
  var COLORS = { human: '#1f6feb', machine: '#8c959f', unknown: '#d4a72c', total: '#1a7f37' };
  var HEIGHT = 220;

  function shorten(label) {
    return label.length > 18 ? label.slice(0, 17) + '…' : label;
  }

  // Stacked bars: series k is drawn as the running total of series 0..k, tallest first, so
  // each visible band is one series' share.
  function draw(container) {
    var model = JSON.parse(container.getAttribute('data-chart'));
    var count = model.categories.length;
    if (count === 0) return;
    var xs = model.categories.map(function (_, i) { return i; });
    var running = xs.map(function () { return 0; });
    var stacks = model.series.map(function (series) {
      running = running.map(function (total, i) { return total + series.values[i]; });
      return { tone: series.tone, label: series.label, values: running.slice() };
    });
    stacks.reverse();
    var max = Math.max.apply(null, running.concat([1]));
    var every = Math.max(1, Math.ceil(count / 8));
    var bars = uPlot.paths.bars({ size: [0.6, 64] });

    var options = {
      width: Math.max(240, container.clientWidth || 480),
      height: HEIGHT,
      legend: { show: false },
      cursor: { show: false },
      scales: {
        x: { time: false, range: [-0.5, count - 0.5] },
        y: { range: [0, Math.ceil(max * 1.1)] },
      },
      axes: [
        {
          splits: function () { return xs; },
          values: function (_, splits) {
            return splits.map(function (v) { return v % every === 0 && model.categories[v] !== undefined ? shorten(model.categories[v]) : ''; });
          },
        },
        { values: function (_, splits) { return splits.map(function (v) { return Number.isInteger(v) ? String(v) : ''; }); } },
      ],
      series: [{}].concat(
        stacks.map(function (stack) {
          return { label: stack.label, fill: COLORS[stack.tone], stroke: COLORS[stack.tone], width: 0, paths: bars, points: { show: false } };
        }),
      ),
    };
    var data = [xs].concat(stacks.map(function (stack) { return stack.values; }));
    new uPlot(options, data, container);
  }

  Array.prototype.forEach.call(document.querySelectorAll('[data-chart]'), draw);
})();
