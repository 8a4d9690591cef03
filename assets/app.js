// switchyard dashboards: fetches /api/dashboards, then one /api/reports/NAME per report, and draws
// each panel with Chart.js or as a table. Plain ES2020, no build step. Panel schema: dashboards/README.md.
'use strict';

(() => {
  const TOKEN_KEY = 'switchyard.adminToken';
  const RANGES = { '24h': 24, '7d': 7 * 24, '30d': 30 * 24, '90d': 90 * 24 };
  const DEFAULT_RANGE = '30d';
  const HOUR = 3600e3;
  const DAY = 24 * HOUR;
  const PALETTE = [
    '#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#edc948',
    '#76b7b2', '#ff9da7', '#9c755f', '#4b4b55', '#8cd17d', '#d37295',
    '#a0cbe8', '#499894', '#b6992d', '#86bcb6',
  ];
  const OTHER_COLOR = '#b8bec8';
  const ACCENT = '#3b5bdb';
  const SHADES = [1, 0.62, 0.32];
  const CHARTS = new Set(['line', 'bar', 'scatter', 'table']);
  const $ = (id) => document.getElementById(id);

  const state = {
    meta: null,
    panels: [],
    generation: 0,
    controller: null,
    modelColors: new Map(),
    filters: { range: DEFAULT_RANGE, from: '', to: '', task: '', model: '' },
  };

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.name = 'HttpError';
      this.status = status;
    }
  }

  class PanelError extends Error {
    constructor(message) {
      super(message);
      this.name = 'PanelError';
    }
  }

  // ---------- storage and HTTP ----------

  function storedToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function storeToken(token) {
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // storage disabled: the token lives for this page only
    }
    state.sessionToken = token;
    $('forget-token').hidden = !token;
  }

  async function api(path, signal) {
    const headers = { Accept: 'application/json' };
    const token = storedToken() || state.sessionToken;
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(path, { headers, signal, cache: 'no-store' });
    const text = await res.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const msg = body && typeof body.error === 'string' ? body.error : text.trim().slice(0, 200);
      throw new HttpError(res.status, `HTTP ${res.status}${msg ? `: ${msg}` : ''}`);
    }
    if (body === null || typeof body !== 'object') {
      throw new HttpError(res.status, `${path} did not answer with JSON`);
    }
    return body;
  }

  // ---------- values and formatting ----------

  function num(v) {
    if (typeof v === 'number') return Number.isFinite(v) ? v : null;
    if (typeof v === 'string' && v.trim() !== '') {
      const n = Number(v);
      return Number.isFinite(n) ? n : null;
    }
    if (typeof v === 'bigint') return Number(v);
    return null;
  }

  const nfCache = new Map();
  function nf(opts) {
    const key = JSON.stringify(opts);
    if (!nfCache.has(key)) nfCache.set(key, new Intl.NumberFormat('en-US', opts));
    return nfCache.get(key);
  }

  function decimalsFor(a) {
    if (a === 0 || a >= 1) return 2;
    return Math.min(8, Math.max(2, Math.ceil(-Math.log10(a)) + 1));
  }

  function fmtUsd(v, tick) {
    const a = Math.abs(v);
    if (tick) {
      if (a === 0) return '$0';
      if (a >= 1000) return `$${nf({ notation: 'compact', maximumFractionDigits: 1 }).format(v)}`;
      if (a >= 1) return nf({ style: 'currency', currency: 'USD', minimumFractionDigits: 0, maximumFractionDigits: 2 }).format(v);
      const d = decimalsFor(a);
      return `${v < 0 ? '-' : ''}$${nf({ minimumFractionDigits: 0, maximumFractionDigits: d }).format(a)}`;
    }
    const d = decimalsFor(a);
    return `${v < 0 ? '-' : ''}$${nf({ minimumFractionDigits: d, maximumFractionDigits: d }).format(a)}`;
  }

  function fmtMs(v, tick) {
    if (tick && Math.abs(v) >= 1000) return `${nf({ maximumFractionDigits: 1 }).format(v / 1000)} s`;
    return `${nf({ maximumFractionDigits: Math.abs(v) < 10 ? 1 : 0 }).format(v)} ms`;
  }

  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

  function asDate(v) {
    if (v === null || v === undefined || v === '') return null;
    if (typeof v === 'number') return new Date(v);
    const s = String(v);
    if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return new Date(`${s}T00:00:00Z`);
    const zoneless = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(s);
    const d = new Date(zoneless ? `${s.replace(' ', 'T')}Z` : s);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function fmtDate(v, tick) {
    const d = asDate(v);
    if (!d) return String(v ?? '–');
    const iso = d.toISOString();
    const midnight = iso.slice(11, 19) === '00:00:00';
    if (tick) {
      return midnight ? `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}` : iso.slice(11, 16);
    }
    return midnight ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
  }

  function inferFormat(column) {
    const c = column.toLowerCase();
    if (c.endsWith('_usd') || c === 'cost' || c === 'spend') return 'usd';
    if (c.endsWith('_ms')) return 'ms';
    if (c === 'share' || c.endsWith('_share') || c.endsWith('_rate')) return 'fraction';
    if (c.endsWith('_pct') || c === 'pct') return 'percent';
    if (c === 'ratio' || c.endsWith('_ratio')) return 'ratio';
    if (c === 'quality' || c.endsWith('_score')) return 'score';
    if (c === 'requests' || c === 'samples' || c.endsWith('_count') || c.endsWith('_tokens') || c === 'count') return 'int';
    if (c === 'day' || c === 'date' || c === 'ts' || c === 'hour' || c.endsWith('_at')) return 'date';
    return 'auto';
  }

  function formatOf(def, column) {
    return (def.format && def.format[column]) || inferFormat(column);
  }

  function isNumericFormat(f) {
    return ['usd', 'ms', 'fraction', 'percent', 'ratio', 'score', 'int', 'number'].includes(f);
  }

  function fmt(v, format, tick = false) {
    if (v === null || v === undefined || v === '') return '–';
    if (format === 'text') return String(v);
    if (format === 'date') return fmtDate(v, tick);
    const n = num(v);
    if (n === null) return String(v);
    switch (format) {
      case 'usd': return fmtUsd(n, tick);
      case 'ms': return fmtMs(n, tick);
      case 'fraction': return `${nf({ maximumFractionDigits: 1, minimumFractionDigits: tick ? 0 : 1 }).format(n * 100)}%`;
      case 'percent': return `${nf({ maximumFractionDigits: 1, minimumFractionDigits: tick ? 0 : 1 }).format(n)}%`;
      case 'ratio': return `${nf({ maximumFractionDigits: Math.abs(n) >= 10 ? 0 : 1, minimumFractionDigits: tick ? 0 : (Math.abs(n) >= 10 ? 0 : 1) }).format(n)}×`;
      case 'score': return nf({ minimumFractionDigits: tick ? 0 : 2, maximumFractionDigits: 2 }).format(n);
      case 'int': return nf({ maximumFractionDigits: 0 }).format(n);
      default:
        return nf(Math.abs(n) >= 1000 ? { maximumFractionDigits: 0 } : { maximumSignificantDigits: 4 }).format(n);
    }
  }

  function label(def, column) {
    return (def.labels && def.labels[column]) || column.replace(/_/g, ' ');
  }

  // ---------- colours ----------

  function hexAlpha(hex, alpha) {
    const h = hex.replace('#', '');
    const r = parseInt(h.slice(0, 2), 16);
    const g = parseInt(h.slice(2, 4), 16);
    const b = parseInt(h.slice(4, 6), 16);
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }

  function hash(s) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i += 1) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  function colorFor(name) {
    const key = String(name);
    if (key === 'Other') return OTHER_COLOR;
    if (!state.modelColors.has(key)) {
      state.modelColors.set(key, PALETTE[(state.modelColors.size + hash(key)) % PALETTE.length]);
    }
    return state.modelColors.get(key);
  }

  function seedColors(models) {
    state.modelColors = new Map();
    [...models].sort().forEach((m, i) => state.modelColors.set(String(m), PALETTE[i % PALETTE.length]));
  }

  // ---------- time window ----------

  function rfc3339(ms) {
    return new Date(ms).toISOString().replace('.000Z', 'Z');
  }

  function dayString(ms) {
    return new Date(ms).toISOString().slice(0, 10);
  }

  function dataMax() {
    const max = state.meta && state.meta.data_range && asDate(state.meta.data_range.max);
    return max ? max.getTime() : Date.now();
  }

  // The window ends at the newest data (not at the browser's clock), rounded up to a whole hour
  // for 24 hours and to a whole UTC day otherwise. data_range.max may be exclusive (a boundary).
  function presetWindow(range) {
    const max = dataMax();
    const hours = RANGES[range] || RANGES[DEFAULT_RANGE];
    const unit = hours <= 24 ? HOUR : DAY;
    const until = Math.ceil(max / unit) * unit;
    return { since: until - hours * HOUR, until };
  }

  function currentWindow() {
    const f = state.filters;
    if (f.range === 'custom') {
      const from = asDate(f.from);
      const to = asDate(f.to);
      if (!from || !to) throw new PanelError('Pick both a start and an end date.');
      if (from.getTime() > to.getTime()) throw new PanelError('The start date is after the end date.');
      return { since: from.getTime(), until: to.getTime() + DAY };
    }
    return presetWindow(f.range);
  }

  // ---------- controls ----------

  function fillSelect(select, values, allLabel) {
    const current = select.value;
    select.replaceChildren(new Option(allLabel, ''));
    for (const v of values) select.add(new Option(String(v), String(v)));
    select.value = current;
  }

  function readHash() {
    const p = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    const f = state.filters;
    if (p.has('range') && (RANGES[p.get('range')] || p.get('range') === 'custom')) f.range = p.get('range');
    for (const k of ['from', 'to', 'task', 'model']) if (p.has(k)) f[k] = p.get(k);
  }

  function writeHash() {
    const f = state.filters;
    const p = new URLSearchParams();
    if (f.range !== DEFAULT_RANGE) p.set('range', f.range);
    if (f.range === 'custom') {
      p.set('from', f.from);
      p.set('to', f.to);
    }
    if (f.task) p.set('task', f.task);
    if (f.model) p.set('model', f.model);
    const hash = p.toString();
    const url = `${window.location.pathname}${window.location.search}${hash ? `#${hash}` : ''}`;
    window.history.replaceState(null, '', url);
  }

  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) select.add(new Option(value, value));
  }

  function syncControls() {
    const f = state.filters;
    $('range').value = f.range;
    $('custom-range').hidden = f.range !== 'custom';
    $('from').value = f.from;
    $('to').value = f.to;
    ensureOption($('task'), f.task);
    ensureOption($('model'), f.model);
    $('task').value = f.task;
    $('model').value = f.model;
  }

  function bindControls() {
    const f = state.filters;
    $('range').addEventListener('change', (e) => {
      f.range = e.target.value;
      if (f.range === 'custom' && (!f.from || !f.to)) {
        const w = presetWindow(DEFAULT_RANGE);
        f.from = dayString(w.since);
        f.to = dayString(w.until - 1);
      }
      syncControls();
      reload();
    });
    for (const id of ['from', 'to']) {
      $(id).addEventListener('change', (e) => {
        f[id] = e.target.value;
        reload();
      });
    }
    for (const id of ['task', 'model']) {
      $(id).addEventListener('change', (e) => {
        f[id] = e.target.value;
        reload();
      });
    }
    $('refresh').addEventListener('click', () => reload());
    $('filters').addEventListener('submit', (e) => e.preventDefault());
    $('forget-token').addEventListener('click', () => {
      storeToken('');
      askToken('The token was removed from this browser.');
    });
    $('auth').addEventListener('close', () => {
      const token = $('auth-token').value.trim();
      $('auth-token').value = '';
      if ($('auth').returnValue === 'ok' && token) {
        storeToken(token);
        if (state.meta) reload();
        else boot();
      }
    });
  }

  function askToken(message) {
    document.body.dataset.auth = 'required';
    if (!state.meta) $('window-label').textContent = 'Waiting for the admin token.';
    $('auth-message').textContent = message;
    const dialog = $('auth');
    if (!dialog.open) {
      if (typeof dialog.showModal === 'function') dialog.showModal();
      else dialog.setAttribute('open', '');
    }
    $('auth-token').focus();
  }

  function reload() {
    writeHash();
    load();
  }

  // ---------- layout ----------

  function uniqueId(id, seen) {
    let out = id;
    let i = 2;
    while (seen.has(out)) {
      out = `${id}_${i}`;
      i += 1;
    }
    seen.add(out);
    return out;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function buildLayout(dashboards) {
    const main = $('dashboards');
    const nav = $('nav');
    main.replaceChildren();
    nav.replaceChildren();
    state.panels = [];
    const seen = new Set();
    for (const d of dashboards) {
      const dashId = String(d.id || `dashboard${main.children.length + 1}`);
      const section = el('section', 'dashboard');
      section.id = `dashboard-${dashId}`;
      section.dataset.dashboardId = dashId;
      const head = el('div', 'dashboard-head');
      head.append(el('h2', '', d.title || dashId));
      if (d.description) head.append(el('p', 'dashboard-desc', d.description));
      section.append(head);
      const link = el('a', '', d.title || dashId);
      link.href = `#dashboard-${dashId}`;
      link.addEventListener('click', (e) => {
        e.preventDefault();
        section.scrollIntoView({ behavior: 'smooth', block: 'start' });
      });
      nav.append(link);
      const grid = el('div', 'grid');
      for (const def of Array.isArray(d.panels) ? d.panels : []) {
        grid.append(buildPanel(def || {}, seen));
      }
      section.append(grid);
      main.append(section);
    }
  }

  function buildPanel(def, seen) {
    const id = uniqueId(String(def.id || def.report || 'panel'), seen);
    const chart = CHARTS.has(def.chart) ? def.chart : 'unknown';
    const root = el('article', `panel chart-${chart}`);
    root.dataset.panelId = id;
    root.dataset.chart = String(def.chart || '');
    root.dataset.state = 'loading';
    root.dataset.rows = '0';
    if (Number(def.width) >= 2) root.classList.add('wide');
    const head = el('header', 'panel-head');
    const title = el('h3', '', def.title || id);
    const meta = el('span', 'panel-meta');
    head.append(title, meta);
    if (def.description) root.title = def.description;
    const body = el('div', 'panel-body');
    let box = null;
    let canvas = null;
    if (chart === 'table') {
      box = el('div', 'table-box');
    } else {
      box = el('div', 'chart-box');
      box.style.height = `${Number(def.height) > 0 ? Number(def.height) : 300}px`;
      canvas = el('canvas');
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', def.title || id);
      box.append(canvas);
    }
    const message = el('div', 'panel-message');
    body.append(box, message);
    root.append(head, body);
    const panel = { id, def, chart, root, meta, box, canvas, message, instance: null };
    state.panels.push(panel);
    return root;
  }

  // ---------- data shaping ----------

  function columnIndex(data, name, def, role) {
    if (typeof name !== 'string' || name === '') {
      throw new PanelError(`Panel definition has no "${role}" column.`);
    }
    let i = data.columns.indexOf(name);
    if (i < 0) i = data.columns.findIndex((c) => String(c).toLowerCase() === name.toLowerCase());
    if (i < 0) {
      throw new PanelError(`Report "${def.report}" has no column "${name}" (${role}); it returned: ${data.columns.join(', ') || 'no columns'}.`);
    }
    return i;
  }

  function asList(v) {
    if (Array.isArray(v)) return v;
    return v === undefined || v === null ? [] : [v];
  }

  function checkShape(data, report) {
    if (!data || !Array.isArray(data.columns) || !Array.isArray(data.rows)) {
      throw new PanelError(`Report "${report}" did not answer {"columns": [...], "rows": [...]}.`);
    }
    if (data.rows.some((r) => !Array.isArray(r))) {
      throw new PanelError(`Report "${report}" has a row that is not an array.`);
    }
  }

  function sortKeys(keys, format) {
    if (format === 'date') {
      return keys.sort((a, b) => (asDate(a)?.getTime() ?? 0) - (asDate(b)?.getTime() ?? 0));
    }
    if (keys.every((k) => num(k) !== null)) return keys.sort((a, b) => num(a) - num(b));
    return keys.sort();
  }

  // Returns {labels, series: [{name, values, total}]} for line and bar charts.
  function pivot(def, data, sortX) {
    const xi = columnIndex(data, def.x, def, 'x');
    const yCols = asList(def.y);
    if (yCols.length === 0) throw new PanelError('Panel definition has no "y" column.');
    const yi = yCols.map((c) => columnIndex(data, c, def, 'y'));
    const si = def.series ? columnIndex(data, def.series, def, 'series') : -1;
    if (si >= 0 && yCols.length > 1) throw new PanelError('A panel with "series" takes one "y" column.');
    const xFormat = formatOf(def, data.columns[xi]);
    let labels = [];
    const seenX = new Map();
    for (const row of data.rows) {
      const key = row[xi] === null || row[xi] === undefined ? '(none)' : String(row[xi]);
      if (!seenX.has(key)) {
        seenX.set(key, labels.length);
        labels.push(key);
      }
    }
    if (sortX) labels = sortKeys(labels, xFormat);
    const pos = new Map(labels.map((l, i) => [l, i]));
    const series = new Map();
    const add = (name, column, x, v) => {
      if (!series.has(name)) series.set(name, { name: String(name), column, values: new Array(labels.length).fill(null), total: 0 });
      const s = series.get(name);
      const at = pos.get(x);
      s.values[at] = (s.values[at] ?? 0) + v;
      s.total += Math.abs(v);
    };
    for (const row of data.rows) {
      const x = row[xi] === null || row[xi] === undefined ? '(none)' : String(row[xi]);
      if (si >= 0) {
        const v = num(row[yi[0]]);
        const name = row[si] === null || row[si] === undefined ? '(none)' : String(row[si]);
        if (v !== null) add(name, yCols[0], x, v);
        else if (!series.has(name)) add(name, yCols[0], x, 0);
      } else {
        yi.forEach((i, k) => {
          const v = num(row[i]);
          if (v !== null) add(yCols[k], yCols[k], x, v);
          else if (!series.has(yCols[k])) series.set(yCols[k], { name: yCols[k], column: yCols[k], values: new Array(labels.length).fill(null), total: 0 });
        });
      }
    }
    let list = [...series.values()];
    if (si >= 0) list.sort((a, b) => b.total - a.total);
    const max = Number(def.max_series) > 0 ? Number(def.max_series) : 0;
    if (si >= 0 && max && list.length > max) {
      const keep = list.slice(0, max - 1);
      const other = { name: 'Other', column: yCols[0], values: new Array(labels.length).fill(null), total: 0, members: list.length - keep.length };
      for (const s of list.slice(max - 1)) {
        s.values.forEach((v, i) => {
          if (v !== null) other.values[i] = (other.values[i] ?? 0) + v;
        });
        other.total += s.total;
      }
      list = [...keep, other];
    }
    return { labels, series: list, xFormat, yFormat: formatOf(def, yCols[0]), yCols, byModel: si >= 0 };
  }

  // ---------- chart rendering ----------

  function baseOptions() {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      normalized: true,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { position: 'bottom', labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true, pointStyle: 'rectRounded', padding: 14 } },
        tooltip: { backgroundColor: 'rgba(22, 28, 45, 0.92)', padding: 10, cornerRadius: 6, boxPadding: 4 },
      },
      scales: {},
    };
  }

  function valueAxis(format, title, stacked) {
    return {
      beginAtZero: true,
      stacked: !!stacked,
      grid: { color: '#eef1f5' },
      border: { display: false },
      title: title ? { display: true, text: title, color: '#5c6677' } : undefined,
      ticks: { callback: (v) => fmt(v, format, true), maxTicksLimit: 7 },
    };
  }

  function categoryAxis(format, title, stacked) {
    return {
      stacked: !!stacked,
      grid: { display: false },
      border: { color: '#d9dee7' },
      title: title ? { display: true, text: title, color: '#5c6677' } : undefined,
      ticks: {
        autoSkip: true,
        maxRotation: 0,
        callback(value) {
          const raw = String(this.getLabelForValue(value));
          if (format === 'date') return fmtDate(raw, true);
          const slash = raw.indexOf('/');
          return !this.isHorizontal() || slash < 0 ? raw : [raw.slice(0, slash + 1), raw.slice(slash + 1)];
        },
      },
    };
  }

  function renderLine(panel, data) {
    const def = panel.def;
    const p = pivot(def, data, true);
    const stacked = !!def.stacked;
    const datasets = p.series.map((s, i) => {
      const color = p.byModel ? colorFor(s.name) : PALETTE[i % PALETTE.length];
      return {
        label: p.byModel ? s.name : label(def, s.name),
        data: stacked ? s.values.map((v) => v ?? 0) : s.values,
        borderColor: color,
        backgroundColor: stacked ? hexAlpha(color, 0.55) : color,
        fill: stacked ? (i === 0 ? 'origin' : '-1') : false,
        borderWidth: stacked ? 1 : 2,
        pointRadius: p.labels.length <= 3 ? 3 : 0,
        pointHoverRadius: 4,
        tension: 0.25,
        spanGaps: false,
      };
    });
    const opts = baseOptions();
    opts.scales.x = categoryAxis(p.xFormat, def.x_title, false);
    opts.scales.y = valueAxis(p.yFormat, def.y_title, stacked);
    opts.plugins.tooltip.itemSort = (a, b) => (b.raw ?? 0) - (a.raw ?? 0);
    opts.plugins.tooltip.filter = (item) => item.raw !== null && item.raw !== 0;
    opts.plugins.tooltip.callbacks = {
      title: (items) => (items.length ? fmt(p.labels[items[0].dataIndex], p.xFormat) : ''),
      label: (item) => ` ${item.dataset.label}: ${fmt(item.raw, p.yFormat)}`,
      footer: (items) => {
        if (!stacked || items.length < 2) return '';
        const total = items.reduce((acc, it) => acc + (it.raw ?? 0), 0);
        return `Total: ${fmt(total, p.yFormat)}`;
      },
    };
    const total = p.series.reduce((acc, s) => acc + s.values.reduce((a, v) => a + (v ?? 0), 0), 0);
    const parts = [];
    if (p.yFormat === 'usd' && !p.yCols.slice(1).length) parts.push(`total ${fmt(total, 'usd')}`);
    const other = p.series.find((s) => s.members);
    if (other) parts.push(`${other.members} smaller series grouped as Other`);
    panel.meta.textContent = parts.join(' · ');
    return { type: 'line', data: { labels: p.labels, datasets }, options: opts };
  }

  function renderBar(panel, data) {
    const def = panel.def;
    const p = pivot(def, data, false);
    const limit = Number(def.limit) > 0 ? Number(def.limit) : 0;
    const shown = limit && p.labels.length > limit ? limit : p.labels.length;
    const labels = p.labels.slice(0, shown);
    const horizontal = !!def.horizontal;
    const stacked = !!def.stacked;
    const xIsModel = state.meta && Array.isArray(state.meta.models) && labels.length > 0 && labels.every((l) => state.meta.models.includes(l));
    const multi = !p.byModel && p.series.length > 1;
    const datasets = p.series.map((s, i) => {
      let bg;
      if (p.byModel) bg = colorFor(s.name);
      else if (xIsModel) bg = labels.map((l) => hexAlpha(colorFor(l), multi ? SHADES[i % SHADES.length] : 0.85));
      else bg = multi ? hexAlpha(ACCENT, SHADES[i % SHADES.length]) : hexAlpha(ACCENT, 0.8);
      return {
        label: p.byModel ? s.name : label(def, s.name),
        data: s.values.slice(0, shown).map((v) => (stacked ? v ?? 0 : v)),
        backgroundColor: bg,
        borderRadius: 3,
        maxBarThickness: 28,
        categoryPercentage: 0.8,
        barPercentage: 0.9,
      };
    });
    const opts = baseOptions();
    const cat = categoryAxis(p.xFormat, def.x_title, stacked);
    const val = valueAxis(p.yFormat, def.y_title, stacked);
    if (horizontal) {
      opts.indexAxis = 'y';
      cat.ticks.autoSkip = false;
      opts.scales = { y: cat, x: val };
      opts.interaction = { mode: 'index', axis: 'y', intersect: false };
      panel.box.style.height = `${Math.max(Number(def.height) || 0, 70 + labels.length * 24)}px`;
    } else {
      opts.scales = { x: cat, y: val };
    }
    if (p.series.length === 1 && !p.byModel) opts.plugins.legend.display = false;
    if (multi && xIsModel) {
      opts.plugins.legend.labels.generateLabels = (chart) => chart.data.datasets.map((ds, i) => ({
        text: ds.label,
        fillStyle: hexAlpha('#4a5568', SHADES[i % SHADES.length]),
        strokeStyle: 'transparent',
        lineWidth: 0,
        pointStyle: 'rectRounded',
        hidden: !chart.isDatasetVisible(i),
        datasetIndex: i,
      }));
    }
    const extras = asList(def.tooltip).map((c) => [c, columnIndex(data, c, def, 'tooltip')]);
    const xi = columnIndex(data, def.x, def, 'x');
    const rowFor = new Map();
    for (const row of data.rows) if (!rowFor.has(String(row[xi]))) rowFor.set(String(row[xi]), row);
    opts.plugins.tooltip.callbacks = {
      title: (items) => (items.length ? fmt(labels[items[0].dataIndex], p.xFormat) : ''),
      label: (item) => ` ${item.dataset.label}: ${fmt(item.raw, formatOf(def, p.series[item.datasetIndex].column))}`,
      afterBody: (items) => {
        if (!items.length || !extras.length || p.byModel) return [];
        const row = rowFor.get(labels[items[0].dataIndex]);
        return row ? extras.map(([c, i]) => ` ${label(def, c)}: ${fmt(row[i], formatOf(def, c))}`) : [];
      },
    };
    const parts = [];
    if (shown < p.labels.length) parts.push(`top ${shown} of ${p.labels.length}`);
    if (p.yFormat === 'usd' && p.series.length >= 1 && p.yCols.length === 1) {
      const total = p.series.reduce((acc, s) => acc + s.values.reduce((a, v) => a + (v ?? 0), 0), 0);
      parts.push(`total ${fmt(total, 'usd')}`);
    }
    panel.meta.textContent = parts.join(' · ');
    return { type: 'bar', data: { labels, datasets }, options: opts };
  }

  // Labels a log axis at 1, 2 and 5 times a power of ten only.
  // A narrow chart labels powers of ten only.
  function logTick(value, format, narrow) {
    if (!(value > 0)) return '';
    const mantissa = value / 10 ** Math.floor(Math.log10(value) + 1e-9);
    const marks = narrow ? [1] : [1, 2, 5];
    return marks.some((m) => Math.abs(mantissa - m) < 1e-6) ? fmt(value, format, true) : '';
  }

  function renderScatter(panel, data) {
    const def = panel.def;
    const xi = columnIndex(data, def.x, def, 'x');
    const yCol = asList(def.y)[0];
    const yi = columnIndex(data, yCol, def, 'y');
    const si = def.series ? columnIndex(data, def.series, def, 'series') : -1;
    const li = def.label ? columnIndex(data, def.label, def, 'label') : -1;
    const zi = def.size ? columnIndex(data, def.size, def, 'size') : -1;
    const extras = asList(def.tooltip).map((c) => [c, columnIndex(data, c, def, 'tooltip')]);
    const xFormat = formatOf(def, def.x);
    const yFormat = formatOf(def, yCol);
    const log = def.x_scale === 'log';
    const logY = def.y_scale === 'log';
    const sizes = zi >= 0 ? data.rows.map((r) => num(r[zi])).filter((v) => v !== null && v > 0) : [];
    const maxSize = sizes.length ? Math.max(...sizes) : 1;
    const groups = new Map();
    let skipped = 0;
    for (const row of data.rows) {
      const x = num(row[xi]);
      const y = num(row[yi]);
      if (x === null || y === null || (log && x <= 0) || (logY && y <= 0)) {
        skipped += 1;
        continue;
      }
      const name = si >= 0 ? String(row[si] ?? '(none)') : label(def, yCol);
      if (!groups.has(name)) groups.set(name, []);
      const z = zi >= 0 ? num(row[zi]) : null;
      const r = z !== null && z > 0 ? 3 + 11 * Math.sqrt(z / maxSize) : 5;
      groups.get(name).push({ x, y, r, row });
    }
    if (groups.size === 0) {
      return { empty: `No row has both ${label(def, def.x)} and ${label(def, yCol)}${log ? ' > 0' : ''}.` };
    }
    const names = [...groups.keys()].sort();
    const datasets = names.map((name, i) => {
      const color = si >= 0 ? colorFor(name) : PALETTE[i % PALETTE.length];
      return {
        label: name,
        data: groups.get(name),
        backgroundColor: hexAlpha(color, 0.6),
        borderColor: color,
        borderWidth: 1,
        clip: 16,
        pointRadius: groups.get(name).map((p) => p.r),
        pointHoverRadius: groups.get(name).map((p) => p.r + 2),
      };
    });
    const opts = baseOptions();
    opts.interaction = { mode: 'nearest', intersect: true };
    const xAxis = valueAxis(xFormat, def.x_title || label(def, def.x), false);
    const yAxis = valueAxis(yFormat, def.y_title || label(def, yCol), false);
    xAxis.beginAtZero = false;
    yAxis.beginAtZero = false;
    xAxis.grid = { color: '#eef1f5' };
    if (log) {
      xAxis.type = 'logarithmic';
      xAxis.ticks = {
        callback(value) {
          return logTick(value, xFormat, this.chart.width < 900);
        },
        maxRotation: 0,
        autoSkip: false,
      };
    }
    if (logY) {
      yAxis.type = 'logarithmic';
      yAxis.ticks = {
        callback(value) {
          return logTick(value, yFormat, this.chart.height < 300);
        },
        autoSkip: false,
      };
    }
    opts.layout = { padding: { top: 8, right: 8 } };
    opts.scales = { x: xAxis, y: yAxis };
    opts.plugins.tooltip.callbacks = {
      title: (items) => {
        if (!items.length) return '';
        const pt = items[0].raw;
        const l = li >= 0 ? String(pt.row[li] ?? '') : '';
        return l ? `${l} · ${items[0].dataset.label}` : items[0].dataset.label;
      },
      label: (item) => [
        ` ${label(def, def.x)}: ${fmt(item.raw.x, xFormat)}`,
        ` ${label(def, yCol)}: ${fmt(item.raw.y, yFormat)}`,
        ...extras.map(([c, i]) => ` ${label(def, c)}: ${fmt(item.raw.row[i], formatOf(def, c))}`),
      ],
    };
    opts.plugins.legend.labels.pointStyle = 'circle';
    const parts = [`${data.rows.length - skipped} points`];
    if (zi >= 0) parts.push(`size = ${label(def, def.size)}`);
    if (skipped) parts.push(`${skipped} without ${label(def, yCol)} not shown`);
    panel.meta.textContent = parts.join(' · ');
    return { type: 'scatter', data: { datasets }, options: opts };
  }

  function renderTable(panel, data) {
    const def = panel.def;
    const cols = def.columns ? asList(def.columns) : data.columns.map(String);
    const idx = cols.map((c) => columnIndex(data, c, def, 'columns'));
    const limit = Number(def.limit) > 0 ? Number(def.limit) : 200;
    const rows = data.rows.slice(0, limit);
    const formats = cols.map((c, k) => {
      const f = formatOf(def, c);
      if (f !== 'auto') return f;
      const values = rows.map((r) => r[idx[k]]).filter((v) => v !== null && v !== undefined);
      return values.length && values.every((v) => num(v) !== null) ? 'number' : 'text';
    });
    const barK = def.bar ? cols.indexOf(def.bar) : -1;
    if (def.bar && barK < 0) throw new PanelError(`"bar" column "${def.bar}" is not among the panel's columns.`);
    const barMax = barK >= 0 ? Math.max(0, ...rows.map((r) => num(r[idx[barK]]) ?? 0)) : 0;
    const hl = def.highlight && def.highlight.column ? def.highlight : null;
    const hlI = hl ? columnIndex(data, hl.column, def, 'highlight') : -1;
    const table = el('table', 'data-table');
    const thead = el('thead');
    const trh = el('tr');
    cols.forEach((c, k) => {
      const th = el('th', isNumericFormat(formats[k]) ? 'num' : '', label(def, c));
      th.scope = 'col';
      trh.append(th);
    });
    thead.append(trh);
    const tbody = el('tbody');
    for (const row of rows) {
      const tr = el('tr');
      if (hl) {
        const v = num(row[hlI]);
        if (v !== null && (hl.min === undefined || v >= hl.min) && (hl.max === undefined || v <= hl.max)) tr.className = 'hot';
      }
      cols.forEach((c, k) => {
        const raw = row[idx[k]];
        const td = el('td', isNumericFormat(formats[k]) ? 'num' : '');
        const text = fmt(raw, formats[k]);
        if (k === barK && barMax > 0) {
          const v = Math.max(0, num(raw) ?? 0);
          const wrap = el('div', 'bar-cell');
          const bar = el('span', 'bar');
          bar.style.width = `${(100 * v) / barMax}%`;
          wrap.append(bar, el('span', 'bar-text', text));
          td.append(wrap);
        } else {
          td.textContent = text;
        }
        if (hl && idx[k] === hlI && tr.className === 'hot') td.classList.add('hot-cell');
        if (formats[k] === 'text' && typeof raw === 'string' && colorIsModel(raw)) {
          const dot = el('span', 'dot');
          dot.style.background = colorFor(raw);
          td.prepend(dot);
        }
        tr.append(td);
      });
      tbody.append(tr);
    }
    table.append(thead, tbody);
    panel.box.replaceChildren(table);
    panel.meta.textContent = data.rows.length > rows.length ? `showing ${rows.length} of ${data.rows.length}` : `${rows.length} row${rows.length === 1 ? '' : 's'}`;
  }

  function colorIsModel(v) {
    return !!(state.meta && Array.isArray(state.meta.models) && state.meta.models.includes(v));
  }

  // ---------- panel state ----------

  function setState(panel, st, message, rows) {
    panel.root.dataset.state = st;
    if (rows !== undefined) panel.root.dataset.rows = String(rows);
    panel.message.textContent = message || '';
    panel.message.className = `panel-message ${st}`;
  }

  function destroyChart(panel) {
    if (panel.instance) {
      panel.instance.destroy();
      panel.instance = null;
    }
  }

  function renderPanel(panel, data) {
    checkShape(data, panel.def.report);
    const rows = data.rows.length;
    destroyChart(panel);
    if (panel.chart === 'table') panel.box.replaceChildren();
    if (rows === 0) {
      panel.meta.textContent = '';
      setState(panel, 'empty', 'No data for this time range and filter.', 0);
      return;
    }
    if (panel.chart === 'table') {
      renderTable(panel, data);
      setState(panel, 'ok', '', rows);
      return;
    }
    if (typeof window.Chart !== 'function') throw new PanelError('The charting library (/assets/chart.umd.min.js) did not load.');
    const config = panel.chart === 'line' ? renderLine(panel, data)
      : panel.chart === 'bar' ? renderBar(panel, data)
        : renderScatter(panel, data);
    if (config.empty) {
      panel.meta.textContent = '';
      setState(panel, 'empty', config.empty, rows);
      return;
    }
    panel.instance = new window.Chart(panel.canvas, config);
    setState(panel, 'ok', '', rows);
  }

  function failPanel(panel, err, rows) {
    destroyChart(panel);
    if (panel.chart === 'table') panel.box.replaceChildren();
    panel.meta.textContent = '';
    const msg = err instanceof PanelError || err instanceof HttpError ? err.message : `Could not draw this panel: ${err && err.message ? err.message : err}`;
    setState(panel, 'error', msg, rows ?? 0);
  }

  // ---------- loading ----------

  function describeWindow(w) {
    const f = state.filters;
    const whole = w.since % DAY === 0 && w.until % DAY === 0;
    const from = whole ? dayString(w.since) : fmtDate(rfc3339(w.since));
    const to = whole ? dayString(w.until - DAY) : fmtDate(rfc3339(w.until));
    const days = Math.round((w.until - w.since) / DAY);
    const span = whole && days > 1 ? `${days} days` : `${Math.round((w.until - w.since) / HOUR)} hours`;
    const bits = [`${from === to ? from : `${from} – ${to}`} UTC (${span})`];
    bits.push(f.task ? `task ${f.task}` : 'all tasks');
    bits.push(f.model ? `model ${f.model}` : 'all models');
    return bits.join(' · ');
  }

  function settle(gen) {
    if (gen !== state.generation) return;
    document.body.dataset.ready = 'true';
  }

  function load() {
    state.generation += 1;
    const gen = state.generation;
    document.body.dataset.ready = 'false';
    document.body.dataset.generation = String(gen);
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    let w;
    try {
      w = currentWindow();
    } catch (err) {
      $('window-label').textContent = err.message;
      for (const panel of state.panels) failPanel(panel, err, 0);
      settle(gen);
      return;
    }
    $('window-label').textContent = describeWindow(w);
    const params = new URLSearchParams({ since: rfc3339(w.since), until: rfc3339(w.until) });
    if (state.filters.task) params.set('task', state.filters.task);
    if (state.filters.model) params.set('model', state.filters.model);
    const requests = new Map();
    let unauthorized = null;
    const jobs = state.panels.map((panel) => {
      panel.root.dataset.state = 'loading';
      panel.root.classList.add('is-loading');
      if (panel.chart === 'unknown') {
        panel.root.classList.remove('is-loading');
        failPanel(panel, new PanelError(`Unknown chart type "${panel.def.chart}"; use line, bar, scatter or table.`), 0);
        return Promise.resolve();
      }
      if (!panel.def.report) {
        panel.root.classList.remove('is-loading');
        failPanel(panel, new PanelError('Panel definition names no "report".'), 0);
        return Promise.resolve();
      }
      const report = String(panel.def.report);
      if (!requests.has(report)) {
        requests.set(report, api(`/api/reports/${encodeURIComponent(report)}?${params}`, controller.signal));
      }
      return requests.get(report).then(
        (data) => {
          if (gen !== state.generation) return;
          panel.root.classList.remove('is-loading');
          try {
            renderPanel(panel, data);
          } catch (err) {
            failPanel(panel, err, data && Array.isArray(data.rows) ? data.rows.length : 0);
          }
        },
        (err) => {
          if (gen !== state.generation || (err && err.name === 'AbortError')) return;
          panel.root.classList.remove('is-loading');
          if (err && err.status === 401) unauthorized = err;
          failPanel(panel, err instanceof HttpError ? new HttpError(err.status, `Report "${report}" failed: ${err.message}`) : new PanelError(`Report "${report}" could not be fetched: ${err && err.message ? err.message : err}`), 0);
        },
      );
    });
    Promise.allSettled(jobs).then(() => {
      settle(gen);
      if (unauthorized && gen === state.generation) {
        askToken(storedToken() ? 'The server rejected the stored admin token.' : 'This server asks for its admin token to show reports.');
      }
    });
  }

  function showFatal(message) {
    const box = $('fatal');
    box.textContent = message;
    box.hidden = false;
    document.body.dataset.error = message;
    $('window-label').textContent = '';
  }

  function validateMeta(meta) {
    if (!meta || !Array.isArray(meta.dashboards)) throw new Error('/api/dashboards did not answer {"dashboards": [...]}.');
    meta.tasks = Array.isArray(meta.tasks) ? meta.tasks.filter((t) => t !== null && t !== undefined).map(String) : [];
    meta.models = Array.isArray(meta.models) ? meta.models.filter((m) => m !== null && m !== undefined).map(String) : [];
    meta.dashboards = meta.dashboards.filter((d) => d && typeof d === 'object');
    meta.dashboards.sort((a, b) => (num(a.order) ?? 1e9) - (num(b.order) ?? 1e9) || String(a.id).localeCompare(String(b.id)));
    return meta;
  }

  async function boot() {
    document.body.dataset.ready = 'false';
    $('fatal').hidden = true;
    delete document.body.dataset.error;
    let meta;
    try {
      meta = validateMeta(await api('/api/dashboards'));
    } catch (err) {
      if (err && err.status === 401) {
        askToken(storedToken() ? 'The server rejected the stored admin token.' : 'This server asks for its admin token to show reports.');
        return;
      }
      showFatal(`Could not load the dashboard definitions: ${err && err.message ? err.message : err}`);
      document.body.dataset.ready = 'true';
      return;
    }
    delete document.body.dataset.auth;
    state.meta = meta;
    seedColors(meta.models);
    fillSelect($('task'), meta.tasks, 'All tasks');
    fillSelect($('model'), meta.models, 'All models');
    const range = meta.data_range && asDate(meta.data_range.min) && asDate(meta.data_range.max)
      ? { min: dayString(asDate(meta.data_range.min).getTime()), max: dayString(asDate(meta.data_range.max).getTime() - 1) }
      : null;
    $('data-label').textContent = range ? `data ${range.min} → ${range.max}` : 'no data stored yet';
    for (const id of ['from', 'to']) {
      $(id).min = range ? range.min : '';
      $(id).max = range ? range.max : '';
    }
    readHash();
    syncControls();
    if (meta.dashboards.length === 0) {
      showFatal('No dashboards are defined (dashboards/*.json).');
      document.body.dataset.ready = 'true';
      return;
    }
    buildLayout(meta.dashboards);
    load();
  }

  function start() {
    if (window.Chart) {
      const C = window.Chart;
      C.defaults.font.family = getComputedStyle(document.body).fontFamily || 'system-ui, sans-serif';
      C.defaults.font.size = 12;
      C.defaults.color = '#4a5568';
    }
    $('forget-token').hidden = !storedToken();
    bindControls();
    boot().catch((err) => {
      showFatal(`Unexpected error: ${err && err.message ? err.message : err}`);
      document.body.dataset.ready = 'true';
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
