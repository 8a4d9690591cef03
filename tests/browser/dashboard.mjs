// Opens switchyard's dashboards in headless Chromium and checks that every panel renders.
// Usage: node tests/browser/dashboard.mjs URL SCREENSHOT.png [--allow-empty ID,ID] [--token TOKEN]
// The admin token may also come from SWITCHYARD_ADMIN_TOKEN. Prints a JSON summary on stdout;
// exits 0 when all checks pass, 1 with one line per failure on stderr otherwise, 2 on bad usage.
import { chromium } from 'playwright-core';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT_MS = 30_000;
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function usage(message) {
  process.stderr.write(`${message}\nusage: node tests/browser/dashboard.mjs URL SCREENSHOT.png [--allow-empty ID,ID] [--token TOKEN]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const opts = { allowEmpty: new Set(), token: process.env.SWITCHYARD_ADMIN_TOKEN || '' };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const value = () => {
      if (a.includes('=')) return a.slice(a.indexOf('=') + 1);
      i += 1;
      if (i >= argv.length) usage(`${a} needs a value`);
      return argv[i];
    };
    if (a.startsWith('--allow-empty')) value().split(',').filter(Boolean).forEach((id) => opts.allowEmpty.add(id));
    else if (a.startsWith('--token')) opts.token = value();
    else if (a === '-h' || a === '--help') usage('');
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else positional.push(a);
  }
  if (positional.length !== 2) usage('expected URL and SCREENSHOT.png');
  [opts.url, opts.screenshot] = positional;
  if (!/^https?:\/\//.test(opts.url)) usage(`URL must start with http:// or https://, got ${opts.url}`);
  return opts;
}

function filteredName(path) {
  return /\.png$/i.test(path) ? path.replace(/\.png$/i, '-filtered.png') : `${path}-filtered.png`;
}

// Reads every panel's state from the page.
async function readPanels(page) {
  return page.$$eval('[data-panel-id]', (els) => els.map((e) => {
    const canvas = e.querySelector('canvas');
    const box = canvas ? canvas.getBoundingClientRect() : null;
    const message = e.querySelector('.panel-message');
    return {
      id: e.dataset.panelId,
      chart: e.dataset.chart,
      state: e.dataset.state,
      rows: Number(e.dataset.rows),
      message: message ? message.textContent.trim() : '',
      canvas: box ? { width: Math.round(box.width), height: Math.round(box.height), drawn: canvas.width > 0 && canvas.height > 0 } : null,
      table_rows: e.querySelectorAll('table tbody tr').length,
    };
  }));
}

async function pageStatus(page) {
  return page.evaluate(() => ({
    ready: document.body.dataset.ready || '',
    generation: Number(document.body.dataset.generation || 0),
    auth: document.body.dataset.auth || '',
    error: document.body.dataset.error || '',
    window: (document.getElementById('window-label') || {}).textContent || '',
  }));
}

// Waits until the page has settled a load newer than `after`.
async function waitReady(page, after, what, failures) {
  try {
    await page.waitForFunction(
      (g) => document.body.dataset.auth === 'required'
        || (document.body.dataset.ready === 'true' && Number(document.body.dataset.generation || 0) > g)
        || (document.body.dataset.ready === 'true' && document.body.dataset.error),
      after,
      { timeout: TIMEOUT_MS, polling: 100 },
    );
  } catch (err) {
    const panels = await readPanels(page).catch(() => []);
    const pending = panels.filter((p) => p.state === 'loading').map((p) => p.id);
    failures.push(`${what}: body[data-ready=true] not reached within ${TIMEOUT_MS / 1000} s${pending.length ? `; panels still loading: ${pending.join(', ')}` : ''}`);
    return false;
  }
  const st = await pageStatus(page);
  if (st.auth === 'required') {
    failures.push(`${what}: the server answered 401 and the page asks for the admin token; pass --token or set SWITCHYARD_ADMIN_TOKEN`);
    return false;
  }
  if (st.error) {
    failures.push(`${what}: page error banner: ${st.error}`);
    return false;
  }
  return true;
}

function checkPanels(panels, what, strict, allowEmpty, failures) {
  if (panels.length === 0) {
    failures.push(`${what}: no panels on the page`);
    return;
  }
  for (const p of panels) {
    const tag = `${what}: panel "${p.id}" (${p.chart})`;
    const emptyOk = !strict || allowEmpty.has(p.id);
    if (p.state === 'empty' && emptyOk) continue;
    if (p.state !== 'ok') {
      failures.push(`${tag} is in state "${p.state}"${p.message ? `: ${p.message}` : ''}`);
      continue;
    }
    if (strict && !(p.rows > 0)) failures.push(`${tag} has data-rows=${p.rows}, expected > 0`);
    if (p.chart === 'table') {
      if (p.table_rows === 0) failures.push(`${tag} shows a table with no rows`);
    } else if (!p.canvas) {
      failures.push(`${tag} has no canvas`);
    } else if (!(p.canvas.width > 0 && p.canvas.height > 0 && p.canvas.drawn)) {
      failures.push(`${tag} has a canvas of size ${p.canvas.width}x${p.canvas.height}`);
    }
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const failures = [];
  const consoleErrors = [];
  const pageErrors = [];
  const failedRequests = [];
  const phases = [];
  const screenshots = [];
  if (!existsSync(CHROMIUM)) {
    failures.push(`no Chromium at ${CHROMIUM}: install it with "apt-get install -y chromium"`);
    return finish();
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'));
  let context = null;
  let page = null;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      deviceScaleFactor: 1,
      timeout: TIMEOUT_MS,
    });
    if (opts.token) {
      await context.addInitScript((token) => window.localStorage.setItem('switchyard.adminToken', token), opts.token);
    }
    page = context.pages()[0] || await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        const loc = msg.location();
        consoleErrors.push(`${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
      }
    });
    page.on('pageerror', (err) => pageErrors.push(err.stack || String(err)));
    page.on('requestfailed', (req) => failedRequests.push(`${req.method()} ${req.url()}: ${req.failure() ? req.failure().errorText : 'failed'}`));
    page.on('response', (res) => {
      if (res.status() >= 400) failedRequests.push(`${res.request().method()} ${res.url()}: HTTP ${res.status()}`);
    });

    const res = await page.goto(opts.url, { waitUntil: 'domcontentloaded', timeout: TIMEOUT_MS });
    if (!res || !res.ok()) {
      failures.push(`GET ${opts.url} answered ${res ? `HTTP ${res.status()}` : 'nothing'}`);
    } else if (await waitReady(page, 0, 'initial load', failures)) {
      // Phase 1: the default view (30 days ending at the newest data, all tasks and models).
      const panels = await readPanels(page);
      phases.push({ name: 'initial', ...(await pageStatus(page)), panels });
      checkPanels(panels, 'initial load', true, opts.allowEmpty, failures);
      await page.screenshot({ path: opts.screenshot, fullPage: true });
      screenshots.push(opts.screenshot);

      // Phase 2: range 7d.
      let gen = (await pageStatus(page)).generation;
      await page.selectOption('#range', '7d');
      if (await waitReady(page, gen, 'range 7d', failures)) {
        const p2 = await readPanels(page);
        phases.push({ name: 'range 7d', ...(await pageStatus(page)), panels: p2 });
        checkPanels(p2, 'range 7d', false, opts.allowEmpty, failures);

        // Phase 3: range 7d and the first task.
        const task = await page.$eval('#task', (s) => (s.options.length > 1 ? s.options[1].value : null));
        if (!task) {
          failures.push('task filter: the select lists no task (expected tasks from /api/dashboards)');
        } else {
          gen = (await pageStatus(page)).generation;
          await page.selectOption('#task', task);
          if (await waitReady(page, gen, `range 7d + task ${task}`, failures)) {
            const p3 = await readPanels(page);
            phases.push({ name: `range 7d + task ${task}`, ...(await pageStatus(page)), panels: p3 });
            checkPanels(p3, `range 7d + task ${task}`, false, opts.allowEmpty, failures);
            const shot = filteredName(opts.screenshot);
            await page.screenshot({ path: shot, fullPage: true });
            screenshots.push(shot);
          }
        }
      }
    }
  } catch (err) {
    failures.push(`browser run failed: ${err && err.message ? err.message.split('\n')[0] : err}`);
  } finally {
    if (page && screenshots.length === 0) {
      await page.screenshot({ path: opts.screenshot, fullPage: true }).then(() => screenshots.push(opts.screenshot), () => {});
    }
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
  return finish();

  function finish() {
    for (const e of consoleErrors) failures.push(`console error: ${e}`);
    for (const e of pageErrors) failures.push(`page error: ${e.split('\n')[0]}`);
    for (const e of failedRequests) failures.push(`failed request: ${e}`);
    const summary = {
      ok: failures.length === 0,
      url: opts.url,
      elapsed_ms: Date.now() - started,
      screenshots,
      phases: phases.map((p) => ({
        name: p.name,
        window: p.window,
        panels: p.panels.map((x) => ({ id: x.id, chart: x.chart, state: x.state, rows: x.rows, ...(x.canvas ? { canvas: `${x.canvas.width}x${x.canvas.height}` } : {}), ...(x.state === 'error' || x.state === 'empty' ? { message: x.message } : {}) })),
      })),
      console_errors: consoleErrors,
      page_errors: pageErrors,
      failed_requests: failedRequests,
      failures,
    };
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    if (failures.length) {
      process.stderr.write(`dashboard check FAILED (${failures.length}):\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`dashboard check passed: ${phases.length} phases, ${phases[0] ? phases[0].panels.length : 0} panels\n`);
    }
  }
}

main().catch((err) => {
  process.stderr.write(`dashboard check crashed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
