#!/usr/bin/env node
// Drives the console page (`/`) in Debian's headless Chromium as an operator would.
//
//   node tests/browser/console.mjs URL SECONDS PULL_SOURCE
//     URL          the console, e.g. http://127.0.0.1:8080/
//     SECONDS      time allowed for each wait (a pull reaching `running`, ...)
//     PULL_SOURCE  a source the server can pull, e.g. rtmp://127.0.0.1:1935/live/src, which the
//                  console also lists as a stream
//
// Steps: the published stream shows in the streams table; a pull `live/copy` of PULL_SOURCE is
// started with the form, its row reaches `running` and `live/copy` appears in the streams
// table; the Terminate button ends it and both rows go; a pull of `ftp://x` shows the API's
// error under the form. Screenshot: target/artifacts/console.png, with the pull running. Then
// the load-test form starts a real run (3 RTMP sessions of PULL_SOURCE for 25 s) and its
// charts grow with each snapshot (target/artifacts/console-loadtest.png); a second page whose
// event stream is refused falls back to polling, and its charts of the same run grow too
// (target/artifacts/console-charts.png).
//
// Prints ONE line of JSON on stdout:
//   {"steps": {name: ms taken}, "failed": "step: why" or null, "transport", "streamRow",
//    "copyRow", "pullStates" (every state the live/copy row showed), "badPullMessage",
//    "loadtestMessage", "screenshot", "charts": {chart id: [n at first look, n 4 s later]},
//    "loadtestRow", "polling": {"transport", "points": {chart id: [n, n 4.5 s later]}},
//    "consoleErrors"}
// Exit codes: see chromium.mjs.
import { runPage, sleep } from './chromium.mjs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const pullSource = process.argv[4];
if (!pullSource) {
  console.error('usage: node tests/browser/console.mjs URL SECONDS PULL_SOURCE');
  process.exit(64);
}
const artifacts = fileURLToPath(new URL('../../target/artifacts/', import.meta.url));
const CHARTS = ['chart-sessions', 'chart-bitrate', 'chart-loss', 'chart-latency'];

// Text of the row keyed `key` in table `table`, or null.
function rowText([table, key]) {
  const tr = [...document.querySelectorAll(`#${table} tbody tr`)].find((r) => r.dataset.key === key ||
    (r.cells[0] && r.cells[0].textContent.startsWith(key)));
  return tr ? tr.innerText.replace(/\s+/g, ' ').trim() : null;
}
// The pull row whose name cell is `name`.
function pullRow(name) {
  const tr = [...document.querySelectorAll('#pulls tbody tr')].find((r) => r.cells[0] && r.cells[0].textContent.startsWith(name));
  return tr ? { key: tr.dataset.key, state: tr.cells[2].textContent, text: tr.innerText.replace(/\s+/g, ' ').trim() } : null;
}

