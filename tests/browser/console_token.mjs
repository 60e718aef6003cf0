#!/usr/bin/env node
// The console page (`/`) of a server whose API needs a token, in Debian's headless Chromium.
//
//   SWITCHYARD_API_TOKEN=T node tests/browser/console_token.mjs URL SECONDS
//
// The page's `window.prompt` answers T (as a person typing it would), so the console's first
// API answer, a 401, makes it ask, keep the token in localStorage and send it as a bearer; its
// event stream (`EventSource`, which cannot set headers) goes with `?token=`. Waits up to
// SECONDS for the live event stream and for the streams table to list a stream.
//
// Prints ONE line of JSON on stdout: {"prompts", "conn", "streams", "stored", "consoleErrors"}.
// Exit codes: see chromium.mjs.
import { runPage, sleep } from './chromium.mjs';

const token = process.env.SWITCHYARD_API_TOKEN || '';

runPage('console_token.mjs', async (page, seconds) => {
  const deadline = Date.now() + seconds * 1000;
  let seen = {};
  while (Date.now() < deadline) {
    seen = await page.evaluate(() => ({
      prompts: window.__prompts || 0,
      conn: document.getElementById('conn').textContent,
      streams: document.getElementById('streams').innerText,
      stored: localStorage.getItem('switchyard.apiToken'),
    }));
    if (/server events/.test(seen.conn) && /live\//.test(seen.streams)) break;
    await sleep(250);
  }
  return seen;
}, {
  script: (t) => {
    window.__prompts = 0;
    window.prompt = () => { window.__prompts += 1; return t; };
  },
  arg: token,
});
