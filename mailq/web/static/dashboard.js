// mailq dashboard: confirm dialogs, row selection and the realtime chart.
// Plain JavaScript, no framework; loaded from /static so the CSP allows it.
'use strict';

// Ask before buttons that carry data-confirm.
document.addEventListener('submit', function (event) {
  var button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});

// Select all on the page; shift-click selects a range, as in Sidekiq.
document.addEventListener('DOMContentLoaded', function () {
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name="id"]'));
  var last = null;
  boxes.forEach(function (box) {
    box.addEventListener('click', function (event) {
      if (event.shiftKey && last !== null) {
        var a = boxes.indexOf(last), b = boxes.indexOf(box);
        boxes.slice(Math.min(a, b), Math.max(a, b) + 1).forEach(function (x) { x.checked = box.checked; });
      }
      last = box;
    });
  });
  document.querySelectorAll('.check-all').forEach(function (all) {
    all.addEventListener('change', function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  });
  startRealtime();
});

// Realtime chart: poll /api/stats, plot processed and failed per interval.
function startRealtime() {
  var svg = document.getElementById('realtime');
  var select = document.getElementById('poll-interval');
  if (!svg || !select) { return; }
  var KEY = 'mailq.pollInterval', POINTS = 60;
  var saved = parseInt(window.localStorage.getItem(KEY), 10);
  if (saved >= 2 && saved <= 20) { select.value = String(saved); }
  var previous = null, series = [], timer = null;

  function draw() {
    var box = svg.viewBox.baseVal, top = 1;
    series.forEach(function (p) { top = Math.max(top, p[0], p[1]); });
    var step = box.width / (POINTS - 1);
    ['processed', 'failed'].forEach(function (name, k) {
      var pts = series.map(function (p, i) {
        var x = (POINTS - series.length + i) * step;
        return x.toFixed(1) + ',' + (box.height - p[k] / top * box.height * 0.95).toFixed(1);
      });
      document.getElementById('rt-' + name).setAttribute('points', pts.join(' '));
    });
    var latest = series[series.length - 1] || [0, 0];
    document.getElementById('rt-last-processed').textContent = latest[0];
    document.getElementById('rt-last-failed').textContent = latest[1];
    document.getElementById('rt-top').textContent = top;
  }

  function poll() {
    fetch('/api/stats', {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (stats) {
        Object.keys(stats).forEach(function (key) {
          var el = document.querySelector('[data-stat="' + key + '"]');
          if (el && typeof stats[key] === 'number') { el.textContent = stats[key].toLocaleString('en'); }
        });
        if (previous) {
          series.push([Math.max(0, stats.processed - previous.processed),
                       Math.max(0, stats.failed - previous.failed)]);
          if (series.length > POINTS) { series.shift(); }
          draw();
        }
        previous = stats;
        svg.dataset.polls = String((parseInt(svg.dataset.polls || '0', 10)) + 1);
      })
      .catch(function () { svg.dataset.error = 'yes'; });
  }

  function schedule() {
    if (timer) { window.clearInterval(timer); }
    timer = window.setInterval(poll, parseInt(select.value, 10) * 1000);
  }

  select.addEventListener('change', function () {
    window.localStorage.setItem(KEY, select.value);
    schedule();
  });
  poll();
  schedule();
}
