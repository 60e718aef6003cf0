#!/usr/bin/env node
// Publishes Chromium's fake camera and microphone through a Switchyard publish page (WHIP) for
// SECONDS, then reports what the page sent. Run a player (play.mjs) in another process meanwhile
// to check the stream end to end; publishing lasts the whole SECONDS and ends with a DELETE.
//
//   node tests/browser/publish.mjs URL SECONDS     (URL e.g. http://127.0.0.1:8080/publish/live/cam1)
//
// Prints ONE line of JSON on stdout (from window.switchyardPublisher at the end, and at half time):
//   {"state","connectionState","iceConnectionState","errors","warnings","sessionUrl","tracks",
//    "bytesSent","framesEncoded","packetsSent" (video outbound-rtp), "audioPacketsSent","audioBytesSent",
//    "frameWidth","frameHeight","framesPerSecond","videoCodec","audioCodec","qualityLimitationReason",
//    "wallClockMs","bodyText",
//    "stateAtHalf","connectionStateAtHalf","bytesSentAtHalf","framesEncodedAtHalf","packetsSentAtHalf",
//    "audioPacketsSentAtHalf","advanced" (video bytes grew from half time to the end),"consoleErrors"}
// On stderr, one line `publish.mjs: publishing after N ms` when the page first reports
// state "publishing" (N counted from the page load), so a caller can start players then;
// Chromium can take several seconds to launch on a busy machine.
// With SWITCHYARD_SCALABILITY_MODE=MODE in the environment (e.g. L2T1, L3T3_KEY), the page's
// video transceiver is added with sendEncodings [{scalabilityMode: MODE}] (SVC, for VP9 and
// AV1), and the report has `scalabilityMode` (what the sender's parameters say) and
// `spatialLayers` (outbound-rtp frame sizes seen, from getStats).
// Exit codes: see chromium.mjs (0 the page was read, whatever it showed; 1 Chromium could not be
// launched; 2 the page could not be opened or read).
import { runPage, sleep } from './chromium.mjs';

// Runs in the page: window.switchyardPublisher, flattened.
function sample() {
  const p = window.switchyardPublisher || {};
  const st = p.stats || {};
  const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
  return {
    state: p.state ?? null,
    connectionState: p.connectionState ?? null,
    iceConnectionState: p.iceConnectionState ?? null,
    errors: Array.isArray(p.errors) ? [...p.errors] : [],
    warnings: Array.isArray(p.warnings) ? [...p.warnings] : [],
    sessionUrl: p.sessionUrl ?? null,
    tracks: Array.isArray(p.tracks) ? [...p.tracks] : [],
    bytesSent: num(st.bytesSent),
    framesEncoded: num(st.framesEncoded),
    packetsSent: num(st.packetsSent),
    audioPacketsSent: num(st.audioPacketsSent),
    audioBytesSent: num(st.audioBytesSent),
    frameWidth: num(st.frameWidth),
    frameHeight: num(st.frameHeight),
    framesPerSecond: num(st.framesPerSecond),
    videoCodec: st.videoCodec ?? null,
    audioCodec: st.audioCodec ?? null,
    qualityLimitationReason: st.qualityLimitationReason ?? null,
    wallClockMs: Date.now(),
    bodyText: document.body ? document.body.innerText.slice(0, 4000) : '',
  };
}

// Sleeps `ms`, watching for the page's first "publishing" state meanwhile.
let announced = false;
let loadedAt = 0;
async function watch(page, ms) {
  const end = Date.now() + ms;
  while (!announced && Date.now() < end) {
    const state = await page.evaluate(() => window.switchyardPublisher && window.switchyardPublisher.state).catch(() => null);
    if (state === 'publishing') {
      announced = true;
      process.stderr.write(`publish.mjs: publishing after ${Date.now() - loadedAt} ms\n`);
    } else {
      await sleep(Math.min(250, Math.max(0, end - Date.now())));
    }
  }
  await sleep(Math.max(0, end - Date.now()));
}

// Runs in the page before its scripts: video transceivers get the scalability mode.
function requestScalabilityMode(mode) {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
    const kind = typeof trackOrKind === 'string' ? trackOrKind : trackOrKind.kind;
    if (kind === 'video') init = { ...(init || {}), sendEncodings: [{ scalabilityMode: mode }] };
    const transceiver = add.call(this, trackOrKind, init);
    if (kind === 'video') {
      window.switchyardVideoSender = transceiver.sender;
      // Keep every spatial layer when the machine is busy (libwebrtc's CPU adaptation would
      // otherwise drop the top one, and the test is about forwarding it).
      const params = transceiver.sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      transceiver.sender.setParameters(params).catch(() => {});
    }
    return transceiver;
  };
}

// Runs in the page: the video sender's scalability mode and the frame sizes it reports.
async function svcSample() {
  const sender = window.switchyardVideoSender;
  if (!sender) return { scalabilityMode: null, spatialLayers: [] };
  const encodings = sender.getParameters().encodings || [];
  const stats = await sender.getStats();
  const sizes = new Set();
  stats.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.frameWidth) sizes.add(r.frameWidth + 'x' + r.frameHeight);
  });
  return { scalabilityMode: encodings[0] ? encodings[0].scalabilityMode ?? null : null, spatialLayers: [...sizes] };
}

const MODE = process.env.SWITCHYARD_SCALABILITY_MODE || null;

await runPage('publish.mjs', async (page, seconds) => {
  const half = (seconds * 1000) / 2;
  loadedAt = Date.now();
  await watch(page, half);
  const first = await page.evaluate(sample);
  await watch(page, seconds * 1000 - half);
  const last = await page.evaluate(sample);
  const svc = MODE ? await page.evaluate(svcSample) : {};
  return {
    ...last,
    ...svc,
    stateAtHalf: first.state, connectionStateAtHalf: first.connectionState,
    bytesSentAtHalf: first.bytesSent, framesEncodedAtHalf: first.framesEncoded,
    packetsSentAtHalf: first.packetsSent, audioPacketsSentAtHalf: first.audioPacketsSent,
    advanced: typeof first.bytesSent === 'number' && typeof last.bytesSent === 'number' && last.bytesSent > first.bytesSent,
  };
}, MODE ? { script: requestScalabilityMode, arg: MODE } : null);
