#!/usr/bin/env node
// Plays a Switchyard player page in Debian's headless Chromium and reports what the <video> did.
//
//   node tests/browser/play.mjs URL SECONDS
//
// Prints ONE line of JSON on stdout:
//   {"currentTime","totalVideoFrames","droppedVideoFrames","videoWidth","videoHeight","latency",
//    "state","errors","consoleErrors","advanced", ...}
// Exit codes: 0 the page was read (whatever it showed), 1 Chromium could not be launched,
// 2 the page could not be opened or read. Never downloads a browser: it uses /usr/bin/chromium
// (override with CHROMIUM=/path).
import { chromium } from 'playwright-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 10);
if (!url || !Number.isFinite(seconds) || seconds <= 0) {
  console.error('usage: node tests/browser/play.mjs URL SECONDS');
  process.exit(64);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

// Flags verified on this machine (shared/TOOLBOX.md, "Headless Chromium"). Chromium keeps only the
// last --disable-features, and Playwright passes its own list first, so the features Playwright
// needs disabled are repeated here next to ours.
const FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns,AvoidUnnecessaryBeforeUnloadCheckSync,' +
    'DestroyProfileOnBrowserClose,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,MediaRouter,' +
    'DialMediaRouteProvider,Translate,LensOverlay',
];

const consoleErrors = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Runs in the page: reads the first <video> and window.switchyardPlayer.
function sample() {
  const v = document.querySelector('video');
  const p = window.switchyardPlayer || {};
  const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  return {
    currentTime: v ? v.currentTime : null,
    totalVideoFrames: q ? q.totalVideoFrames : null,
    droppedVideoFrames: q ? q.droppedVideoFrames : null,
    videoWidth: v ? v.videoWidth : null,
    videoHeight: v ? v.videoHeight : null,
    latency: typeof p.latency === 'number' && Number.isFinite(p.latency) ? p.latency : null,
    state: p.state ?? null,
    mode: p.mode ?? null,
    errors: Array.isArray(p.errors) ? [...p.errors] : [],
    // For glass-to-player latency: when this sample was taken, and (HLS) the program date
    // time of the frame on screen.
    wallClockMs: Date.now(),
    bodyText: document.body ? document.body.innerText.slice(0, 4000) : '',
    playingDateMs: typeof p.playingDate === 'number' ? p.playingDate : null,
  };
}

const userDataDir = await mkdtemp(join(tmpdir(), 'switchyard-chromium-'));
let context = null;
let exitCode = 0;
// A hung browser must not hang the caller: give up well after the planned time.
const watchdog = setTimeout(() => {
  emit({ fatal: 'timed out', consoleErrors });
  rm(userDataDir, { recursive: true, force: true }).finally(() => process.exit(3));
}, (seconds + 90) * 1000);

try {
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: FLAGS,
      viewport: { width: 1280, height: 800 },
      timeout: 60_000,
    });
  } catch (e) {
    exitCode = 1;
    emit({ fatal: 'could not launch ' + executablePath + ': ' + String(e.message || e).split('\n')[0], consoleErrors });
    throw e;
  }
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push('pageerror: ' + (e.message || String(e))));
  page.on('crash', () => consoleErrors.push('page crashed'));
  try {
    const resp = await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    if (resp && !resp.ok()) consoleErrors.push(`HTTP ${resp.status()} for ${url}`);
  } catch (e) {
    exitCode = 2;
    emit({ fatal: 'could not open ' + url + ': ' + String(e.message || e).split('\n')[0], consoleErrors });
    throw e;
  }
  try {
    const half = (seconds * 1000) / 2;
    await sleep(half);
    const first = await page.evaluate(sample);
    await sleep(seconds * 1000 - half);
    const last = await page.evaluate(sample);
    const advanced = typeof first.currentTime === 'number' && typeof last.currentTime === 'number' &&
      last.currentTime > first.currentTime;
    emit({ ...last, consoleErrors, advanced, currentTimeAtHalf: first.currentTime,
           totalVideoFramesAtHalf: first.totalVideoFrames });
  } catch (e) {
    exitCode = 2;
    emit({ fatal: 'could not read the page: ' + String(e.message || e).split('\n')[0], consoleErrors });
    throw e;
  }
} catch (e) {
  if (exitCode === 0) exitCode = 2;
  console.error(String(e && e.stack || e));
} finally {
  clearTimeout(watchdog);
  if (context) await context.close().catch(() => {});
  await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}
process.exit(exitCode);
