// Shared by play.mjs and publish.mjs: runs one page in Debian's headless Chromium for a while and
// prints ONE line of JSON on stdout.
//
// Exit codes: 0 the page was read (whatever it showed), 1 Chromium could not be launched,
// 2 the page could not be opened or read, 3 the run timed out, 64 bad arguments.
// Never downloads a browser: it uses /usr/bin/chromium (override with CHROMIUM=/path).
import { chromium } from 'playwright-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Flags verified on this machine (shared/TOOLBOX.md, "Headless Chromium"). Chromium keeps only the
// last --disable-features, and Playwright passes its own list first, so the features Playwright
// needs disabled are repeated here next to ours.
export const FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns,AvoidUnnecessaryBeforeUnloadCheckSync,' +
    'DestroyProfileOnBrowserClose,HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,MediaRouter,' +
    'DialMediaRouteProvider,Translate,LensOverlay',
];

// SWITCHYARD_FAKE_AUDIO=/path/file.wav: the fake microphone plays that file (looped) instead of
// Chromium's beeps, e.g. a continuous tone whose level a test can check after the round trip.
if (process.env.SWITCHYARD_FAKE_AUDIO) {
  FLAGS.push('--use-file-for-fake-audio-capture=' + process.env.SWITCHYARD_FAKE_AUDIO);
}

// SWITCHYARD_CHROMIUM_SPKI=BASE64: trust the TLS certificate whose public key (SPKI) has that
// SHA-256, as a user who accepted a self-signed certificate would (Chromium honours the flag with
// a user data directory, which runPage always uses).
if (process.env.SWITCHYARD_CHROMIUM_SPKI) {
  FLAGS.push('--ignore-certificate-errors-spki-list=' + process.env.SWITCHYARD_CHROMIUM_SPKI);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Parses `URL SECONDS` from the command line, opens URL, and calls
// `measure(page, seconds)`; what it returns is printed with `consoleErrors` added. Afterwards the
// page is navigated away, so its `pagehide` handlers end server sessions (WHIP/WHEP DELETE),
// and the browser is closed. Does not return: exits the process.
// `init` (optional): `{ script, arg }` for Playwright's `addInitScript`, run in the page before
// its own scripts.
export async function runPage(script, measure, init = null) {
  const [url, secondsArg] = process.argv.slice(2);
  const seconds = Number(secondsArg ?? 10);
  if (!url || !Number.isFinite(seconds) || seconds <= 0) {
    console.error(`usage: node tests/browser/${script} URL SECONDS`);
    process.exit(64);
  }
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  const consoleErrors = [];
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
    if (init) await page.addInitScript(init.script, init.arg);
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
    let result;
    try {
      result = await measure(page, seconds);
    } catch (e) {
      exitCode = 2;
      emit({ fatal: 'could not read the page: ' + String(e.message || e).split('\n')[0], consoleErrors });
      throw e;
    }
    emit({ ...result, consoleErrors });
    // Leave the page so it ends its sessions (a keepalive DELETE outlives the page); give the
    // request a moment before the browser goes.
    await page.goto('about:blank', { timeout: 5_000 }).catch(() => {});
    await sleep(300);
  } catch (e) {
    if (exitCode === 0) exitCode = 2;
    console.error(String(e && e.stack || e));
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
  process.exit(exitCode);
}