await runPage('console.mjs', async (page, seconds) => {
  const timeout = seconds * 1000;
  const report = { steps: {}, failed: null, pullStates: [] };
  let current = '';
  const step = async (name, fn) => {
    current = name;
    const t0 = Date.now();
    await fn();
    report.steps[name] = Date.now() - t0;
  };
  try {
    await step('stream listed', async () => {
      await page.waitForFunction(rowText, ['streams', 'live/src'], { timeout });
      // The resolution comes with the first keyframe's parameter sets.
      await page.waitForFunction(([t, k]) => {
        const tr = [...document.querySelectorAll(`#${t} tbody tr`)].find((r) => r.dataset.key === k);
        return tr && /\d+x\d+/.test(tr.innerText);
      }, ['streams', 'live/src'], { timeout });
      report.streamRow = await page.evaluate(rowText, ['streams', 'live/src']);
      report.transport = await page.evaluate(() => window.switchyardConsole.transport);
    });

    await step('pull started', async () => {
      await page.fill('#pull-source', pullSource);
      await page.fill('#pull-name', 'live/copy');
      await page.click('#pull-form button[type=submit]');
      await page.waitForFunction(pullRow, 'live/copy', { timeout });
    });

    await step('pull running', async () => {
      const until = Date.now() + timeout;
      for (;;) {
        const row = await page.evaluate(pullRow, 'live/copy');
        if (row && report.pullStates[report.pullStates.length - 1] !== row.state) report.pullStates.push(row.state);
        if (row && row.state === 'running') break;
        if (Date.now() > until) throw new Error(`the pull row shows ${JSON.stringify(row)}`);
        await sleep(100);
      }
    });

    await step('copy listed', async () => {
      await page.waitForFunction(([t, k]) => {
        const tr = [...document.querySelectorAll(`#${t} tbody tr`)].find((r) => r.dataset.key === k);
        return tr && /\d+x\d+/.test(tr.innerText);
      }, ['streams', 'live/copy'], { timeout });
      report.copyRow = await page.evaluate(rowText, ['streams', 'live/copy']);
      await mkdir(artifacts, { recursive: true });
      report.screenshot = artifacts + 'console.png';
      await page.screenshot({ path: report.screenshot, fullPage: true });
    });

    await step('pull terminated', async () => {
      await page.click('#pulls tbody tr:has(td:first-child:text-is("live/copy")) button:text-is("Terminate")');
      await page.waitForFunction(() => ![...document.querySelectorAll('#pulls tbody tr')]
        .some((r) => r.cells[0] && r.cells[0].textContent.startsWith('live/copy')), null, { timeout });
    });

    await step('copy gone', async () => {
      await page.waitForFunction(() => ![...document.querySelectorAll('#streams tbody tr')]
        .some((r) => r.dataset.key === 'live/copy'), null, { timeout });
    });

    await step('bad pull refused', async () => {
      await page.fill('#pull-source', 'ftp://x');
      await page.fill('#pull-name', 'live/bad');
      await page.click('#pull-form button[type=submit]');
      await page.waitForFunction(() => document.querySelector('#pull-msg.err')?.textContent, null, { timeout });
      report.badPullMessage = await page.textContent('#pull-msg');
    });

    await step('load test started', async () => {
      await page.fill('#lt-target', pullSource);
      await page.fill('#lt-sessions', '3');
      await page.fill('#lt-duration', '25');
      await page.fill('#lt-nodes', '');
      await page.click('#loadtest-form button[type=submit]');
      await page.waitForFunction(() => {
        const m = document.querySelector('#loadtest-msg');
        return m && m.textContent && m.textContent !== 'Starting…';
      }, null, { timeout });
      report.loadtestMessage = await page.textContent('#loadtest-msg');
    });

    // The charts of the real run grow with each snapshot.
    const points = (p) => p.evaluate((ids) => ids.map((id) => Number(document.getElementById(id).dataset.points)), CHARTS);
    await step('charts update', async () => {
      await page.waitForFunction(() => Number(document.getElementById('chart-sessions').dataset.points) >= 2, null, { timeout });
      const first = await points(page);
      await sleep(4000);
      const later = await points(page);
      report.charts = Object.fromEntries(CHARTS.map((id, i) => [id, [first[i], later[i]]]));
      report.loadtestRow = await page.evaluate(() => {
        const tr = document.querySelector('#loadtests tbody tr');
        return tr ? tr.innerText.replace(/\s+/g, ' ').trim() : null;
      });
      await page.screenshot({ path: artifacts + 'console-loadtest.png', fullPage: true });
    });

    await step('charts while polling', async () => {
      // A second page without the event stream: it polls the same run.
      const p2 = await page.context().newPage();
      await p2.route('**/api/v1/events', (route) => route.abort());
      await p2.goto(page.url(), { waitUntil: 'load' });
      await p2.waitForFunction(() => Number(document.getElementById('chart-sessions').dataset.points) >= 2, null, { timeout });
      const first = await points(p2);
      await sleep(4500);
      const later = await points(p2);
      report.polling = {
        transport: await p2.evaluate(() => window.switchyardConsole.transport),
        conn: await p2.textContent('#conn'),
        points: Object.fromEntries(CHARTS.map((id, i) => [id, [first[i], later[i]]])),
      };
      await p2.screenshot({ path: artifacts + 'console-charts.png', fullPage: true });
      await p2.close();
    });
  } catch (e) {
    report.failed = `${current}: ${String(e.message || e).split('\n')[0]}`;
    report.bodyText = await page.evaluate(() => document.body.innerText.slice(0, 4000)).catch(() => null);
  }
  return report;
});
