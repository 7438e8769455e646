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
  // On a phone the tabs scroll sideways: bring the current one into view.
  var tab = document.querySelector('header.top nav a.active');
  if (tab) { tab.parentNode.scrollLeft = tab.offsetLeft - tab.parentNode.offsetLeft - 40; }
  startRealtime();
  startLive();
  startCatcher();
  startPreviews(document);
  startChartTips();
});

// Realtime chart: poll /api/stats, plot processed and failed per interval, with time on
// x, counts on y, and one focusable band per interval whose tooltip has its figures.
var SVG_NS = 'http://www.w3.org/2000/svg';

function svgEl(name, attrs, text) {
  var el = document.createElementNS(SVG_NS, name);
  Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
  if (text !== undefined) { el.textContent = text; }
  return el;
}

// The next 1, 2, 4 or 5 times a power of ten at or above value (as dashboard.py's _nice).
function niceTop(value) {
  if (value <= 4) { return 4; }
  var power = Math.pow(10, Math.floor(Math.log10(value)));
  return [1, 2, 4, 5, 10].map(function (m) { return m * power; })
    .filter(function (v) { return v >= value; })[0];
}

function clock(date) {
  return date.toLocaleTimeString('en-GB', {hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

function startRealtime() {
  var svg = document.getElementById('realtime');
  var select = document.getElementById('poll-interval');
  if (!svg || !select) { return; }
  var KEY = 'mailq.pollInterval', POINTS = 60;
  var saved = parseInt(window.localStorage.getItem(KEY), 10);
  if (saved >= 2 && saved <= 20) { select.value = String(saved); }
  // On a phone the chart is drawn as wide as the screen (as the history's narrow charts).
  var narrow = window.matchMedia('(max-width: 700px)').matches;
  var box = svg.viewBox.baseVal, every = narrow ? 20 : 10;
  if (narrow) {
    svg.setAttribute('viewBox', '0 0 ' + svg.dataset.narrowW + ' ' + box.height);
    svg.classList.add('fits');
  }
  var left = +svg.dataset.left, top0 = +svg.dataset.top;
  var plotW = svg.viewBox.baseVal.width - left - svg.dataset.right;
  var plotH = +svg.dataset.plotH, bottom = top0 + plotH;
  var step = plotW / (POINTS - 1);
  var previous = null, series = [], timer = null;
  var bands = [];
  for (var i = 0; i < POINTS; i++) {      // made once, so keyboard focus survives a redraw
    var band = svgEl('rect', {'class': 'point', x: Math.max(left, left + (i - 0.5) * step).toFixed(1),
      y: top0, width: (i === 0 || i === POINTS - 1 ? step / 2 : step).toFixed(1), height: plotH});
    band.appendChild(svgEl('title', {}));
    bands.push(band);
    document.getElementById('rt-points').appendChild(band);
  }

  function y(v, scale) { return bottom - v / scale * plotH; }

  function drawAxes(scale) {
    var yAxis = document.getElementById('rt-y'), xAxis = document.getElementById('rt-x');
    yAxis.textContent = '';
    xAxis.textContent = '';
    for (var k = 0; k <= 4; k++) {
      var v = scale * k / 4, at = y(v, scale).toFixed(1);
      yAxis.appendChild(svgEl('line', {'class': 'gridline', x1: left, x2: left + plotW, y1: at, y2: at}));
      yAxis.appendChild(svgEl('text', {x: left - 6, y: +at + 4, 'text-anchor': 'end'},
                              v >= 1000 ? (v / 1000) + 'k' : String(v)));
    }
    yAxis.appendChild(svgEl('line', {x1: left, x2: left, y1: top0, y2: bottom}));
    xAxis.appendChild(svgEl('line', {x1: left, x2: left + plotW, y1: bottom, y2: bottom}));
    series.forEach(function (p, i) {
      var slot = POINTS - series.length + i;
      if ((POINTS - 1 - slot) % every !== 0) { return; }
      var x = (left + slot * step).toFixed(1);
      xAxis.appendChild(svgEl('line', {x1: x, x2: x, y1: bottom, y2: bottom + 4}));
      xAxis.appendChild(svgEl('text', {x: x, y: bottom + 17,
        'text-anchor': slot === POINTS - 1 ? 'end' : 'middle'}, clock(p.at)));
    });
  }

  function draw() {
    var peak = 0;
    series.forEach(function (p) { peak = Math.max(peak, p.processed, p.failed); });
    var scale = niceTop(peak);
    drawAxes(scale);
    ['processed', 'failed'].forEach(function (name) {
      var pts = series.map(function (p, i) {
        return (left + (POINTS - series.length + i) * step).toFixed(1) + ',' + y(p[name], scale).toFixed(1);
      });
      document.getElementById('rt-' + name).setAttribute('points', pts.join(' '));
    });
    bands.forEach(function (band, slot) {
      var p = series[slot - (POINTS - series.length)];
      var tip = p ? clock(p.at) + ': ' + p.processed + ' processed, ' + p.failed + ' failed' : '';
      band.dataset.tip = tip;
      band.firstChild.textContent = tip;
      if (p) { band.setAttribute('tabindex', '0'); band.setAttribute('aria-label', tip); }
      else { band.removeAttribute('tabindex'); band.removeAttribute('aria-label'); }
    });
    var latest = series[series.length - 1] || {processed: 0, failed: 0};
    document.getElementById('rt-last-processed').textContent = latest.processed;
    document.getElementById('rt-last-failed').textContent = latest.failed;
    document.getElementById('rt-top').textContent = peak;
    svg.dispatchEvent(new CustomEvent('redrawn'));
  }

  function poll() {
    fetch('/api/stats', {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (stats) {
        showStats(stats);
        if (previous) {
          series.push({at: new Date(), processed: Math.max(0, stats.processed - previous.processed),
                       failed: Math.max(0, stats.failed - previous.failed)});
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
  drawAxes(4);
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

// -- Chart tooltips: the exact figures of the point under the pointer or in focus. The
// listeners sit on the chart, so points drawn later (the realtime chart) have them too.
function startChartTips() {
  document.querySelectorAll('svg.history').forEach(function (svg) {
    var tip = document.getElementById(svg.dataset.tip);
    if (!tip) { return; }
    function pointOf(event) { return event.target.closest ? event.target.closest('.point') : null; }
    function show(point) {
      if (!point.dataset.tip) { hide(); return; }
      tip.textContent = point.dataset.tip;
      tip.hidden = false;
      var box = svg.parentNode.getBoundingClientRect(), p = point.getBoundingClientRect();
      var left = p.left - box.left + p.width / 2;
      tip.style.left = Math.max(0, Math.min(box.width - 220, left - 110)) + 'px';
      svg.querySelectorAll('.point.on').forEach(function (x) { x.classList.remove('on'); });
      point.classList.add('on');
    }
    function hide() {
      tip.hidden = true;
      svg.querySelectorAll('.point.on').forEach(function (x) { x.classList.remove('on'); });
    }
    svg.addEventListener('mouseover', function (event) { var p = pointOf(event); if (p) { show(p); } });
    svg.addEventListener('focusin', function (event) { var p = pointOf(event); if (p) { show(p); } });
    svg.addEventListener('focusout', hide);
    svg.addEventListener('mouseleave', hide);
    svg.addEventListener('redrawn', function () {      // the figures under a shown tip moved
      var on = svg.querySelector('.point.on');
      if (on && !tip.hidden) { show(on); }
    });
    svg.addEventListener('keydown', function (event) {
      var point = pointOf(event);
      if (!point) { return; }
      var points = Array.prototype.slice.call(svg.querySelectorAll('.point[tabindex="0"]'));
      var at = points.indexOf(point);
      if (event.key === 'ArrowRight' && at < points.length - 1) { event.preventDefault(); points[at + 1].focus(); }
      if (event.key === 'ArrowLeft' && at > 0) { event.preventDefault(); points[at - 1].focus(); }
    });
  });
}
