// Opens switchyard's loop pages in headless Chromium and walks the loop: "What to change"
// shows the recommended policy against the live one, Apply puts it in force on the proxy, and
// "What changed" then lists the new policy version with traffic under it.
// Usage: node tests/browser/loop.mjs URL SCREENSHOT.png [--token TOKEN]
// Prints a JSON summary on stdout; exits 0 when all checks pass, 1 with one line per failure
// on stderr otherwise, 2 on bad usage.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT_MS = 60_000;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'];

function usage(message) {
  process.stderr.write(`${message}\nusage: node tests/browser/loop.mjs URL SCREENSHOT.png [--token TOKEN]\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
const positional = [];
let token = process.env.SWITCHYARD_ADMIN_TOKEN || '';
for (let i = 0; i < argv.length; i += 1) {
  if (argv[i] === '--token') token = argv[(i += 1)] || usage('--token needs a value');
  else if (argv[i].startsWith('--')) usage(`unknown option ${argv[i]}`);
  else positional.push(argv[i]);
}
if (positional.length !== 2) usage('expected URL and SCREENSHOT.png');
const [url, screenshot] = positional;

const failures = [];
const consoleErrors = [];
const summary = { ok: false };
const profile = mkdtempSync(join(tmpdir(), 'switchyard-loop-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, viewport: { width: 1440, height: 1800 } });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  if (token) await page.addInitScript((t) => window.localStorage.setItem('switchyard.adminToken', t), token);
  await page.goto(`${url.replace(/\/$/, '')}/#what-to-change`, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => document.body.dataset.loopReady === 'true', null, { timeout: TIMEOUT_MS, polling: 100 });

  // What to change: the policy, per task, against the live one.
  const before = await page.evaluate(() => ({
    state: document.getElementById('what-to-change').dataset.state,
    tasks: document.querySelectorAll('#proposal-panel tbody tr').length,
    changed: document.querySelectorAll('#proposal-panel tbody tr[data-changed="true"]').length,
    live: document.getElementById('live-version').dataset.version,
    proposed: document.getElementById('apply-policy').dataset.version,
    applyEnabled: !document.getElementById('apply-policy').disabled,
    saving: Number(document.getElementById('projected-saving').dataset.usdPerDay),
    summary: document.getElementById('proposal-summary').textContent,
  }));
  summary.before = before;
  if (before.state !== 'ok') failures.push(`what to change: state ${before.state}`);
  if (before.tasks < 3) failures.push(`what to change: ${before.tasks} task rows`);
  if (before.changed < 1) failures.push('what to change: no task changes against the live policy');
  if (!before.applyEnabled) failures.push('what to change: the Apply button is disabled');
  if (!(before.saving > 0)) failures.push(`what to change: projected saving ${before.saving} USD/day`);

  // Apply: the live policy version changes.
  await page.click('#apply-policy');
  await page.waitForFunction(() => document.body.dataset.appliedVersion, null, { timeout: TIMEOUT_MS, polling: 100 });
  const applied = await page.evaluate(() => document.body.dataset.appliedVersion);
  await page.waitForFunction((v) => document.getElementById('live-version').dataset.version === v, applied, { timeout: TIMEOUT_MS, polling: 200 });
  summary.applied = applied;
  summary.status = await page.textContent('#apply-status');
  if (applied !== before.proposed) failures.push(`apply: put ${applied} in force, the page proposed ${before.proposed}`);
  if (applied === before.live) failures.push(`apply: the live version stayed ${applied}`);

  // What changed: the new version appears once traffic runs under it (the page refreshes).
  await page.waitForFunction(
    (v) => (document.getElementById('what-changed').dataset.versions || '').split(',').includes(v),
    applied,
    { timeout: TIMEOUT_MS, polling: 500 },
  );
  const after = await page.evaluate((v) => {
    const row = document.querySelector(`#versions-panel tr[data-version="${v}"]`);
    return {
      versions: document.getElementById('what-changed').dataset.versions.split(','),
      row: row ? [...row.querySelectorAll('td')].map((td) => td.textContent.trim()) : null,
      charts: [...document.querySelectorAll('#what-changed canvas')].map((c) => c.width > 0 && c.height > 0),
    };
  }, applied);
  summary.after = after;
  if (!after.row) failures.push(`what changed: no row for ${applied}`);
  if (after.charts.length !== 2 || after.charts.some((d) => !d)) failures.push(`what changed: charts drawn ${JSON.stringify(after.charts)}`);
  await page.locator('#loop').screenshot({ path: screenshot });
} catch (err) {
  failures.push(`unexpected: ${err && err.message ? err.message : err}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
for (const e of consoleErrors) failures.push(`console error: ${e}`);
summary.ok = failures.length === 0;
summary.failures = failures;
process.stdout.write(`${JSON.stringify(summary)}\n`);
if (failures.length) {
  for (const f of failures) process.stderr.write(`${f}\n`);
  process.exit(1);
}
