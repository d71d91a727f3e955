// webui.mjs drives headless Chromium (Debian's, through playwright-core)
// through the Temporal Web UI: it lists a namespace's workflows filtered by
// a visibility query, waits for the expected workflow's row, checks its
// summary, and keeps screenshots. webui_test.go runs it.
//
// usage: node webui.mjs <ui-url> <namespace> <query> <workflow-id> <summary> <screenshot.png>
//
// Prints one JSON line: {"ok":true,...} and exits 0, or {"ok":false,"error":...}
// and exits 1. CHROMIUM (default /usr/bin/chromium) names the browser and
// WEBUI_TIMEOUT_MS (default 60000) bounds the waits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [ui, namespace, query, workflowId, summary, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error('usage: node webui.mjs <ui-url> <namespace> <query> <workflow-id> <summary> <screenshot.png>');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.WEBUI_TIMEOUT_MS || 60000);
const deadline = Date.now() + timeout;
const left = () => Math.max(1000, deadline - Date.now());

const base = ui.replace(/\/+$/, '');
const listURL = `${base}/namespaces/${encodeURIComponent(namespace)}/workflows?query=${encodeURIComponent(query)}`;
const detailShot = screenshot.replace(/(\.png)?$/, '-workflow.png');
const steps = [];
const step = (s) => steps.push(`${new Date().toISOString()} ${s}`);

// A fresh profile for every run; the flags keep Chromium off the network
// (a closed CI network refuses its background connections).
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'webui-chromium-'));
let context;
let page;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  // The list is rendered in the browser from the visibility store; reload
  // until the workflow's row shows (visibility is eventually consistent).
  const row = page.getByRole('link', { name: workflowId, exact: true });
  for (let attempt = 1; ; attempt++) {
    step(`open ${listURL} (attempt ${attempt})`);
    await page.goto(listURL, { waitUntil: 'domcontentloaded', timeout: left() });
    try {
      await row.first().waitFor({ state: 'visible', timeout: Math.min(10000, left()) });
      break;
    } catch (e) {
      if (Date.now() >= deadline) {
        throw new Error(`workflow ${workflowId} not listed for ${query}; console errors: ${JSON.stringify(consoleErrors)}`);
      }
    }
  }
  step(`row ${workflowId} listed`);

  // The filter the UI applied is the one asked for: its chip names the
  // search attribute, and no other workflow's row is listed.
  const attr = query.split(/\s*=/)[0].trim();
  const body = await page.innerText('body');
  if (!body.includes(attr)) throw new Error(`the list page shows no ${attr} filter`);
  // The workflow IDs the list links to (a row's ID and run ID both link
  // to /namespaces/<ns>/workflows/<id>/<run>).
  const listedIDs = await page.locator('a[href*="/workflows/"]').evaluateAll((as, ns) => [...new Set(as
    .map((a) => new URL(a.href).pathname.split('/'))
    .filter((p) => p[1] === 'namespaces' && p[2] === ns && p[3] === 'workflows' && p.length >= 6)
    .map((p) => decodeURIComponent(p[4])))], namespace);
  await page.screenshot({ path: screenshot, fullPage: true });
  step(`list screenshot ${screenshot}`);

  // Summaries: shown on the list when the UI version has a column for them,
  // otherwise on the workflow's page (opened from its row).
  let summaryShownOn;
  if (await page.getByText(summary, { exact: true }).first().isVisible()) {
    summaryShownOn = 'list';
  } else {
    await row.first().click();
    await page.waitForURL((u) => decodeURIComponent(u.pathname).includes(`/workflows/${workflowId}`), { timeout: left() });
    step(`opened ${page.url()}`);
    await page.getByText(summary, { exact: true }).first().waitFor({ state: 'visible', timeout: left() });
    summaryShownOn = 'workflow page';
    await page.screenshot({ path: detailShot, fullPage: true });
    step(`workflow screenshot ${detailShot}`);
  }
  console.log(JSON.stringify({
    ok: true, url: listURL, workflowId, summary, summaryShownOn, listedIDs,
    uiVersion: (body.match(/Version\s+(\d+\.\d+\.\d+)/) || [])[1],
    screenshots: summaryShownOn === 'list' ? [screenshot] : [screenshot, detailShot], steps,
  }));
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  let shot;
  if (page) {
    shot = screenshot.replace(/(\.png)?$/, '-failure.png');
    await page.screenshot({ path: shot, fullPage: true }).catch(() => { shot = undefined; });
  }
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), url: listURL, page: page && page.url(), screenshot: shot, steps }));
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(1);
}
