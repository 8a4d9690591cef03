// Measures the dashboards' first load in headless Chromium: from navigation to the moment the
// page says every panel has its data (body[data-ready=true]), each time in a fresh browser
// context (no HTTP cache), with the time each panel's report request took in the browser.
// Usage: node benches/dashboard_load.mjs URL [RUNS]
// Prints one JSON object: {"runs_ms": [...], "median_ms": m, "panels": n, "reports": {...}}.
// playwright-core comes from tests/browser (npm ci there); Chromium is Debian's.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const [url, runsArg] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node benches/dashboard_load.mjs URL [RUNS]\n');
  process.exit(2);
}
const runs = Number(runsArg || 5);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const times = [];
const reports = {};
let panels = 0;
try {
  for (let i = 0; i < runs; i += 1) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const t0 = Date.now();
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60_000 });
    await page.waitForFunction(
      () => document.body.dataset.ready === 'true' && Number(document.body.dataset.generation || 0) > 0,
      null,
      { timeout: 60_000, polling: 10 },
    );
    const loaded = Date.now() - t0;
    const state = await page.evaluate(() => ({
      error: document.body.dataset.error || '',
      panels: [...document.querySelectorAll('[data-panel-id]')].map((e) => e.dataset.state),
      requests: performance.getEntriesByType('resource')
        .filter((r) => r.name.includes('/api/reports/'))
        .map((r) => ({ name: new URL(r.name).pathname.split('/').pop(), ms: r.duration })),
    }));
    if (state.error) throw new Error(`page error: ${state.error}`);
    const bad = state.panels.filter((s) => s !== 'ok' && s !== 'empty');
    if (bad.length) throw new Error(`panels not drawn: ${bad.join(', ')}`);
    panels = state.panels.length;
    for (const r of state.requests) (reports[r.name] ||= []).push(Math.round(r.ms));
    times.push(loaded);
    await context.close();
  }
} finally {
  await browser.close();
}
const sorted = [...times].sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({
  runs_ms: times,
  median_ms: sorted[Math.floor(sorted.length / 2)],
  panels,
  reports,
})}\n`);
