#!/usr/bin/env node
// Plays a Switchyard player page in Debian's headless Chromium and reports what the <video> did.
//
//   node tests/browser/play.mjs URL SECONDS        (URL e.g. http://127.0.0.1:8080/play/live/cam1?mode=webrtc)
//
// Prints ONE line of JSON on stdout:
//   {"currentTime","totalVideoFrames","droppedVideoFrames","videoWidth","videoHeight","latency",
//    "state","mode","errors","warnings","wallClockMs","bodyText","playingDateMs",
//    "webrtc" (WebRTC mode: window.switchyardPlayer.webrtc, else null),
//    "consoleErrors","advanced","currentTimeAtHalf","totalVideoFramesAtHalf",
//    "framesDecodedAtHalf","audioSamplesAtHalf","audioLevelAtHalf" (WebRTC mode, else null),
//    "videoSizesSeen" (every "WxH" the <video> showed, in order, sampled every 250 ms)}
// With SWITCHYARD_PLAY_UNMUTED=1 in the environment the <video> is unmuted once the page has
// loaded: Chromium reports a WebRTC audio track's `audioLevel` (webrtc.audioLevel) only for
// audio it plays out, and the page starts muted (autoplay).
// Exit codes: see chromium.mjs (0 the page was read, whatever it showed; 1 Chromium could not be
// launched; 2 the page could not be opened or read).
import { runPage, sleep } from './chromium.mjs';

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
    warnings: Array.isArray(p.warnings) ? [...p.warnings] : [],
    // For glass-to-player latency: when this sample was taken, and (HLS) the program date
    // time of the frame on screen.
    wallClockMs: Date.now(),
    bodyText: document.body ? document.body.innerText.slice(0, 4000) : '',
    playingDateMs: typeof p.playingDate === 'number' ? p.playingDate : null,
    webrtc: p.webrtc && typeof p.webrtc === 'object' ? { ...p.webrtc } : null,
  };
}

// Waits `ms`, noting every picture size the <video> shows (a stream can change resolution).
// Writes `play.mjs: playing after N ms` on stderr once the video's time first advances, so a
// caller can change the stream while it plays.
const opened = Date.now();
let announced = false;
async function watchSizes(page, ms, sizes) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const { size, time } = await page.evaluate(() => {
      const v = document.querySelector('video');
      return { size: v && v.videoWidth ? v.videoWidth + 'x' + v.videoHeight : null, time: v ? v.currentTime : 0 };
    });
    if (size && sizes[sizes.length - 1] !== size) sizes.push(size);
    if (!announced && time > 0) {
      announced = true;
      process.stderr.write(`play.mjs: playing after ${Date.now() - opened} ms\n`);
    }
    await sleep(Math.min(250, Math.max(0, until - Date.now())));
  }
}

await runPage('play.mjs', async (page, seconds) => {
  const half = (seconds * 1000) / 2;
  if (process.env.SWITCHYARD_PLAY_UNMUTED === '1') {
    await page.evaluate(() => { const v = document.querySelector('video'); if (v) v.muted = false; });
  }
  const videoSizesSeen = [];
  await watchSizes(page, half, videoSizesSeen);
  const first = await page.evaluate(sample);
  await watchSizes(page, seconds * 1000 - half, videoSizesSeen);
  const last = await page.evaluate(sample);
  const advanced = typeof first.currentTime === 'number' && typeof last.currentTime === 'number' &&
    last.currentTime > first.currentTime;
  return {
    ...last, advanced, currentTimeAtHalf: first.currentTime, totalVideoFramesAtHalf: first.totalVideoFrames,
    framesDecodedAtHalf: first.webrtc ? first.webrtc.framesDecoded : null,
    audioSamplesAtHalf: first.webrtc ? first.webrtc.audioSamplesReceived : null,
    audioLevelAtHalf: first.webrtc ? first.webrtc.audioLevel : null,
    videoSizesSeen,
  };
});
