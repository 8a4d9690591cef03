// switchyard's loop pages, above the dashboards: "What to change" (/api/policy/proposal: the
// recommended policy per task against the live one, the projected saving, an Apply button that
// puts it in force on the running proxy) and "What changed" (/api/policy/changes and the
// live_traffic report: cost, quality and the realised saving per policy version, exploration
// apart). Plain ES2020, no build step; charts by the vendored Chart.js.
'use strict';

(() => {
  const TOKEN_KEY = 'switchyard.adminToken';
  const CHANGES_EVERY_MS = 10e3;
  const PROPOSAL_EVERY_MS = 60e3;
  const VERSION_COLORS = ['#9aa3b2', '#3b5bdb', '#2f9e44', '#e8590c', '#ae3ec9', '#1098ad'];
  const $ = (id) => document.getElementById(id);
  const state = { proposal: null, live: null, charts: {}, busy: false, versionColors: new Map() };

  function token() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  async function call(path, opts = {}) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (opts.body) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method: opts.method || 'GET', headers, body: opts.body, cache: 'no-store' });
    const text = await res.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const msg = body && (typeof body.error === 'string' ? body.error : body.error && body.error.message);
      const err = new Error(`HTTP ${res.status}${msg ? `: ${msg}` : ''}`);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  // ---------- formatting ----------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  function usd(v, digits) {
    if (!isNum(v)) return '–';
    const a = Math.abs(v);
    const d = digits !== undefined ? digits : a >= 100 ? 0 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    return `$${v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })}`;
  }
  const pct = (v, d = 1) => (isNum(v) ? `${v.toFixed(d)}%` : '–');
  const q3 = (v) => (isNum(v) ? v.toFixed(3) : '–');
  const int = (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : '–');
  const ms = (v) => (isNum(v) ? `${Math.round(v).toLocaleString('en-US')} ms` : '–');

  function mixText(targets) {
    if (!Array.isArray(targets) || targets.length === 0) return '–';
    return targets
      .map((t) => `${t.model} ${Math.round(100 * (isNum(t.weight) ? t.weight : t.share))}%${t.role ? ` (${t.role})` : ''}`)
      .join(', ');
  }

  function mixCell(targets) {
    const td = el('td', 'mix');
    if (!Array.isArray(targets) || targets.length === 0) {
      td.textContent = '–';
      return td;
    }
    for (const t of targets) {
      const w = isNum(t.weight) ? t.weight : t.share;
      const line = el('div', t.role === 'explore' ? 'mix-line explore' : 'mix-line');
      line.append(el('span', 'mix-model', t.model), el('span', 'mix-weight', `${Math.round(100 * w)}%`));
      if (t.role) line.append(el('span', 'mix-role', t.role));
      td.append(line);
    }
    return td;
  }

  function versionColor(v) {
    const key = v === null || v === undefined || v === '' ? '(not routed)' : String(v);
    if (!state.versionColors.has(key)) {
      state.versionColors.set(key, VERSION_COLORS[state.versionColors.size % VERSION_COLORS.length]);
    }
    return state.versionColors.get(key);
  }

  // ---------- layout ----------

  function section(id, title, desc) {
    const s = el('section', 'dashboard loop-page');
    s.id = id;
    s.dataset.state = 'loading';
    const head = el('div', 'dashboard-head');
    head.append(el('h2', '', title), el('p', 'dashboard-desc', desc));
    s.append(head);
    return s;
  }

  function panel(title, wide) {
    const p = el('article', `panel${wide ? ' wide' : ''}`);
    const head = el('header', 'panel-head');
    const meta = el('span', 'panel-meta');
    head.append(el('h3', '', title), meta);
    const body = el('div', 'panel-body');
    p.append(head, body);
    return { root: p, meta, body };
  }

  function build() {
    const main = el('main', 'dashboards loop');
    main.id = 'loop';
    const change = section('what-to-change', 'What to change',
      'The recommended policy per task against what runs now, with the evidence behind each line, and what it saves at current traffic.');
    const bar = el('div', 'loop-bar');
    const summary = el('div', 'loop-summary');
    summary.id = 'proposal-summary';
    const actions = el('div', 'loop-actions');
    const live = el('span', 'live-version');
    live.id = 'live-version';
    const apply = el('button', 'button primary', 'Apply');
    apply.type = 'button';
    apply.id = 'apply-policy';
    apply.disabled = true;
    apply.title = 'Put the recommended policy in force on the running proxy';
    const status = el('span', 'apply-status');
    status.id = 'apply-status';
    status.setAttribute('role', 'status');
    actions.append(live, apply, status);
    bar.append(summary, actions);
    change.append(bar);
    const grid1 = el('div', 'grid');
    const table = panel('Recommended routes', true);
    table.root.id = 'proposal-panel';
    grid1.append(table.root);
    change.append(grid1);

    const changed = section('what-changed', 'What changed',
      'Per policy version: cost per request, quality and latency before and after, the realised saving against the projection, exploration traffic apart.');
    const grid2 = el('div', 'grid');
    const liveChart = panel('Live traffic by policy version (requests per minute)', false);
    const costChart = panel('Cost per request by policy version', false);
    const versions = panel('Policy versions', true);
    versions.root.id = 'versions-panel';
    for (const p of [liveChart, costChart]) {
      const box = el('div', 'chart-box');
      box.style.height = '260px';
      const c = el('canvas');
      box.append(c);
      p.body.append(box);
      p.canvas = c;
    }
    grid2.append(liveChart.root, costChart.root, versions.root);
    changed.append(grid2);
    main.append(change, changed);
    const dashboards = $('dashboards');
    dashboards.parentNode.insertBefore(main, dashboards);
    const nav = $('nav');
    for (const [id, title] of [['what-to-change', 'What to change'], ['what-changed', 'What changed']]) {
      const a = el('a', 'loop-link', title);
      a.href = `#${id}`;
      a.addEventListener('click', (e) => {
        e.preventDefault();
        $(id).scrollIntoView({ behavior: 'smooth', block: 'start' });
      });
      nav.prepend(a);
    }
    // Keep "What to change" first in the bar.
    const links = nav.querySelectorAll('a.loop-link');
    if (links.length === 2) nav.insertBefore(links[1], links[0]);
    apply.addEventListener('click', onApply);
    Object.assign(state, { change, changed, table, liveChart, costChart, versions, apply, status, live, summary });
  }

  // ---------- What to change ----------

  function renderProposal(p) {
    const t = p.totals || {};
    state.summary.replaceChildren();
    const big = el('div', 'loop-saving');
    big.append(el('strong', '', usd(t.saving_usd_per_day, 2)), el('span', '', ' per day · '),
      el('strong', '', usd(t.saving_usd_per_month, 0)), el('span', '', ' per month'));
    big.id = 'projected-saving';
    big.dataset.usdPerDay = String(t.saving_usd_per_day);
    const sub = el('div', 'loop-sub',
      `projected at current traffic (${int(t.requests_per_day)} requests/day, ${usd(t.current_usd_per_day, 2)}/day now): ` +
      `${pct(t.saving_pct)} less, at ${Math.round(100 * p.policy.objective.quality_target)}% of the best quality ` +
      `(${p.policy.objective.scope} scope), learned from the last ${p.since}.`);
    state.summary.append(big, sub);
    const liveVersion = p.live ? p.live.version : null;
    state.live.textContent = p.proxy
      ? `Live on ${p.proxy}: ${liveVersion ? `policy ${liveVersion}` : 'no policy (models by name)'}`
      : 'No proxy attached to this server (start serve with --proxy-listen)';
    state.live.dataset.version = liveVersion || '';
    const same = liveVersion && p.tasks.every((x) => !x.changed);
    state.apply.disabled = !p.proxy || state.busy || same;
    state.apply.textContent = same ? 'In force' : `Apply ${p.policy.version}`;
    state.apply.dataset.version = p.policy.version;

    const changedN = p.tasks.filter((x) => x.changed).length;
    state.table.meta.textContent = `${p.tasks.length} tasks · ${changedN} change against the live policy · policy ${p.policy.version}`;
    const box = el('div', 'table-box');
    const tbl = el('table', 'data-table');
    const head = el('tr');
    for (const h of ['', 'Task', 'Live now', 'Proposed', 'Cost / request', 'Quality', 'p95 latency', 'Saving / day', 'Evidence', 'Why']) {
      head.append(el('th', '', h));
    }
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    const rows = [...p.tasks].sort((a, b) => (b.saving_usd_per_day || 0) - (a.saving_usd_per_day || 0));
    for (const x of rows) {
      const tr = el('tr', x.changed ? 'changed' : '');
      tr.dataset.task = x.task;
      tr.dataset.changed = String(x.changed);
      tr.append(el('td', 'diff-mark', x.changed ? (x.live ? '~' : '+') : '='));
      tr.append(el('td', 'task', x.task));
      const now = x.live || x.current_mix;
      const nowCell = mixCell(now);
      nowCell.title = x.live ? 'the live policy\'s route' : 'the traffic mix in the logs';
      tr.append(nowCell, mixCell(x.proposed));
      const cost = el('td', 'num');
      cost.append(el('div', '', usd(x.expected_cost_per_request)), el('div', 'was', `now ${usd(x.current_cost_per_request)}`));
      const qual = el('td', 'num');
      qual.append(el('div', '', `${q3(x.expected_quality)}${isNum(x.quality_ci) ? ` ± ${x.quality_ci.toFixed(3)}` : ''}`),
        el('div', 'was', `now ${q3(x.current_quality)}`));
      const saving = el('td', 'num');
      saving.append(el('div', '', usd(x.saving_usd_per_day, 2)), el('div', 'was', pct(x.saving_pct)));
      const ev = el('td', 'num');
      ev.append(el('div', '', `${int(x.samples)} samples`), el('div', 'was', `${int(x.requests)} requests`));
      tr.append(cost, qual, el('td', 'num', ms(x.expected_p95_latency_ms)), saving, ev, el('td', 'reason', x.reason));
      tbody.append(tr);
    }
    tbl.append(thead, tbody);
    box.append(tbl);
    state.table.body.replaceChildren(box);
    state.change.dataset.state = 'ok';
    state.change.dataset.tasks = String(p.tasks.length);
  }

  async function loadProposal() {
    try {
      const p = await call('/api/policy/proposal');
      state.proposal = p;
      renderProposal(p);
    } catch (err) {
      state.change.dataset.state = 'error';
      state.table.body.replaceChildren(el('div', 'panel-message error', `Could not compute the recommendation: ${err.message}`));
    }
  }

  async function onApply() {
    const p = state.proposal;
    if (!p || state.busy) return;
    state.busy = true;
    state.apply.disabled = true;
    state.status.className = 'apply-status';
    state.status.textContent = `Applying ${p.policy.version}…`;
    try {
      const r = await call('/api/policy/apply', { method: 'POST', body: JSON.stringify(p.policy) });
      state.status.textContent = `Policy ${r.version} in force on ${r.proxy}. New traffic follows it; watch “What changed”.`;
      state.status.classList.add('ok');
      document.body.dataset.appliedVersion = r.version;
    } catch (err) {
      state.status.textContent = `Apply failed: ${err.message}`;
      state.status.classList.add('error');
    } finally {
      state.busy = false;
    }
    await Promise.all([loadProposal(), loadChanges()]);
  }

  // ---------- What changed ----------

  function drawChart(p, config) {
    if (!window.Chart || !p.canvas) return;
    if (p.instance) p.instance.destroy();
    p.instance = new window.Chart(p.canvas, config);
  }

  function renderLive(data) {
    const cols = data.columns || [];
    const ix = (n) => cols.indexOf(n);
    const [im, iv, ir] = [ix('minute'), ix('policy_version'), ix('requests')];
    const minutes = [...new Set(data.rows.map((r) => String(r[im])))].sort();
    const versions = [...new Set(data.rows.map((r) => (r[iv] === null ? '(not routed)' : String(r[iv]))))];
    const series = versions.map((v) => {
      const by = new Map(data.rows.filter((r) => (r[iv] === null ? '(not routed)' : String(r[iv])) === v).map((r) => [String(r[im]), Number(r[ir])]));
      return { label: v, data: minutes.map((m) => by.get(m) || 0), backgroundColor: versionColor(v), borderColor: versionColor(v), stack: 's' };
    });
    const labels = minutes.map((m) => m.slice(11, 16));
    state.liveChart.meta.textContent = data.rows.length ? 'last 30 minutes · UTC' : 'no traffic in the last 30 minutes';
    drawChart(state.liveChart, {
      type: 'bar',
      data: { labels, datasets: series },
      options: { animation: false, maintainAspectRatio: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
    });
  }

  function renderChanges(c) {
    const vs = c.versions || [];
    const labels = vs.map((v) => v.version || '(not routed)');
    drawChart(state.costChart, {
      type: 'bar',
      data: {
        labels,
        datasets: [
          { label: 'routed by the policy', data: vs.map((v) => v.exploit.cost_per_request), backgroundColor: labels.map(versionColor) },
          { label: 'exploration', data: vs.map((v) => v.explore.cost_per_request), backgroundColor: '#ced4da' },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ticks: { callback: (v) => usd(v) } } },
        plugins: { tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${usd(ctx.parsed.y)}` } } },
      },
    });
    state.costChart.meta.textContent = `${vs.length} versions since ${c.since}`;
    const box = el('div', 'table-box');
    const tbl = el('table', 'data-table');
    const head = el('tr');
    for (const h of ['Version', 'First seen', 'Requests', 'Cost / request', 'Quality', 'Error rate', 'Exploration', 'Saving vs before', 'Projected', 'Saving / day']) {
      head.append(el('th', '', h));
    }
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    for (const v of [...vs].reverse()) {
      const r = v.report || {};
      const tr = el('tr');
      tr.dataset.version = v.version || '';
      const name = el('td', 'task');
      const dot = el('span', 'dot');
      dot.style.background = versionColor(v.version || '(not routed)');
      name.append(dot, document.createTextNode(v.version || '(not routed by a policy)'));
      const explore = el('td', 'num');
      explore.append(el('div', '', `${int(v.explore.requests)} req`),
        el('div', 'was', v.explore.requests ? `${usd(v.explore.cost_per_request)} · q ${q3(v.explore.quality)}` : ''));
      const vsBefore = el('td', 'num');
      vsBefore.append(el('div', '', isNum(v.realised_saving_pct) ? pct(v.realised_saving_pct) : '–'),
        el('div', 'was', v.before !== null && v.before !== undefined ? `vs ${v.before || '(not routed)'}, same task mix` : ''));
      tr.append(
        name,
        el('td', '', r.first_seen ? String(r.first_seen).slice(0, 19).replace('T', ' ') : '–'),
        el('td', 'num', int(r.requests)),
        el('td', 'num', usd(v.exploit.cost_per_request)),
        el('td', 'num', `${q3(v.exploit.quality)} (${int(v.exploit.samples)})`),
        el('td', 'num', pct(100 * (r.error_rate || 0), 2)),
        explore,
        vsBefore,
        el('td', 'num', pct(v.projected_saving_pct)),
        el('td', 'num', usd(v.realised_saving_usd_per_day, 2)),
      );
      tbody.append(tr);
    }
    tbl.append(thead, tbody);
    box.append(tbl);
    state.versions.body.replaceChildren(box);
    state.versions.meta.textContent = 'newest first; quality = mean feedback of the policy-routed traffic (samples)';
    state.changed.dataset.state = 'ok';
    state.changed.dataset.versions = vs.map((v) => v.version || '').join(',');
  }

  async function loadChanges() {
    try {
      const [c, live] = await Promise.all([call('/api/policy/changes'), call('/api/reports/live_traffic?since=30m')]);
      renderChanges(c);
      renderLive(live);
    } catch (err) {
      state.changed.dataset.state = 'error';
      state.versions.body.replaceChildren(el('div', 'panel-message error', `Could not load the policy versions: ${err.message}`));
    }
  }

  async function start() {
    build();
    await Promise.all([loadProposal(), loadChanges()]);
    document.body.dataset.loopReady = 'true';
    const target = window.location.hash.replace(/^#/, '');
    if (target === 'what-to-change' || target === 'what-changed') $(target).scrollIntoView({ block: 'start' });
    window.setInterval(loadChanges, CHANGES_EVERY_MS);
    window.setInterval(() => {
      if (!state.busy) loadProposal();
    }, PROPOSAL_EVERY_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
