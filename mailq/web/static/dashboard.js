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

// Row checkboxes: rows may be replaced by live updates, so listen on the document.
function rowBoxes() {
  return Array.prototype.slice.call(document.querySelectorAll('input[name="id"]'));
}

// Select all on the page; shift-click selects a range, as in Sidekiq.
document.addEventListener('DOMContentLoaded', function () {
  var last = null;
  document.addEventListener('click', function (event) {
    var box = event.target;
    if (!box.matches || !box.matches('input[name="id"]')) { return; }
    var boxes = rowBoxes();
    if (event.shiftKey && last !== null && boxes.indexOf(last) >= 0) {
      var a = boxes.indexOf(last), b = boxes.indexOf(box);
      boxes.slice(Math.min(a, b), Math.max(a, b) + 1).forEach(function (x) { x.checked = box.checked; });
    }
    last = box;
  });
  document.querySelectorAll('.check-all').forEach(function (all) {
    all.addEventListener('change', function () {
      rowBoxes().forEach(function (box) { box.checked = all.checked; });
    });
  });
  startRealtime();
  startLive();
  startCatcher();
  startPreviews(document);
  startChartTips();
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

// -- Live pages: one EventSource on /api/events (stats, new mails, outcomes); polling
// /api/stats (and the list) every 5 s where it is refused or unavailable.
var live = {rows: null, refreshing: false, again: false, timer: null};

function showStats(stats) {
  Object.keys(stats).forEach(function (key) {
    var el = document.querySelector('[data-stat="' + key + '"]');
    if (el && typeof stats[key] === 'number') { el.textContent = stats[key].toLocaleString('en'); }
  });
}

function refreshRows(query) {
  var body = live.rows;
  if (!body) { return; }
  if (typeof query === 'string') { body.dataset.query = query; body.dataset.scan = '0'; }
  if (body.dataset.page !== '1' && typeof query !== 'string') { return; }   // only page 1 moves
  if (document.querySelector('input[name="id"]:checked')) {      // keep the user's selection
    document.body.dataset.liveHeld = 'yes';
    return;
  }
  if (live.refreshing) { live.again = true; return; }
  live.refreshing = true;
  var before = {};
  body.querySelectorAll('tr[data-id]').forEach(function (tr) { before[tr.dataset.id] = true; });
  var first = Object.keys(before).length === 0 && !body.dataset.loaded;
  var url = body.dataset.rowsUrl + '?q=' + encodeURIComponent(body.dataset.query || '') +
    '&scan=' + encodeURIComponent(body.dataset.scan || '0');
  fetch(url, {credentials: 'same-origin'})
    .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
    .then(function (html) {
      var selected = body.querySelector('tr.selected');
      var keep = selected ? selected.dataset.id : null;
      body.innerHTML = html;
      body.dataset.loaded = 'yes';
      body.querySelectorAll('tr[data-id]').forEach(function (tr) {
        if (!before[tr.dataset.id] && (!first || typeof query !== 'string')) {
          tr.classList.add('new');
          tr.setAttribute('title', 'new since the page was opened');
        }
        if (tr.dataset.id === keep) { tr.classList.add('selected'); }
      });
      body.dataset.refreshes = String(parseInt(body.dataset.refreshes || '0', 10) + 1);
    })
    .catch(function () {})
    .then(function () {
      live.refreshing = false;
      if (live.again) { live.again = false; window.setTimeout(refreshRows, 200); }
    });
}

function startPolling() {
  document.body.dataset.live = 'polling';
  if (live.timer) { return; }
  live.timer = window.setInterval(function () {
    fetch('/api/stats', {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(showStats).catch(function () {});
    refreshRows();
  }, 5000);
}

function startLive() {
  live.rows = document.getElementById('rows-body');
  if (!window.EventSource) { startPolling(); return; }
  var source = new EventSource('/api/events');
  var pending = null;
  source.addEventListener('hello', function () {
    document.body.dataset.live = 'sse';
    if (live.timer) { window.clearInterval(live.timer); live.timer = null; }
  });
  source.addEventListener('stats', function (e) { showStats(JSON.parse(e.data)); });
  source.addEventListener('mail', function () {
    if (pending) { return; }                    // at most one list refresh per 300 ms
    pending = window.setTimeout(function () { pending = null; refreshRows(); }, 300);
  });
  source.addEventListener('error', function () {
    // Refused (503: too many streams) or gone for good: poll. A dropped stream
    // reconnects by itself (readyState CONNECTING); poll meanwhile.
    if (source.readyState === EventSource.CLOSED) { startPolling(); }
    else { document.body.dataset.live = 'reconnecting'; }
  });
}

// -- The outbox as a mail catcher: a split pane at 1,200 px and wider, j/k to move,
// / to search (as you type), previews at phone, tablet and desktop widths.
function wide() { return window.matchMedia('(min-width: 1200px)').matches; }

function startCatcher() {
  var pane = document.getElementById('pane');
  var body = live.rows;
  var search = document.querySelector('form.filter input[type="search"]');
  if (search && body) {
    var typing = null;
    search.addEventListener('input', function () {
      window.clearTimeout(typing);
      typing = window.setTimeout(function () {
        refreshRows(search.value);
        var url = new URL(window.location.href);
        if (search.value) { url.searchParams.set('q', search.value); } else { url.searchParams.delete('q'); }
        window.history.replaceState(null, '', url.toString());
      }, 200);
    });
  }
  document.addEventListener('keydown', function (event) {
    var t = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT')) {
      if (event.key === 'Escape') { t.blur(); }
      return;
    }
    if (event.key === '/' && search) { event.preventDefault(); search.focus(); search.select(); return; }
    if (!pane || !body) { return; }
    if (event.key === 'j' || event.key === 'k') {
      event.preventDefault();
      var rows = Array.prototype.slice.call(body.querySelectorAll('tr[data-id]'));
      if (!rows.length) { return; }
      var at = rows.indexOf(body.querySelector('tr.selected'));
      at = event.key === 'j' ? Math.min(rows.length - 1, at + 1) : Math.max(0, at < 0 ? 0 : at - 1);
      select(rows[at]);
    } else if (event.key === 'Enter' && body.querySelector('tr.selected')) {
      window.location.href = '/mails/' + body.querySelector('tr.selected').dataset.id;
    }
  });
  if (!pane || !body) { return; }
  body.addEventListener('click', function (event) {
    var link = event.target.closest && event.target.closest('a.open-pane');
    if (!link || !wide() || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    event.preventDefault();
    select(link.closest('tr'));
  });

  function select(tr) {
    body.querySelectorAll('tr.selected').forEach(function (x) { x.classList.remove('selected'); });
    tr.classList.add('selected');
    tr.classList.remove('new');
    tr.scrollIntoView({block: 'nearest'});
    var id = tr.dataset.id;
    var url = new URL(window.location.href);
    url.searchParams.set('id', id);
    window.history.replaceState(null, '', url.toString());
    if (!wide()) { return; }
    var back = url.pathname + url.search;
    fetch('/outbox/' + encodeURIComponent(id) + '/pane?back=' + encodeURIComponent(back),
          {credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        if (!tr.classList.contains('selected')) { return; }    // moved on meanwhile
        pane.innerHTML = html;
        pane.dataset.id = id;
        startPreviews(pane);
      })
      .catch(function () { pane.textContent = 'This mail could not be loaded.'; });
  }
  var chosen = pane.querySelector('.pane-mail');
  if (chosen) {
    var tr = body.querySelector('tr[data-id="' + chosen.dataset.id + '"]');
    if (tr) { tr.classList.add('selected'); }
    pane.dataset.id = chosen.dataset.id;
  }
}

// Tabs for a mail's parts in the pane; the preview width of the HTML part.
function startPreviews(root) {
  root.querySelectorAll('.preview-widths button').forEach(function (button) {
    button.addEventListener('click', function () {
      var section = button.closest('section');
      var frame = section.querySelector('iframe.mail-html');
      frame.style.width = button.dataset.width ? button.dataset.width + 'px' : '100%';
      section.querySelectorAll('.preview-widths button').forEach(function (b) {
        b.setAttribute('aria-pressed', String(b === button));
      });
    });
  });
  root.querySelectorAll('.pane-mail').forEach(function (mail) {
    var parts = mail.querySelectorAll('section.part');
    function show(name) {
      parts.forEach(function (p) { p.hidden = p.dataset.part !== name; });
      mail.querySelectorAll('.parts-nav a').forEach(function (a) {
        a.classList.toggle('active', a.dataset.part === name);
        a.setAttribute('aria-current', a.dataset.part === name ? 'true' : 'false');
      });
    }
    mail.querySelectorAll('.parts-nav a').forEach(function (a) {
      a.addEventListener('click', function (event) { event.preventDefault(); show(a.dataset.part); });
    });
    var hasHtml = mail.querySelector('iframe.mail-html');
    show(hasHtml ? 'html' : 'text');
  });
}

// -- Chart tooltips: the exact figures of the point under the pointer or in focus.
function startChartTips() {
  document.querySelectorAll('svg.history').forEach(function (svg) {
    var tip = document.getElementById(svg.dataset.tip);
    if (!tip) { return; }
    function show(point) {
      tip.textContent = point.dataset.tip;
      tip.hidden = false;
      var box = svg.getBoundingClientRect(), p = point.getBoundingClientRect();
      var left = p.left - box.left + p.width / 2;
      tip.style.left = Math.max(0, Math.min(box.width - 220, left - 110)) + 'px';
      svg.querySelectorAll('.point.on').forEach(function (x) { x.classList.remove('on'); });
      point.classList.add('on');
    }
    function hide() { tip.hidden = true; }
    svg.querySelectorAll('.point').forEach(function (point) {
      point.addEventListener('mouseenter', function () { show(point); });
      point.addEventListener('focus', function () { show(point); });
      point.addEventListener('blur', hide);
      point.addEventListener('keydown', function (event) {
        var points = Array.prototype.slice.call(svg.querySelectorAll('.point'));
        var at = points.indexOf(point);
        if (event.key === 'ArrowRight' && at < points.length - 1) { event.preventDefault(); points[at + 1].focus(); }
        if (event.key === 'ArrowLeft' && at > 0) { event.preventDefault(); points[at - 1].focus(); }
      });
    });
    svg.addEventListener('mouseleave', hide);
  });
}
